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
	return ready(ctx, s.db, string(s.engine))
}

func ready(ctx context.Context, db *sql.DB, engine string) error {
	entries, err := fs.ReadDir(migrations, "migrations/"+engine)
	if err != nil {
		return err
	}
	applied := map[int]bool{}
	rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	// Each one, not the highest: branches merge migrations out of order.
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.Atoi(num); err == nil && !applied[v] {
			return fmt.Errorf("database schema lacks migration %s", e.Name())
		}
	}
	return nil
}
