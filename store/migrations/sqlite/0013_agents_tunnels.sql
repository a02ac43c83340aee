-- Servers reached through an outbound agent (hosts behind NAT), one row per such
-- server. The destination token is stored only as its SHA-256 hash and is spent by the
-- first agent that presents it, with one conditional UPDATE; that agent's ed25519
-- public key becomes its credential for every reconnect. Generating a new token clears
-- the credential. Timestamps are Unix milliseconds (UTC).
CREATE TABLE agents (
    server_id        INTEGER PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    token_hash       TEXT    NOT NULL DEFAULT '', -- hex SHA-256; '' once spent
    token_expires_at INTEGER NOT NULL DEFAULT 0,
    public_key       TEXT    NOT NULL DEFAULT '', -- "ssh-ed25519 base64"; '' until enrolled
    enrolled_at      INTEGER NOT NULL DEFAULT 0,
    -- The live link, as last recorded by the replica holding it.
    connected        INTEGER NOT NULL DEFAULT 0,
    link_addr        TEXT    NOT NULL DEFAULT '',
    link_changed_at  INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX agents_token ON agents (token_hash);
-- One credential stands for one server.
CREATE UNIQUE INDEX agents_public_key ON agents (public_key) WHERE public_key <> '';

-- Tunnels for native clients: a member opens one on a server; the source token (shown
-- once, stored as its hash) is spent by the first local proxy presenting it, whose
-- ephemeral public key then carries the proxy's reconnects. A tunnel has a lifetime it
-- never outlives (rotation does not extend it); closed (closed_at <> 0) is final.
CREATE TABLE tunnels (
    id                INTEGER PRIMARY KEY,
    server_id         INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    created_by        INTEGER REFERENCES users (id) ON DELETE SET NULL,
    description       TEXT    NOT NULL DEFAULT '',
    services          TEXT    NOT NULL DEFAULT 'ssh', -- comma-separated service names
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    closed_at         INTEGER NOT NULL DEFAULT 0,
    close_reason      TEXT    NOT NULL DEFAULT '', -- 'closed', 'expired'
    source_token_hash TEXT    NOT NULL DEFAULT '', -- hex SHA-256; '' once spent
    source_key        TEXT    NOT NULL DEFAULT '', -- the proxy's key; '' until the token is spent
    rotated_at        INTEGER NOT NULL DEFAULT 0,
    bytes_up          INTEGER NOT NULL DEFAULT 0, -- client → server, finished connections
    bytes_down        INTEGER NOT NULL DEFAULT 0,
    connections       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tunnels_server ON tunnels (server_id);
CREATE INDEX tunnels_token ON tunnels (source_token_hash);
CREATE INDEX tunnels_key ON tunnels (source_key);
