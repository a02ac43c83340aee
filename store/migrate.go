package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrations embed.FS

// migrator is a *sql.DB or, on PostgreSQL, the one *sql.Conn that holds the
// migration lock.
type migrator interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// migrate applies, in order and each in its own transaction, the migrations of one engine
// that the database has not seen yet, and returns how many it applied. Released
// migrations are never edited: a change is a new file, in each engine's folder.
func migrate(ctx context.Context, db migrator, engine string) (int, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	dir := "migrations/" + engine
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return 0, fmt.Errorf("read migrations: %w", err)
	}
	applied := 0
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return applied, fmt.Errorf("migration %s: name must be NNNN_what.sql", name)
		}
		body, err := migrations.ReadFile(dir + "/" + name)
		if err != nil {
			return applied, err
		}
		did, err := applyMigration(ctx, db, version, string(body))
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", name, err)
		}
		if did {
			applied++
		}
	}
	return applied, nil
}

func applyMigration(ctx context.Context, db migrator, version int, body string) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, version); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
