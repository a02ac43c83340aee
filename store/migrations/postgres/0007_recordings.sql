-- PostgreSQL twin of sqlite/0007_recordings.sql.
CREATE TABLE recordings (
    session_id  TEXT    PRIMARY KEY,
    user_id     BIGINT  NOT NULL,
    username    TEXT    NOT NULL,
    stack_id    BIGINT  NOT NULL,
    server_id   BIGINT  NOT NULL,
    server_name TEXT    NOT NULL,
    login       TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    ended_at    BIGINT,
    size        BIGINT  NOT NULL DEFAULT 0,
    has_input   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX recordings_started ON recordings (started_at);
CREATE INDEX recordings_user ON recordings (user_id, started_at);

ALTER TABLE stacks ADD COLUMN record_sessions INTEGER NOT NULL DEFAULT 1;
ALTER TABLE stacks ADD COLUMN record_input INTEGER NOT NULL DEFAULT 0;

ALTER TABLE servers ADD COLUMN ssh_log_file TEXT NOT NULL DEFAULT '';

ALTER TABLE stack_log ADD COLUMN dedup TEXT;
CREATE UNIQUE INDEX stack_log_dedup ON stack_log (stack_id, tab, dedup) WHERE dedup IS NOT NULL;
