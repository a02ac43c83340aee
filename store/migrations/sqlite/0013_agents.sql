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
