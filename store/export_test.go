package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/shellgate/shellgate/internal/testpg"
)

// The store suite runs twice, once per engine (see TestMain in main_test.go): every
// test opens its store through OpenTest, which opens the engine of the current pass.
var (
	testEngine = EngineSQLite

	templateMu   sync.Mutex
	templateName string // a migrated PostgreSQL database that tests copy
)

// SetTestEngine chooses the engine that OpenTest and FreshURL open.
func SetTestEngine(e Engine) { testEngine = e }

// MigrationsApplied reports how many migrations this handle applied when it opened.
func MigrationsApplied(s *DB) int { return s.migrated }

// FreshURL returns the URL of a new, empty (not yet migrated) database on the engine of
// the current pass.
func FreshURL(t testing.TB) string {
	t.Helper()
	if testEngine == EnginePostgres {
		return testpg.Need(t).NewDatabase(t)
	}
	return "sqlite:" + filepath.Join(t.TempDir(), "t.db")
}

// OpenTest opens a new, migrated store on the engine of the current pass. On
// PostgreSQL it is a copy of a database migrated once, which is much faster than
// migrating per test.
func OpenTest(t testing.TB) *DB {
	t.Helper()
	url := ""
	if testEngine == EnginePostgres {
		c := testpg.Need(t)
		ctx := context.Background()
		templateMu.Lock()
		if templateName == "" {
			name, err := c.CreateDatabase(ctx, "")
			if err != nil {
				templateMu.Unlock()
				t.Fatal(err)
			}
			db, err := Open(ctx, c.URL(name))
			if err != nil {
				templateMu.Unlock()
				t.Fatal(err)
			}
			db.Close()
			templateName = name
		}
		templateMu.Unlock()
		name, err := c.CreateDatabase(ctx, templateName)
		if err != nil {
			t.Fatal(err)
		}
		url = c.URL(name)
	} else {
		url = FreshURL(t)
	}
	db, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	engine := testEngine
	t.Cleanup(func() {
		db.Close()
		if t.Failed() {
			t.Logf("(engine: %s)", engine)
		}
	})
	return db
}

// MigrationFiles counts the migrations an engine has.
func MigrationFiles(t testing.TB, e Engine) int {
	t.Helper()
	entries, err := migrations.ReadDir("migrations/" + string(e))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// CurrentTestEngine is the engine of the current pass.
func CurrentTestEngine() Engine { return testEngine }
