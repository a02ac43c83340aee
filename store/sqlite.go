package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Pool bounds an engine's connection pool; the zero value is the engine's default.
type Pool struct {
	// MaxOpen caps open connections. SQLite default 4: one writer at a time (SQLite
	// allows no more; writers queue on the busy timeout) plus readers, which WAL lets
	// run beside it. A burst of requests waits for a connection instead of opening
	// one (three descriptors: database, WAL, shared memory) per request.
	MaxOpen int
	// MaxIdle caps connections kept open while idle; default 2, at most MaxOpen.
	MaxIdle int
	// MaxIdleTime closes a connection idle this long; default 1 minute.
	MaxIdleTime time.Duration
}

// sqliteMaxOpen is SQLite's default pool size: one writer plus three readers.
const sqliteMaxOpen = 4

func (p Pool) apply(db *sql.DB, defaultMax int) {
	if p.MaxOpen <= 0 {
		p.MaxOpen = defaultMax
	}
	if p.MaxIdle <= 0 {
		p.MaxIdle = 2
	}
	if p.MaxIdleTime <= 0 {
		p.MaxIdleTime = time.Minute
	}
	db.SetMaxOpenConns(p.MaxOpen)
	db.SetMaxIdleConns(min(p.MaxIdle, p.MaxOpen))
	db.SetConnMaxIdleTime(p.MaxIdleTime)
}

// OpenSQLite opens the default store: one file in the data dir, through a pure-Go
// driver. It opens (creating if needed) the database file at path with WAL, a busy
// timeout and foreign keys on, bounds its pool (pool, optional: the default Pool),
// and applies pending migrations.
func OpenSQLite(ctx context.Context, path string, pool ...Pool) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database dir: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var p Pool
	if len(pool) > 0 {
		p = pool[0]
	}
	p.apply(db, sqliteMaxOpen)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The database file holds password hashes and encrypted secrets: owner only.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.Close()
			return nil, fmt.Errorf("protect %s: %w", p, err)
		}
	}
	applied, err := migrate(ctx, db, "sqlite")
	if err != nil {
		db.Close()
		return nil, err
	}
	return &DB{db: db, engine: EngineSQLite, migrated: applied}, nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// DB exposes the handle for tests that inspect the schema.
func (s *SQLite) DB() *sql.DB { return s.db }

// normalize maps driver errors to the package's sentinels, once, at the edge.
func normalize(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %v", ErrConflict, err)
		}
	}
	if pgCode(err) == pgUniqueViolation {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// nullID stores 0 as NULL, for optional references.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func (s *SQLite) CreateUser(ctx context.Context, u *User) error {
	now := time.Now()
	u.Username = strings.ToLower(u.Username)
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at)
		 VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Username, u.PasswordHash, string(u.Role), u.Disabled, ms(now), ms(now)).Scan(&u.ID)
	if err != nil {
		return normalize(err)
	}
	u.CreatedAt, u.UpdatedAt = fromMS(ms(now)), fromMS(ms(now))
	return nil
}

const userColumns = `id, username, password_hash, role, disabled, created_at, updated_at`

type scanner interface{ Scan(...any) error }

// queryAll runs a query and scans every row with scan, normalising driver errors.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(scanner) (*T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, normalize(rows.Err())
}

func scanUser(r scanner) (*User, error) {
	var u User
	var role string
	var created, updated int64
	if err := r.Scan(&u.ID, &u.Username, &u.PasswordHash, &role, &u.Disabled, &created, &updated); err != nil {
		return nil, normalize(err)
	}
	u.Role, u.CreatedAt, u.UpdatedAt = Role(role), fromMS(created), fromMS(updated)
	return &u, nil
}

func (s *SQLite) UserByID(ctx context.Context, id int64) (*User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
}

func (s *SQLite) UserByName(ctx context.Context, username string) (*User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, strings.ToLower(username)))
}

