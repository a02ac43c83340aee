-- SSH keys registered by dashboard users.
CREATE TABLE ssh_keys (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,           -- [A-Za-z0-9_]{1,32}; may become a login name
    public_key    TEXT    NOT NULL,           -- canonical "type base64" (no comment)
    comment       TEXT    NOT NULL DEFAULT '',
    key_type      TEXT    NOT NULL,           -- as ssh-keygen -l prints it: ED25519, RSA, ECDSA, ED25519-SK, ECDSA-SK
    bits          INTEGER NOT NULL,
    fingerprint   TEXT    NOT NULL,           -- SHA256:... exactly as ssh-keygen -lf
    -- The private part, sealed with AES-256-GCM under the master key (additional data
    -- binds it to this row). NULL when shellgate holds only the public key.
    private_sealed    BLOB,
    private_protected INTEGER NOT NULL DEFAULT 0, -- the sealed key is itself passphrase-protected
    private_origin    TEXT    NOT NULL DEFAULT '' CHECK (private_origin IN ('', 'uploaded', 'generated')),
    -- A generated key may be downloaded once, until this time (Unix ms); 0 = no download left.
    download_until    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX ssh_keys_fingerprint ON ssh_keys (fingerprint);
