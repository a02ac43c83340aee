package store_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

// TestMain runs the whole suite twice, the same test bodies on SQLite and then on a
// throwaway PostgreSQL cluster, so every query is held to both engines. A failure
// says which engine it ran on (OpenTest logs it).
func TestMain(m *testing.M) {
	os.Exit(testpg.Run(func() int {
		code := 0
		for _, e := range []store.Engine{store.EngineSQLite, store.EnginePostgres} {
			store.SetTestEngine(e)
			fmt.Printf("=== store suite on %s\n", e)
			if c := m.Run(); c != 0 {
				code = c
			}
		}
		return code
	}))
}
