package store

import (
	"context"
	"database/sql"
	"time"
)

// Recording is one terminal session's asciicast file.
type Recording struct {
	SessionID  string
	UserID     int64
	Username   string
	StackID    int64
	ServerID   int64
	ServerName string
	Login      string
	Path       string // relative to the recordings directory
	StartedAt  time.Time
	EndedAt    time.Time // zero while the session runs
	Size       int64
	HasInput   bool
}

// RecordingSettings are a stack's recording switches.
type RecordingSettings struct {
	Record bool // record terminal output (default on)
	Input  bool // also record keystrokes: may capture passwords (default off)
}

// AuditStore holds recordings, per-stack recording settings, the per-server sshd log
// override and the de-duplicated ssh tab of the stack log.
type AuditStore interface {
	CreateRecording(ctx context.Context, r *Recording) error
	FinishRecording(ctx context.Context, sessionID string, ended time.Time, size int64) error
	RecordingBySession(ctx context.Context, sessionID string) (*Recording, error)
	// RecordingsBefore lists recordings started before a time (for retention).
	RecordingsBefore(ctx context.Context, before time.Time, limit int) ([]Recording, error)
	DeleteRecording(ctx context.Context, sessionID string) error

	StackRecording(ctx context.Context, stackID int64) (RecordingSettings, error)
	SetStackRecording(ctx context.Context, stackID int64, rs RecordingSettings) error

	ServerSSHLogFile(ctx context.Context, serverID int64) (string, error)
	SetServerSSHLogFile(ctx context.Context, serverID int64, path string) error

	// AppendStackLogOnce appends a line unless one with the same dedup key is already
	// in that stack's tab; it reports whether it was added.
	AppendStackLogOnce(ctx context.Context, l *StackLogLine, dedup string) (bool, error)
}

func (s *SQLite) CreateRecording(ctx context.Context, r *Recording) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO recordings (session_id, user_id, username, stack_id, server_id, server_name, login, path, started_at, has_input)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.SessionID, r.UserID, r.Username, r.StackID, r.ServerID, r.ServerName, r.Login, r.Path, ms(r.StartedAt), r.HasInput)
	return normalize(err)
}

func (s *SQLite) FinishRecording(ctx context.Context, sessionID string, ended time.Time, size int64) error {
	return s.updateOne(ctx, `UPDATE recordings SET ended_at = ?, size = ? WHERE session_id = ?`, ms(ended), size, sessionID)
}

const recordingColumns = `session_id, user_id, username, stack_id, server_id, server_name, login, path, started_at, ended_at, size, has_input`

func scanRecording(r scanner) (*Recording, error) {
	var rec Recording
	var started int64
	var ended sql.NullInt64
	if err := r.Scan(&rec.SessionID, &rec.UserID, &rec.Username, &rec.StackID, &rec.ServerID, &rec.ServerName, &rec.Login,
		&rec.Path, &started, &ended, &rec.Size, &rec.HasInput); err != nil {
		return nil, normalize(err)
	}
	rec.StartedAt = fromMS(started)
	if ended.Valid {
		rec.EndedAt = fromMS(ended.Int64)
	}
	return &rec, nil
}

func (s *SQLite) RecordingBySession(ctx context.Context, sessionID string) (*Recording, error) {
	return scanRecording(s.db.QueryRowContext(ctx, `SELECT `+recordingColumns+` FROM recordings WHERE session_id = ?`, sessionID))
}

func (s *SQLite) RecordingsBefore(ctx context.Context, before time.Time, limit int) ([]Recording, error) {
	if limit <= 0 {
		limit = 500
	}
	return queryAll(ctx, s.db, scanRecording, `SELECT `+recordingColumns+` FROM recordings WHERE started_at < ? ORDER BY started_at LIMIT ?`, ms(before), limit)
}

func (s *SQLite) DeleteRecording(ctx context.Context, sessionID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM recordings WHERE session_id = ?`, sessionID)
	return normalize(err)
}

func (s *SQLite) StackRecording(ctx context.Context, stackID int64) (RecordingSettings, error) {
	var rs RecordingSettings
	err := s.db.QueryRowContext(ctx, `SELECT record_sessions, record_input FROM stacks WHERE id = ?`, stackID).Scan(&rs.Record, &rs.Input)
	return rs, normalize(err)
}

func (s *SQLite) SetStackRecording(ctx context.Context, stackID int64, rs RecordingSettings) error {
	return s.updateOne(ctx, `UPDATE stacks SET record_sessions = ?, record_input = ? WHERE id = ?`, rs.Record, rs.Input, stackID)
}

func (s *SQLite) ServerSSHLogFile(ctx context.Context, serverID int64) (string, error) {
	var p string
	err := s.db.QueryRowContext(ctx, `SELECT ssh_log_file FROM servers WHERE id = ?`, serverID).Scan(&p)
	return p, normalize(err)
}

func (s *SQLite) SetServerSSHLogFile(ctx context.Context, serverID int64, path string) error {
	return s.updateOne(ctx, `UPDATE servers SET ssh_log_file = ? WHERE id = ?`, path, serverID)
}

func (s *SQLite) AppendStackLogOnce(ctx context.Context, l *StackLogLine, dedup string) (bool, error) {
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO stack_log (stack_id, server_id, at, tab, line, dedup) VALUES (?, ?, ?, ?, ?, ?)
		 ON CONFLICT DO NOTHING`,
		l.StackID, nullID(l.ServerID), ms(l.At), l.Tab, l.Line, dedup)
	if err != nil {
		return false, normalize(err)
	}
	n, err := res.RowsAffected()
	return n == 1, normalize(err)
}
