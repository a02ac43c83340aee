package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m.Run)) }

// engines runs body on a new SQLite database and on a new PostgreSQL database.
func engines(t *testing.T, body func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) { body(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db")) })
	t.Run("postgres", func(t *testing.T) { body(t, testpg.Need(t).NewDatabase(t)) })
}

func open(t *testing.T, url string) *store.DB {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ids(t *testing.T, m *Member) []string {
	t.Helper()
	rs, err := m.Alive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestReplicasSeeOneAnother: replicas on one database see each other; one that stops
// cleanly leaves at once; one that crashed (its heartbeat stopped) is removed by the
// survivors; one whose row was removed while it was cut off registers again.
func TestReplicasSeeOneAnother(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		member := func() (*Member, context.CancelFunc, chan struct{}) {
			m := New(open(t, url), "10.0.0.1:8443", "test", nil)
			m.Every, m.StaleAfter = 20*time.Millisecond, 500*time.Millisecond
			if err := m.Register(ctx); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); m.Run(rctx) }()
			t.Cleanup(func() { cancel(); <-done })
			return m, cancel, done
		}
		a, _, _ := member()
		b, stopB, doneB := member()
		if got := ids(t, a); !slices.Contains(got, a.Self.ID) || !slices.Contains(got, b.Self.ID) {
			t.Fatalf("alive %v, want both %s and %s", got, a.Self.ID, b.Self.ID)
		}
		if rs, _ := a.Alive(ctx); rs[0].PeerAddress != "10.0.0.1:8443" || rs[0].Hostname == "" {
			t.Fatalf("registration %+v", rs[0])
		}

		stopB()
		<-doneB
		if got := ids(t, a); slices.Contains(got, b.Self.ID) {
			t.Fatalf("a cleanly stopped replica is still listed: %v", got)
		}

		// A crashed replica: registered, then never heard from again.
		crashed := &store.Replica{ID: "crashed", Hostname: "h", StartedAt: time.Now(), HeartbeatAt: time.Now()}
		if err := a.Store.RegisterReplica(ctx, crashed); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the survivor removes the crashed replica's row", func() bool {
			rs, err := a.Store.ListReplicas(ctx, time.Time{})
			return err == nil && !slices.ContainsFunc(rs, func(r store.Replica) bool { return r.ID == "crashed" })
		})

		// Our own row removed behind our back (we were paused): the next beat restores it.
		if err := a.Store.RemoveReplica(ctx, a.Self.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a re-registers", func() bool { return slices.Contains(ids(t, a), a.Self.ID) })
	})
}
