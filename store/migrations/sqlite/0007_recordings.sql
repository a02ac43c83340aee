-- Session recordings (asciicast files under the data dir) and what the audit page needs
-- to find them; recording switches per stack; a per-server override of where sshd logs;
-- a de-duplication key so the ssh tab of the stack log can be refreshed without doubling
-- lines it already holds.
CREATE TABLE recordings (
    session_id  TEXT    PRIMARY KEY,  -- the terminal session id (audit detail "session")
    user_id     INTEGER NOT NULL,     -- no foreign keys: a recording outlives its user or stack
    username    TEXT    NOT NULL,
    stack_id    INTEGER NOT NULL,
    server_id   INTEGER NOT NULL,
    server_name TEXT    NOT NULL,
    login       TEXT    NOT NULL,
    path        TEXT    NOT NULL,     -- relative to the recordings directory
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    size        INTEGER NOT NULL DEFAULT 0,
    has_input   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX recordings_started ON recordings (started_at);
CREATE INDEX recordings_user ON recordings (user_id, started_at);

ALTER TABLE stacks ADD COLUMN record_sessions INTEGER NOT NULL DEFAULT 1;
ALTER TABLE stacks ADD COLUMN record_input INTEGER NOT NULL DEFAULT 0;

ALTER TABLE servers ADD COLUMN ssh_log_file TEXT NOT NULL DEFAULT '';

ALTER TABLE stack_log ADD COLUMN dedup TEXT;
CREATE UNIQUE INDEX stack_log_dedup ON stack_log (stack_id, tab, dedup) WHERE dedup IS NOT NULL;
