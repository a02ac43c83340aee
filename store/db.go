package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Engine names a database engine. The query code is one and the same for both; the
// engine decides only how a connection is opened, which migrations apply and how a
// driver's errors are read.
type Engine string

const (
	// EngineSQLite is the default: one file in the data dir, one replica.
	EngineSQLite Engine = "sqlite"
	// EnginePostgres lets several replicas share one database.
	EnginePostgres Engine = "postgres"
)

// DB is the Store on either engine. Every query is written once, in the SQL both
// engines accept, with ? placeholders; on PostgreSQL the connection rebinds them to $n
// (see pgdriver.go), so a query added for SQLite runs on PostgreSQL unchanged.
type DB struct {
	db     *sql.DB
	engine Engine
	hints  accessHints // OnAccessChange callbacks
	// pg is the parsed PostgreSQL configuration, kept for connections that cannot go
	// through database/sql (the LISTEN connection of the hint bus). Nil on SQLite.
	pg *pgx.ConnConfig
	// migrated counts the migrations this process applied when it opened the database;
	// tests read it to prove that concurrent openers migrate exactly once.
	migrated int
}

// SQLite is DB's historical name, kept so that code written before PostgreSQL
// (receivers, fields, tests) compiles unchanged.
type SQLite = DB

var _ Store = (*DB)(nil)

// Open opens the database a URL names and applies pending migrations:
//
//	sqlite:PATH or sqlite://PATH    a SQLite file (created when missing)
//	postgres://… or postgresql://…  PostgreSQL; password, TLS (sslmode, sslrootcert, …)
//	                                come from the URL or the standard PG* variables
//
// pool, optional, bounds the connection pool (the engine's default otherwise).
func Open(ctx context.Context, url string, pool ...Pool) (*DB, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			return nil, fmt.Errorf("database URL %q: want sqlite:PATH", url)
		}
		return OpenSQLite(ctx, path, pool...)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return OpenPostgres(ctx, url, pool...)
	default:
		return nil, fmt.Errorf("database URL %q: want sqlite:PATH or postgres://…", redactURL(url))
	}
}

// Engine reports which engine the store runs on.
func (s *DB) Engine() Engine { return s.engine }

// redactURL hides a password in a database URL before it reaches an error or a log.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@")
	if at < 0 {
		return u
	}
	userinfo := rest[:at]
	if name, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		userinfo = name + ":xxxxx"
	}
	return scheme + "://" + userinfo + rest[at:]
}

// PostgresConfig returns a copy of the parsed PostgreSQL configuration, for a
// connection that cannot come from the pool (the hint bus's LISTEN); nil on SQLite.
func (s *DB) PostgresConfig() *pgx.ConnConfig {
	if s.pg == nil {
		return nil
	}
	return s.pg.Copy()
}

// Notify sends a PostgreSQL notification (pg_notify) through the pool.
func (s *DB) Notify(ctx context.Context, channel, payload string) error {
	if s.engine != EnginePostgres {
		return fmt.Errorf("notify: %s has no notifications", s.engine)
	}
	_, err := s.db.ExecContext(ctx, `SELECT pg_notify(?, ?)`, channel, payload)
	return err
}

// skipLocked ends a SELECT that picks a row to claim: on PostgreSQL it locks the row of
// table (alias) and skips rows other transactions hold, so concurrent claimers pick
// different rows; SQLite serialises writers and needs nothing.
func (s *DB) skipLocked(table string) string {
	if s.engine == EnginePostgres {
		return " FOR UPDATE OF " + table + " SKIP LOCKED"
	}
	return ""
}
