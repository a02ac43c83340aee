-- Stacks, their servers and members, attached keys, the deployment queue, the stack
-- log and the gateway's own SSH identity. Timestamps are Unix milliseconds (UTC).

CREATE TABLE stacks (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    description  TEXT    NOT NULL DEFAULT '',
    -- 1: every attached key gets a login of its own, named after the key, on every
    -- server; 0: keys go to each server's login user.
    user_per_key INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);

-- Members may see a stack, open terminals on it and attach their own keys to it.
-- Admins see every stack without a row here.
CREATE TABLE stack_members (
    stack_id INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (stack_id, user_id)
);
CREATE INDEX stack_members_user ON stack_members (user_id);

CREATE TABLE servers (
    id             INTEGER PRIMARY KEY,
    stack_id       INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    port           INTEGER NOT NULL DEFAULT 22,
    login_user     TEXT    NOT NULL,
    -- ProxyJump: reach this server through another server of the same stack. A server
    -- that others jump through cannot be deleted (RESTRICT).
    jump_server_id INTEGER REFERENCES servers (id) ON DELETE RESTRICT,
    identity_file  TEXT    NOT NULL DEFAULT '', -- noted from an imported ssh_config; never read
    -- Pinned host keys, one "type base64" per line; '' until an admin confirms one.
    -- Every connection accepts exactly these.
    host_keys      TEXT    NOT NULL DEFAULT '',
    pinned_at      INTEGER NOT NULL DEFAULT 0,
    -- The key the server last presented that is not pinned: waiting for a first
    -- confirmation when host_keys is '', or a CHANGED key (the server is blocked) when
    -- host_keys is set. Cleared when an admin pins it.
    presented_key  TEXT    NOT NULL DEFAULT '',
    presented_at   INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    UNIQUE (stack_id, name)
);
CREATE INDEX servers_stack ON servers (stack_id);

-- A key attached to a stack. No foreign key to ssh_keys' deletion path beyond CASCADE:
-- the trigger below turns the key's deployments into removals first.
CREATE TABLE stack_keys (
    stack_id    INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    key_id      INTEGER NOT NULL REFERENCES ssh_keys (id) ON DELETE CASCADE,
    attached_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    attached_at INTEGER NOT NULL,
    PRIMARY KEY (stack_id, key_id)
);
CREATE INDEX stack_keys_key ON stack_keys (key_id);

-- The deployment queue: one row per (server, key). key_id deliberately has no foreign
-- key and the row copies what removal needs (name, public key, login), so that a key
-- deleted from shellgate is still removed from every server by the worker.
CREATE TABLE deployments (
    id              INTEGER PRIMARY KEY,
    stack_id        INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    server_id       INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    key_id          INTEGER NOT NULL,
    key_name        TEXT    NOT NULL,
    public_key      TEXT    NOT NULL, -- "type base64"
    user_per_key    INTEGER NOT NULL, -- the stack's mode when the row was queued
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'deployed', 'failed', 'removing')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    -- A worker owns the row until claimed_until (a lease), so a crashed worker's job
    -- is picked up again and two replicas never run it at the same time.
    claimed_until   INTEGER NOT NULL DEFAULT 0,
    claim_token     TEXT    NOT NULL DEFAULT '',
    last_error      TEXT    NOT NULL DEFAULT '',
    updated_at      INTEGER NOT NULL,
    UNIQUE (server_id, key_id)
);
CREATE INDEX deployments_due ON deployments (next_attempt_at);
CREATE INDEX deployments_stack ON deployments (stack_id);
CREATE INDEX deployments_key ON deployments (key_id);

-- Deleting a key (whoever deletes it) detaches it everywhere: its deployments become
-- removals, due at once. stack_keys rows go by CASCADE.
CREATE TRIGGER ssh_keys_detach_on_delete BEFORE DELETE ON ssh_keys
BEGIN
    UPDATE deployments
    SET state = 'removing', attempts = 0, next_attempt_at = 0, last_error = ''
    WHERE key_id = OLD.id;
END;

-- Human-readable log per stack, newest first on screen. tab: 'deploy' now, 'ssh' later.
CREATE TABLE stack_log (
    id        INTEGER PRIMARY KEY,
    stack_id  INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    server_id INTEGER REFERENCES servers (id) ON DELETE SET NULL,
    at        INTEGER NOT NULL,
    tab       TEXT    NOT NULL,
    line      TEXT    NOT NULL
);
CREATE INDEX stack_log_stack ON stack_log (stack_id, tab, at);

-- shellgate's own SSH key pair, used to deploy keys. One row; the private key is
-- sealed under the master key with additional data "gateway-identity:1".
CREATE TABLE gateway_identity (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    public_key     TEXT    NOT NULL, -- authorized_keys form with comment
    private_sealed BLOB    NOT NULL,
    created_at     INTEGER NOT NULL
);
