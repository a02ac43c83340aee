-- PostgreSQL twin of sqlite/0009_access_epochs.sql: one epoch per access scope.
CREATE TABLE access_epochs (
    scope      TEXT   PRIMARY KEY,
    epoch      BIGINT NOT NULL,
    reason     TEXT   NOT NULL DEFAULT '',
    changed_at BIGINT NOT NULL
);
