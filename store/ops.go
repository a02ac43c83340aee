package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DatabaseInfo describes the database for the system page.
type DatabaseInfo struct {
	Engine string // "SQLite 3.x.y"
	Size   int64  // bytes in use (pages × page size), the write-ahead log not included
	Path   string // the file, for SQLite
}

// DatabaseInfo reports the engine and the size of the database.
func (s *SQLite) DatabaseInfo(ctx context.Context) (DatabaseInfo, error) {
	var info DatabaseInfo
	var version string
	var pages, pageSize int64
	if err := s.db.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&version); err != nil {
		return info, normalize(err)
	}
	if err := s.db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return info, normalize(err)
	}
	if err := s.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return info, normalize(err)
	}
	var seq int
	var name string
	_ = s.db.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &info.Path)
	info.Engine, info.Size = "SQLite "+version, pages*pageSize
	return info, nil
}

// DeploymentCounts counts the deployment queue's rows by state.
func (s *SQLite) DeploymentCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM deployments GROUP BY state`)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	counts := make(map[string]int)
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, normalize(err)
		}
		counts[state] = n
	}
	return counts, normalize(rows.Err())
}

// BackupSQLite writes a consistent copy of the SQLite database at dbPath to the new
// file to, while other processes (a running shellgate) keep reading and writing it.
// VACUUM INTO reads inside one transaction, so the copy is the database as of one
// moment, whatever is committed during the copy; the copy is a plain database file
// (no write-ahead log), created 0600. It never creates or migrates dbPath, and to must
// not exist.
func BackupSQLite(ctx context.Context, dbPath, to string) error {
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("%s already exists: choose a new file name", to)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Create the file first with owner-only permissions: it holds password hashes and
	// sealed secrets. VACUUM INTO accepts an existing empty file.
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		os.Remove(to)
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, to); err != nil {
		os.Remove(to)
		return fmt.Errorf("copy %s: %w", dbPath, err)
	}
	return nil
}

// CheckSQLite opens a database file read-only and runs SQLite's integrity check.
// It returns the schema version (the highest migration applied).
func CheckSQLite(ctx context.Context, path string) (int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return 0, fmt.Errorf("%s is not a readable SQLite database: %w", path, err)
	}
	if res != "ok" {
		return 0, fmt.Errorf("%s failed its integrity check: %s", path, res)
	}
	var version int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return 0, fmt.Errorf("%s is not a shellgate database: %w", path, err)
	}
	return version, nil
}

// LatestSQLiteMigration is the newest schema version this build knows for SQLite; a
// database with a higher one was written by a newer shellgate.
func LatestSQLiteMigration() int {
	entries, err := migrations.ReadDir("migrations/sqlite")
	if err != nil {
		return 0
	}
	latest := 0
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.Atoi(num); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}
