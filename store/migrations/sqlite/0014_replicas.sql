-- The replicas sharing this database: each process registers at start under a random
-- id and refreshes heartbeat_at; a row not refreshed for a while is a replica that is
-- gone (crashed, killed), removed by the others. With SQLite there is one row.
CREATE TABLE replicas (
    id           TEXT    PRIMARY KEY,
    peer_address TEXT    NOT NULL DEFAULT '', -- host:port where the other replicas reach it
    hostname     TEXT    NOT NULL,
    version      TEXT    NOT NULL DEFAULT '',
    started_at   INTEGER NOT NULL,            -- Unix ms
    heartbeat_at INTEGER NOT NULL             -- Unix ms
);
CREATE INDEX replicas_heartbeat ON replicas (heartbeat_at);
