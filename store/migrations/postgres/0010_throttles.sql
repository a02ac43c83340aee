-- PostgreSQL twin of sqlite/0010_throttles.sql: sign-in throttling, and the servers'
-- login history split by who may read it.
CREATE TABLE throttles (
    key        TEXT    PRIMARY KEY,
    failures   INTEGER NOT NULL,
    next_at    BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX throttles_next_at ON throttles (next_at);

UPDATE stack_log SET tab = 'ssh-host' WHERE tab = 'ssh';
