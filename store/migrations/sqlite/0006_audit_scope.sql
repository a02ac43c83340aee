-- Audit events about a server (terminal sessions, file transfers, deployments) name its
-- stack and server, so the audit page can filter by them. Adding columns is not an
-- UPDATE: the append-only triggers stay.
ALTER TABLE audit_events ADD COLUMN stack_id INTEGER;
ALTER TABLE audit_events ADD COLUMN server_id INTEGER;
CREATE INDEX audit_events_stack ON audit_events (stack_id, at);
CREATE INDEX audit_events_server ON audit_events (server_id, at);
CREATE INDEX audit_events_kind ON audit_events (kind, at);
