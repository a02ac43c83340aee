-- Sign-in throttling that slows guessing without locking anyone out, and the servers'
-- login history split by who may read it.

-- One row per throttled key: "account:alice", "address:203.0.113.7", "device:<id>",
-- "sshlog:<stack id>". failures counts the attempts reserved since the key was last
-- quiet; next_at (Unix ms) is when the next attempt may start.
CREATE TABLE throttles (
    key        TEXT    PRIMARY KEY,
    failures   INTEGER NOT NULL,
    next_at    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX throttles_next_at ON throttles (next_at);

-- Servers' login history: lines about the stack's own logins and shellgate's sessions
-- stay in tab 'ssh' (members see them); every other login on the host goes to
-- 'ssh-host', which only admins see. Lines read before this split are admins' only
-- until the next read sorts them again.
UPDATE stack_log SET tab = 'ssh-host' WHERE tab = 'ssh';
