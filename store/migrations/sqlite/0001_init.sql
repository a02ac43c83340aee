-- Accounts, web sessions, sign-in throttling and the audit log.
-- Timestamps are Unix milliseconds (UTC) so the same queries work on PostgreSQL.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE, -- stored lower-case
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- A signed-in browser. id is the SHA-256 of the token in the cookie, so a copy of the
-- database does not hand out live sessions.
CREATE TABLE web_sessions (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    client_ip    TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE login_failures (
    id        INTEGER PRIMARY KEY,
    username  TEXT    NOT NULL,
    client_ip TEXT    NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, at);
CREATE INDEX login_failures_ip ON login_failures (client_ip, at);

-- Append-only: the store offers no UPDATE or DELETE on this table.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    actor_id   INTEGER,
    actor_name TEXT    NOT NULL,
    client_ip  TEXT    NOT NULL,
    user_agent TEXT    NOT NULL,
    ok         INTEGER NOT NULL,
    target     TEXT    NOT NULL,
    detail     TEXT    NOT NULL -- JSON object
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor_id, at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
