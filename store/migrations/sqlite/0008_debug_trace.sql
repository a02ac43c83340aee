-- An administrator may turn on ssh -v style tracing of a stack's terminal connections;
-- the lines go to the stack log, tab "debug". Off by default: the lines name hosts,
-- users and key fingerprints (never secrets), and most stacks never need them.
ALTER TABLE stacks ADD COLUMN debug_trace INTEGER NOT NULL DEFAULT 0;
