package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CopyReport says how many rows of each table a Copy moved.
type CopyReport struct {
	Tables []TableCount
}

// TableCount is one table's row count, in the source and in the target after the copy.
type TableCount struct {
	Table          string
	Source, Target int64
}

// Copy moves every row of a SQLite store into an empty PostgreSQL store, then checks
// that each table holds as many rows on both sides. Both must be at the same schema
// version (Open migrates each to the newest). Rows keep their ids and bytes, so sealed
// secrets, whose additional data names their owner's id, still open under the same
// master key; the target's id sequences are moved past the copied ids.
//
// The source is read inside one write transaction (SQLite's BEGIN IMMEDIATE), so a
// running shellgate cannot change it half-way; the target is written in one
// transaction, so a failed copy leaves it empty. Stop shellgate first anyway: writes
// made to SQLite after the copy would not follow.
func Copy(ctx context.Context, from, to *DB) (*CopyReport, error) {
	if from.engine != EngineSQLite || to.engine != EnginePostgres {
		return nil, errors.New("copy: from SQLite to PostgreSQL only")
	}
	fromV, err := versions(ctx, from.db)
	if err != nil {
		return nil, err
	}
	toV, err := versions(ctx, to.db)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(fromV, toV) {
		return nil, fmt.Errorf("copy: schema versions differ (source %v, target %v): run the same shellgate version against both", fromV, toV)
	}
	src, err := from.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("copy: lock source: %w", err)
	}
	defer src.Rollback() //nolint:errcheck // read only
	tables, err := sqliteTables(ctx, src)
	if err != nil {
		return nil, err
	}
	dst, err := to.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer dst.Rollback() //nolint:errcheck // a no-op after Commit
	report := &CopyReport{}
	for _, t := range tables {
		var n int64
		if err := dst.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quoteIdent(t.name)).Scan(&n); err != nil {
			return nil, fmt.Errorf("copy: target table %s: %w", t.name, err)
		}
		if n != 0 {
			return nil, fmt.Errorf("copy: target table %s already holds %d rows: copy into a new, empty database", t.name, n)
		}
	}
	for _, t := range tables {
		n, err := copyTable(ctx, src, dst, t)
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", t.name, err)
		}
		report.Tables = append(report.Tables, TableCount{Table: t.name, Source: n})
	}
	if err := resetSequences(ctx, dst); err != nil {
		return nil, err
	}
	if err := dst.Commit(); err != nil {
		return nil, fmt.Errorf("copy: commit: %w", err)
	}
	var mismatch []string
	for i, tc := range report.Tables {
		if err := to.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quoteIdent(tc.Table)).Scan(&report.Tables[i].Target); err != nil {
			return report, fmt.Errorf("verify %s: %w", tc.Table, err)
		}
		if report.Tables[i].Target != tc.Source {
			mismatch = append(mismatch, fmt.Sprintf("%s: %d rows copied, %d found", tc.Table, tc.Source, report.Tables[i].Target))
		}
	}
	if len(mismatch) > 0 {
		return report, fmt.Errorf("copy: counts differ: %s", strings.Join(mismatch, "; "))
	}
	return report, nil
}

func versions(ctx context.Context, db *sql.DB) ([]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("schema versions: %w", err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

type copyTableInfo struct {
	name    string
	refs    []string // tables it references (other than itself)
	selfFKs []string // columns referencing the table itself
	pk      string   // single-column primary key, needed when selfFKs is not empty
}

// sqliteTables lists the source's tables in an order where every table comes after the
// tables it references, so foreign keys hold while rows are inserted.
func sqliteTables(ctx context.Context, tx *sql.Tx) ([]copyTableInfo, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master
		WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'schema_migrations' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	infos := map[string]*copyTableInfo{}
	for _, n := range names {
		info := &copyTableInfo{name: n}
		fk, err := tx.QueryContext(ctx, `SELECT "table", "from" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return nil, fmt.Errorf("foreign keys of %s: %w", n, err)
		}
		for fk.Next() {
			var ref, col string
			if err := fk.Scan(&ref, &col); err != nil {
				fk.Close()
				return nil, err
			}
			if ref == n {
				info.selfFKs = append(info.selfFKs, col)
			} else if !slices.Contains(info.refs, ref) {
				info.refs = append(info.refs, ref)
			}
		}
		fk.Close()
		if len(info.selfFKs) > 0 {
			if err := tx.QueryRowContext(ctx, `SELECT name FROM pragma_table_info(?) WHERE pk = 1`, n).Scan(&info.pk); err != nil {
				return nil, fmt.Errorf("primary key of %s: %w", n, err)
			}
		}
		infos[n] = info
	}
	var order []copyTableInfo
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		info, ok := infos[n]
		if !ok || state[n] == 2 {
			return nil
		}
		if state[n] == 1 {
			return fmt.Errorf("foreign keys form a cycle through %s", n)
		}
		state[n] = 1
		for _, r := range info.refs {
			if err := visit(r); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, *info)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// copyTable inserts every row of one table. Columns that reference the table itself
// (a server's jump server) are inserted NULL and set afterwards, when every row they
// may point at exists.
func copyTable(ctx context.Context, src, dst *sql.Tx, t copyTableInfo) (int64, error) {
	order := ""
	if t.pk != "" {
		order = ` ORDER BY ` + quoteIdent(t.pk)
	}
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+quoteIdent(t.name)+order)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = quoteIdent(c)
	}
	ins, err := dst.PrepareContext(ctx, `INSERT INTO `+quoteIdent(t.name)+` (`+strings.Join(quoted, ", ")+
		`) VALUES (`+strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")+`)`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	type fixup struct{ pk, col, val any }
	var later []fixup
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		for i, c := range cols {
			if slices.Contains(t.selfFKs, c) && vals[i] != nil {
				later = append(later, fixup{pk: vals[slices.Index(cols, t.pk)], col: c, val: vals[i]})
				vals[i] = nil
			}
		}
		if _, err := ins.ExecContext(ctx, vals...); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	for _, f := range later {
		if _, err := dst.ExecContext(ctx, `UPDATE `+quoteIdent(t.name)+` SET `+quoteIdent(f.col.(string))+` = ? WHERE `+
			quoteIdent(t.pk)+` = ?`, f.val, f.pk); err != nil {
			return n, err
		}
	}
	return n, nil
}

// resetSequences moves every identity column's sequence past the largest copied id, so
// the next row PostgreSQL numbers does not collide with a copied one.
func resetSequences(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return fmt.Errorf("list identity columns: %w", err)
	}
	var cols [][2]string
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			rows.Close()
			return err
		}
		cols = append(cols, [2]string{t, c})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, tc := range cols {
		t, c := quoteIdent(tc[0]), quoteIdent(tc[1])
		if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX(`+c+`), 0) + 1, false) FROM `+t,
			t, tc[1]); err != nil {
			return fmt.Errorf("sequence of %s.%s: %w", tc[0], tc[1], err)
		}
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