func (s *SQLite) ListUsers(ctx context.Context) ([]User, error) {
	return queryAll(ctx, s.db, scanUser, `SELECT `+userColumns+` FROM users ORDER BY username`)
}

func (s *SQLite) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, normalize(err)
}

// updateOne runs an UPDATE or DELETE that must touch exactly one row; ErrNotFound
// when it touches none.
func (s *SQLite) updateOne(ctx context.Context, query string, args ...any) error {
	return execOne(ctx, s.db, query, args...)
}

func execOne(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, query string, args ...any) error {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return normalize(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQLite) SetPassword(ctx context.Context, id int64, hash string) error {
	return s.updateUserEndingSessions(ctx, true, ReasonPasswordChanged, `UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?`, hash, ms(time.Now()), id)
}

func (s *SQLite) SetDisabled(ctx context.Context, id int64, disabled bool) error {
	return s.updateUserEndingSessions(ctx, disabled, ReasonDisabled, `UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?`, disabled, ms(time.Now()), id)
}

// updateUserEndingSessions updates one user row (its id is the last argument) and,
// when endSessions is set, deletes the user's web sessions and ends their terminals and
// transfers (an access bump with reason) in the same transaction.
func (s *SQLite) updateUserEndingSessions(ctx context.Context, endSessions bool, reason, query string, args ...any) error {
	return s.changeAccess(ctx, reason, func(tx *sql.Tx) ([]string, error) {
		if err := execOne(ctx, tx, query, args...); err != nil {
			return nil, err
		}
		if !endSessions {
			return nil, nil
		}
		id := args[len(args)-1].(int64)
		_, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE user_id = ?`, id)
		return []string{ScopeUser(id)}, normalize(err)
	})
}

// SetRole changes a role; a demotion ends the terminals and transfers the account
// held as an administrator (all of them: which stacks it is a member of is re-checked
// when it opens the next one).
func (s *SQLite) SetRole(ctx context.Context, id int64, role Role) error {
	return s.changeAccess(ctx, ReasonRoleChanged, func(tx *sql.Tx) ([]string, error) {
		var was string
		if err := tx.QueryRowContext(ctx, `SELECT role FROM users WHERE id = ?`, id).Scan(&was); err != nil {
			return nil, normalize(err)
		}
		if err := execOne(ctx, tx, `UPDATE users SET role = ?, updated_at = ? WHERE id = ?`, string(role), ms(time.Now()), id); err != nil {
			return nil, err
		}
		if Role(was) == RoleAdmin && role != RoleAdmin {
			return []string{ScopeUser(id)}, nil
		}
		return nil, nil
	})
}

func (s *SQLite) CreateWebSession(ctx context.Context, ws *WebSession) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO web_sessions (id, user_id, created_at, last_seen_at, expires_at, client_ip, user_agent)
		 VALUES (?, ?, ?, ?, ?, ?, ?)`,
		ws.ID, ws.UserID, ms(ws.CreatedAt), ms(ws.LastSeenAt), ms(ws.ExpiresAt), ws.ClientIP, ws.UserAgent)
	return normalize(err)
}

func (s *SQLite) WebSessionByID(ctx context.Context, id string, now time.Time) (*WebSession, *User, error) {
	row := s.db.QueryRowContext(ctx,
		`SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.client_ip, s.user_agent,
		        u.id, u.username, u.password_hash, u.role, u.disabled, u.created_at, u.updated_at
		 FROM web_sessions s JOIN users u ON u.id = s.user_id
		 WHERE s.id = ? AND s.expires_at > ?`, id, ms(now))
	var ws WebSession
	var u User
	var created, seen, expires, ucreated, uupdated int64
	var role string
	err := row.Scan(&ws.ID, &ws.UserID, &created, &seen, &expires, &ws.ClientIP, &ws.UserAgent,
		&u.ID, &u.Username, &u.PasswordHash, &role, &u.Disabled, &ucreated, &uupdated)
	if err != nil {
		return nil, nil, normalize(err)
	}
	ws.CreatedAt, ws.LastSeenAt, ws.ExpiresAt = fromMS(created), fromMS(seen), fromMS(expires)
	u.Role, u.CreatedAt, u.UpdatedAt = Role(role), fromMS(ucreated), fromMS(uupdated)
	return &ws, &u, nil
}

func (s *SQLite) TouchWebSession(ctx context.Context, id string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE web_sessions SET last_seen_at = ? WHERE id = ?`, ms(now), id)
	return normalize(err)
}

// DeleteWebSession signs one browser out and ends the terminals and transfers it
// opened, in one transaction.
func (s *SQLite) DeleteWebSession(ctx context.Context, id string) error {
	return s.changeAccess(ctx, ReasonSignedOut, func(tx *sql.Tx) ([]string, error) {
		_, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE id = ?`, id)
		return []string{ScopeWebSession(id)}, normalize(err)
	})
}

