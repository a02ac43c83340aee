package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// OpenPostgres connects to PostgreSQL and applies pending migrations under an advisory
// lock, so that replicas starting together migrate exactly once.
//
// The store talks to PostgreSQL through database/sql and pgx's stdlib driver rather
// than pgxpool directly: that keeps a single implementation of every query (and of
// every transaction, written against *sql.Tx) for both engines. What differs is
// handled here, under the queries, by wrapping the driver's connection:
//
//   - ? placeholders become $1, $2, … (rebind);
//   - a Go bool argument is sent as 0 or 1, because flags are INTEGER columns on both
//     engines (SQLite has no boolean type, and a query comparing a flag with 0 must
//     mean the same on both).
func OpenPostgres(ctx context.Context, url string, pool ...Pool) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the URL, its password hidden only on a best-effort basis:
		// say what was wrong without it.
		reason := "invalid"
		if inner := errors.Unwrap(err); inner != nil {
			reason = inner.Error()
		}
		return nil, fmt.Errorf("database URL %s: %s", redactURL(url), reason)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	var p Pool
	if len(pool) > 0 {
		p = pool[0]
	}
	p.apply(db, pgMaxOpen)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", cfg.Host, err)
	}
	s := &DB{db: db, engine: EnginePostgres, pg: cfg}
	if s.migrated, err = migratePostgres(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// pgMaxOpen is PostgreSQL's default pool size per replica: writers do not queue on a
// file lock as with SQLite, and max_connections (100 by default) is shared by every
// replica, the hint listener (one connection each) and the operator's tools.
const pgMaxOpen = 16

// migrationLockKey is the pg_advisory_lock key under which migrations run; any
// constant works as long as every replica uses the same one.
const migrationLockKey int64 = 0x5368656c6c676174 // "Shellgat"

// migratePostgres holds a session-level advisory lock on one connection while it
// applies the migrations on that connection: a replica that starts while another
// migrates waits, then finds nothing left to do.
func migratePostgres(ctx context.Context, db *sql.DB) (int, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, migrationLockKey); err != nil {
		return 0, fmt.Errorf("lock migrations: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, migrationLockKey) //nolint:errcheck // closing the session releases it too
	return migrate(ctx, conn, "postgres")
}

// rebindConnector hands database/sql connections that rebind placeholders.
type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := conn.(*stdlib.Conn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("unexpected driver connection %T", conn)
	}
	return &rebindConn{pc}, nil
}

// rebindConn is pgx's stdlib connection with ? placeholders rebound and bools sent as
// integers. Every other method (transactions, ping, session reset) is pgx's own.
type rebindConn struct{ *stdlib.Conn }

func (c *rebindConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(rebind(query))
}

func (c *rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(query))
}

func (c *rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(query), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebind(query), args)
}

func (c *rebindConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		nv.Value = int64(0)
		if b {
			nv.Value = int64(1)
		}
	}
	return c.Conn.CheckNamedValue(nv)
}

// PostgreSQL error codes the store maps to its sentinels.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
	pgRestrictViolation   = "23001"
)

// pgCode returns the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
