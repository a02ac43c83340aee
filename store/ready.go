package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Ready reports whether the database answers and holds every migration this
// binary knows: what /readyz asks before a load balancer sends work.
func (s *SQLite) Ready(ctx context.Context) error {
	return ready(ctx, s.db, "sqlite")
}

func ready(ctx context.Context, db *sql.DB, engine string) error {
	entries, err := fs.ReadDir(migrations, "migrations/"+engine)
	if err != nil {
		return err
	}
	latest := 0
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.Atoi(num); err == nil {
			latest = max(latest, v)
		}
	}
	var applied int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&applied); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if applied < latest {
		return fmt.Errorf("database schema at migration %d, this binary needs %d", applied, latest)
	}
	return nil
}
