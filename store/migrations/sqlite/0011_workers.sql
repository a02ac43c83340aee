-- Deployment workers alive now, one row per process. A worker writes its row when it
-- starts and renews heartbeat_at while it runs; the jobs claimed by a worker whose
-- heartbeat stopped, or whose process is gone from this host, are reclaimed at once
-- instead of waiting out their lease. Claim tokens start with the worker's id and a dot.
CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
