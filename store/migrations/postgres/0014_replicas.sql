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
