package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

// TestReplicasShareOnePostgres: two shellgate processes on one PostgreSQL database with
// the same master key serve the same people: a browser signed in on one is signed in on
// the other, a stack made on one is listed by the other, a sign-out on one is honoured
// by the other, and each replica is in the registry until it stops.
func TestReplicasShareOnePostgres(t *testing.T) {
	url := testpg.Need(t).NewDatabase(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	if _, err := secrets.LoadOrCreateMaster(dirA); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dirA, secrets.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, secrets.FileName), key, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": "correct horse battery staple 42", "SHELLGATE_DATABASE_URL": url}
	baseA, _, _ := startServe(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dirA}, env)
	baseB, _, stopB := startServe(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dirB}, env)

	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rs, err := st.ListReplicas(context.Background(), time.Time{}); err != nil || len(rs) != 2 {
		t.Fatalf("registry: %+v %v, want two replicas", rs, err)
	}

	w := signIn(t, baseA, "admin", env["SHELLGATE_ADMIN_PASSWORD"])
	resp := w.post("/stacks", "application/x-www-form-urlencoded", "name=made-on-a&_csrf="+w.csrf)
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		t.Fatalf("create stack on A: %d", resp.StatusCode)
	}
	// The same browser (cookie jar) now asks B.
	w.base = baseB
	if page := w.get("/stacks"); !strings.Contains(page, "made-on-a") {
		t.Fatalf("B does not list the stack created on A, or the session is unknown to B:\n%.600s", page)
	}
	resp = w.post("/logout", "application/x-www-form-urlencoded", "_csrf="+w.csrf)
	resp.Body.Close()
	w.base = baseA
	resp, err = w.c.Get(baseA + "/stacks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("signed out on B, still signed in on A")
	}

	stopB()
	if rs, _ := st.ListReplicas(context.Background(), time.Time{}); len(rs) != 1 {
		t.Fatalf("after B stopped the registry holds %d replicas, want 1", len(rs))
	}
}
