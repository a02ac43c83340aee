-- Access epochs: one counter per scope of access (a user, a browser session, a stack
-- membership, a server, a key, an attachment). Every change that ends or narrows access
-- bumps the scope's epoch in the same transaction as the change, with the reason. A
-- live terminal or transfer remembers the epochs it started under and ends as soon as
-- one of them moved; hints (in-process now, LISTEN/NOTIFY later) only say when to look.
-- The row with scope '*' counts every bump, so a replica (or a shellgate started from
-- the command line) can notice a change it did not make with one small read.
CREATE TABLE access_epochs (
    scope      TEXT    PRIMARY KEY,
    epoch      INTEGER NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    changed_at INTEGER NOT NULL
);