func (s *SQLite) RecordLoginFailure(ctx context.Context, username, clientIP string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO login_failures (username, client_ip, at) VALUES (?, ?, ?)`,
		strings.ToLower(username), clientIP, ms(at))
	return normalize(err)
}

func (s *SQLite) LoginFailures(ctx context.Context, username, clientIP string, since time.Time) (byUser, byIP int, err error) {
	err = s.db.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM login_failures WHERE username = ? AND at > ?),
		        (SELECT COUNT(*) FROM login_failures WHERE client_ip = ? AND at > ?)`,
		strings.ToLower(username), ms(since), clientIP, ms(since)).Scan(&byUser, &byIP)
	return byUser, byIP, normalize(err)
}

func (s *SQLite) ClearLoginFailures(ctx context.Context, username string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM login_failures WHERE username = ?`, strings.ToLower(username))
	return normalize(err)
}

func (s *SQLite) AppendEvent(ctx context.Context, e *Event) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return fmt.Errorf("encode event detail: %w", err)
	}
	return normalize(s.db.QueryRowContext(ctx,
		`INSERT INTO audit_events (at, kind, actor_id, actor_name, client_ip, user_agent, ok, target, detail, stack_id, server_id)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		ms(e.At), e.Kind, nullID(e.ActorID), e.ActorName, e.ClientIP, e.UserAgent, e.OK, e.Target, string(detail),
		nullID(e.StackID), nullID(e.ServerID)).Scan(&e.ID))
}

func (s *SQLite) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	var where []string
	var args []any
	if f.ActorID != 0 {
		where, args = append(where, "actor_id = ?"), append(args, f.ActorID)
	}
	if f.ActorName != "" {
		where, args = append(where, "actor_name = ?"), append(args, strings.ToLower(f.ActorName))
	}
	if strings.HasSuffix(f.Kind, ".") {
		where, args = append(where, "substr(kind, 1, ?) = ?"), append(args, len(f.Kind), f.Kind)
	} else if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if f.StackID != 0 {
		where, args = append(where, "stack_id = ?"), append(args, f.StackID)
	}
	if f.ServerID != 0 {
		where, args = append(where, "server_id = ?"), append(args, f.ServerID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, ms(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, ms(f.Until))
	}
	if f.BeforeID != 0 {
		where, args = append(where, "id < ?"), append(args, f.BeforeID)
	}
	q := `SELECT id, at, kind, COALESCE(actor_id, 0), actor_name, client_ip, user_agent, ok, target, detail,
	             COALESCE(stack_id, 0), COALESCE(server_id, 0) FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var at int64
		var detail string
		if err := rows.Scan(&e.ID, &at, &e.Kind, &e.ActorID, &e.ActorName, &e.ClientIP, &e.UserAgent, &e.OK, &e.Target, &detail, &e.StackID, &e.ServerID); err != nil {
			return nil, normalize(err)
		}
		e.At = fromMS(at)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, fmt.Errorf("decode event %d detail: %w", e.ID, err)
		}
		events = append(events, e)
	}
	return events, normalize(rows.Err())
}
