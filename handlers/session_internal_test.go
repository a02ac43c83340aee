package handlers

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/store"
)

// TestOpenTerminalKeepsSessionAlive: someone working in a terminal for hours makes no
// dashboard request; the open socket must keep the sign-in from reaching the idle
// timeout, and stop doing so once it closes.
func TestOpenTerminalKeepsSessionAlive(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kr, _ := secrets.LoadOrCreateMaster(t.TempDir())
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	key := make([]byte, 64)
	_, s, err := New(Config{SessionHashKey: key, SessionBlockKey: key[:32], CSRFKey: key[:32], Secrets: kr, Now: clock}, st)
	if err != nil {
		t.Fatal(err)
	}
	u := &store.User{Username: "alice", PasswordHash: "x", Role: store.RoleMember}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	start := now
	if err := st.CreateWebSession(ctx, &store.WebSession{ID: "ws", UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(12 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	stop := s.keepSessionAlive("ws", 5*time.Millisecond)
	mu.Lock()
	now = now.Add(3 * time.Hour)
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, _, err := st.WebSessionByID(ctx, "ws", clock())
		if err != nil {
			t.Fatal(err)
		}
		if ws.LastSeenAt.After(start.Add(2 * time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the open terminal did not mark the session active: last seen %v", ws.LastSeenAt)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop() // returns once the keep-alive goroutine has ended
}
