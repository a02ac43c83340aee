-- PostgreSQL twin of sqlite/0006_audit_scope.sql.
ALTER TABLE audit_events ADD COLUMN stack_id BIGINT;
ALTER TABLE audit_events ADD COLUMN server_id BIGINT;
CREATE INDEX audit_events_stack ON audit_events (stack_id, at);
CREATE INDEX audit_events_server ON audit_events (server_id, at);
CREATE INDEX audit_events_kind ON audit_events (kind, at);
