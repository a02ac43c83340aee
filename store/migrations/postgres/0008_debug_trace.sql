-- PostgreSQL twin of sqlite/0008_debug_trace.sql.
ALTER TABLE stacks ADD COLUMN debug_trace INTEGER NOT NULL DEFAULT 0;
