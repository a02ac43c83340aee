-- The replicas sharing this database and the live sessions each holds. Each process
-- registers at start under a random id and refreshes heartbeat_at; a row not refreshed
-- for a while is a replica that is gone (crashed, killed), removed by the others.
-- With SQLite there is one row.
CREATE TABLE replicas (
    id           TEXT    PRIMARY KEY,
    peer_address TEXT    NOT NULL DEFAULT '', -- host:port where the other replicas reach it
    hostname     TEXT    NOT NULL,
    version      TEXT    NOT NULL DEFAULT '',
    started_at   INTEGER NOT NULL,            -- Unix ms
    heartbeat_at INTEGER NOT NULL             -- Unix ms
);
CREATE INDEX replicas_heartbeat ON replicas (heartbeat_at);

-- Terminal sessions running now, each held by the replica that holds its connection
-- (replica_id), so every replica can list them all and ask the owner to end one. A row
-- goes when its session ends, or with its replica when that one stops heartbeating.
CREATE TABLE live_sessions (
    id          TEXT   PRIMARY KEY, -- the terminal session id
    replica_id  TEXT   NOT NULL,
    user_id     INTEGER NOT NULL,
    username    TEXT   NOT NULL,
    stack_id    INTEGER NOT NULL,
    stack_name  TEXT   NOT NULL,
    server_id   INTEGER NOT NULL,
    server_name TEXT   NOT NULL,
    addr        TEXT   NOT NULL,
    login       TEXT   NOT NULL,
    client_ip   TEXT   NOT NULL,
    started_at  INTEGER NOT NULL
);
CREATE INDEX live_sessions_replica ON live_sessions (replica_id);
