-- PostgreSQL twin of sqlite/0005_terminal_tickets.sql: single-use terminal tickets.
CREATE TABLE terminal_tickets (
    id             TEXT   PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    web_session_id TEXT   NOT NULL,
    stack_id       BIGINT NOT NULL,
    server_id      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX terminal_tickets_expires ON terminal_tickets (expires_at);
