package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sqliteOnly matches SQL that SQLite accepts and PostgreSQL refuses or reads
// differently. Queries are written once for both engines (see pgdriver.go); the store
// suite runs them on both, and this catches the ones no test reaches.
var sqliteOnly = regexp.MustCompile(`(?i)\bINSERT\s+OR\s+(IGNORE|REPLACE)\b|\bREPLACE\s+INTO\b|\bIFNULL\s*\(|\bstrftime\s*\(|` +
	`\bjulianday\s*\(|\bdatetime\s*\(|\bunixepoch\s*\(|\blast_insert_rowid\s*\(|\bAUTOINCREMENT\b|\bGLOB\b|` +
	`\browid\b|\biif\s*\(|\binstr\s*\(|\bprintf\s*\(|\btypeof\s*\(|\bCOLLATE\s+NOCASE\b|\b(MAX|MIN)\s*\([^()]*,`)

// TestQueriesArePortable reads every string literal of the store's Go sources for
// SQLite-only SQL. A literal that is SQLite-only on purpose (it runs only on SQLite)
// has a comment containing "sqlite-only" on its line or the line above.
func TestQueriesArePortable(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		exempt := map[int]bool{}
		for _, cg := range f.Comments {
			if strings.Contains(cg.Text(), "sqlite-only") {
				line := fset.Position(cg.End()).Line
				exempt[line], exempt[line+1] = true, true
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			pos := fset.Position(lit.Pos())
			if m := sqliteOnly.FindString(s); m != "" && !exempt[pos.Line] {
				t.Errorf("%s: %q is SQLite-only SQL; write it for both engines (pgdriver.go), or mark the line sqlite-only", pos, m)
			}
			return true
		})
	}
}

func TestSQLiteOnlyPatterns(t *testing.T) {
	for _, q := range []string{"INSERT OR IGNORE INTO t", "SELECT IFNULL(a, 0)", "SELECT max(a, b)", "WHERE rowid = 1", "strftime('%s')"} {
		if !sqliteOnly.MatchString(q) {
			t.Errorf("%q not caught", q)
		}
	}
	for _, q := range []string{"SELECT MAX(version) FROM t", "SELECT COALESCE(MAX(id), 0)", "INSERT INTO t ON CONFLICT DO NOTHING"} {
		if sqliteOnly.MatchString(q) {
			t.Errorf("%q caught, but both engines accept it", q)
		}
	}
}

// TestEveryMigrationHasATwin: a migration added for one engine only would leave the
// other engine's schema behind (and migrate-db refuses databases at different
// versions); each NNNN_name.sql exists for SQLite and for PostgreSQL.
func TestEveryMigrationHasATwin(t *testing.T) {
	names := func(engine string) map[string]bool {
		entries, err := migrations.ReadDir("migrations/" + engine)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range entries {
			out[e.Name()] = true
		}
		return out
	}
	lite, pg := names("sqlite"), names("postgres")
	for n := range lite {
		if !pg[n] {
			t.Errorf("%s has no PostgreSQL twin in migrations/postgres", n)
		}
	}
	for n := range pg {
		if !lite[n] {
			t.Errorf("%s has no SQLite twin in migrations/sqlite", n)
		}
	}
}
