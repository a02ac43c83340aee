package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/store"
)

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadyzAndDrain: /readyz is 200 while shellgate should get work; once Drain
// starts it is 503 and new requests are refused (a load balancer moves on), while
// /healthz still says the process is alive; a database that is gone is not ready.
func TestReadyzAndDrain(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := secrets.LoadOrCreateMaster(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, hs, err := handlers.New(handlers.Config{SessionHashKey: randomKey(64), SessionBlockKey: randomKey(32),
		CSRFKey: randomKey(32), Secrets: keyring}, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()

	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/login": 200} {
		if got := status(t, srv.URL+path); got != want {
			t.Errorf("before drain: %s = %d, want %d", path, got, want)
		}
	}
	if n := hs.Drain(context.Background()); n != 0 {
		t.Errorf("Drain cut %d transfers with none in flight", n)
	}
	for path, want := range map[string]int{"/readyz": 503, "/healthz": 200, "/login": 503} {
		if got := status(t, srv.URL+path); got != want {
			t.Errorf("draining: %s = %d, want %d", path, got, want)
		}
	}

	// A second instance on a closed database: not ready, still alive.
	e2, _, err := handlers.New(handlers.Config{SessionHashKey: randomKey(64), SessionBlockKey: randomKey(32),
		CSRFKey: randomKey(32), Secrets: keyring}, st)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(e2)
	defer srv2.Close()
	st.Close()
	if got := status(t, srv2.URL+"/readyz"); got != 503 {
		t.Errorf("closed database: /readyz = %d, want 503", got)
	}
	if got := status(t, srv2.URL+"/healthz"); got != 200 {
		t.Errorf("closed database: /healthz = %d, want 200", got)
	}
}
