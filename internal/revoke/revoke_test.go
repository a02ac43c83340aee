package revoke_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/revoke"
	"github.com/shellgate/shellgate/store"
)

func open(t *testing.T, path string) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitRevoked(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("revoked because %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not revoked")
	}
}

// TestGrantEndsOnAChangeInThisProcess: a watch on a grant hears the store's hint and
// ends with the reason; a change to an unrelated scope wakes it at most for a check
// and ends nothing; a change between Grant and Watch is caught by Watch's first check.
func TestGrantEndsOnAChangeInThisProcess(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "t.db"))
	svc := revoke.New(st, revoke.NewLocalBus(), nil)
	u := &store.User{Username: "alice", PasswordHash: "h", Role: store.RoleMember}
	other := &store.User{Username: "bob", PasswordHash: "h", Role: store.RoleMember}
	for _, x := range []*store.User{u, other} {
		if err := st.CreateUser(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	g, err := svc.Grant(ctx, store.ScopeUser(u.ID), store.ScopeWebSession("w1"))
	if err != nil {
		t.Fatal(err)
	}
	revoked := make(chan string, 2)
	var calls atomic.Int32
	stop := g.Watch(func(r string) { calls.Add(1); revoked <- r })
	defer stop()
	if err := st.SetDisabled(ctx, other.ID, true); err != nil { // someone else
		t.Fatal(err)
	}
	if r, _ := g.Check(ctx); r != "" {
		t.Fatalf("revoked by bob's change: %q", r)
	}
	if err := st.DeleteWebSession(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, revoked, store.ReasonSignedOut)
	if err := st.SetPassword(ctx, u.ID, "h2"); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // idempotent
	if n := calls.Load(); n != 1 {
		t.Errorf("revoked called %d times, want once", n)
	}

	// Between Grant and Watch: nobody was listening for the hint.
	g2, _ := svc.Grant(ctx, store.ScopeUser(u.ID))
	if err := st.EndUserSessions(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	r2 := make(chan string, 1)
	stop2 := g2.Watch(func(r string) { r2 <- r })
	defer stop2()
	waitRevoked(t, r2, store.ReasonEndedByAdmin)
}

// TestWatchSeesAChangeFromAnotherProcess: a second handle on the same database stands
// for another replica or `shellgate user disable` run from a shell. Its change sends
// no hint to this process; the watch of the bump counter does, and the session ends.
func TestWatchSeesAChangeFromAnotherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	here, there := open(t, path), open(t, path)
	svc := revoke.New(here, revoke.NewLocalBus(), nil)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go svc.Watch(wctx, 20*time.Millisecond)
	u := &store.User{Username: "alice", PasswordHash: "h", Role: store.RoleMember}
	if err := here.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	g, err := svc.Grant(ctx, store.ScopeUser(u.ID))
	if err != nil {
		t.Fatal(err)
	}
	revoked := make(chan string, 1)
	stop := g.Watch(func(r string) { revoked <- r })
	defer stop()
	if err := there.SetDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, revoked, store.ReasonDisabled)
}
