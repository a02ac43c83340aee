-- Single-use tickets that let a browser open one terminal WebSocket. The page obtains
-- one with its CSRF-protected session; the socket's first message carries it, so no
-- credential ever appears in a URL. id is the SHA-256 of the ticket.
CREATE TABLE terminal_tickets (
    id             TEXT    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    web_session_id TEXT    NOT NULL, -- the browser session it was issued to
    stack_id       INTEGER NOT NULL,
    server_id      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX terminal_tickets_expires ON terminal_tickets (expires_at);
