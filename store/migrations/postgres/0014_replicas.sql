-- PostgreSQL twin of sqlite/0014_replicas.sql: the replicas sharing this database.
CREATE TABLE replicas (
    id           TEXT   PRIMARY KEY,
    peer_address TEXT   NOT NULL DEFAULT '',
    hostname     TEXT   NOT NULL,
    version      TEXT   NOT NULL DEFAULT '',
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
CREATE INDEX replicas_heartbeat ON replicas (heartbeat_at);

-- Terminal sessions running now, each held by the replica that holds its connection
-- (replica_id), so every replica can list them all and ask the owner to end one. A row
-- goes when its session ends, or with its replica when that one stops heartbeating.
CREATE TABLE live_sessions (
    id          TEXT   PRIMARY KEY, -- the terminal session id
    replica_id  TEXT   NOT NULL,
    user_id     BIGINT NOT NULL,
    username    TEXT   NOT NULL,
    stack_id    BIGINT NOT NULL,
    stack_name  TEXT   NOT NULL,
    server_id   BIGINT NOT NULL,
    server_name TEXT   NOT NULL,
    addr        TEXT   NOT NULL,
    login       TEXT   NOT NULL,
    client_ip   TEXT   NOT NULL,
    started_at  BIGINT NOT NULL
);
CREATE INDEX live_sessions_replica ON live_sessions (replica_id);
