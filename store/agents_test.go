package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

func mustServer(t *testing.T, st *store.SQLite, name string) *store.Server {
	t.Helper()
	ctx := context.Background()
	stk := &store.Stack{Name: "stk-" + name}
	if err := st.CreateStack(ctx, stk); err != nil {
		t.Fatal(err)
	}
	sv := &store.Server{StackID: stk.ID, Name: name, Host: "127.0.0.1", Port: 22, LoginUser: "root"}
	if err := st.CreateServer(ctx, sv); err != nil {
		t.Fatal(err)
	}
	return sv
}

// TestAgentTokenConcurrentClaims: a destination token copied to several hosts
// (or replayed by an attacker racing the real agent) enrolls exactly one agent,
// however many present it at once.
func TestAgentTokenConcurrentClaims(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	sv := mustServer(t, st, "nas")
	now := time.Now()
	if err := st.SetAgentToken(ctx, sv.ID, "hash-1", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, losses := 0, 0
	var winner string
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("ssh-ed25519 KEY%d", i)
			id, name, err := st.ClaimAgentToken(ctx, "hash-1", key, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && id == sv.ID && name == "nas":
				wins++
				winner = key
			case errors.Is(err, store.ErrNotFound):
				losses++
			default:
				t.Errorf("claim: %d %q %v", id, name, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || losses != n-1 {
		t.Fatalf("wins %d losses %d, want 1 and %d", wins, losses, n-1)
	}
	if id, _, err := st.AgentByPublicKey(ctx, winner); err != nil || id != sv.ID {
		t.Fatalf("winner's credential: %d %v", id, err)
	}
	// Spent: a later use is refused too.
	if _, _, err := st.ClaimAgentToken(ctx, "hash-1", "ssh-ed25519 LATE", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reuse: %v", err)
	}
	svs, _ := st.ListServers(ctx, sv.StackID)
	if len(svs) != 1 || !svs[0].ViaAgent {
		t.Errorf("server not marked as reached through an agent: %+v", svs)
	}
}

// TestAgentNewTokenRevokesCredential: "Generate new token" must void the
// enrolled agent's credential, so a stolen agent key stops working at once.
func TestAgentNewTokenRevokesCredential(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	sv := mustServer(t, st, "nas")
	now := time.Now()
	st.SetAgentToken(ctx, sv.ID, "h1", now.Add(time.Hour), now)
	if _, _, err := st.ClaimAgentToken(ctx, "h1", "ssh-ed25519 A", now); err != nil {
		t.Fatal(err)
	}
	if err := st.SetAgentToken(ctx, sv.ID, "h2", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.AgentByPublicKey(ctx, "ssh-ed25519 A"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old credential after a new token: %v", err)
	}
	a, err := st.AgentOf(ctx, sv.ID)
	if err != nil || !a.TokenPending || a.PublicKey != "" {
		t.Errorf("agent %+v %v", a, err)
	}
	if _, _, err := st.ClaimAgentToken(ctx, "h1", "ssh-ed25519 B", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old token after a new one: %v", err)
	}
}

func TestAgentTokenExpires(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	sv := mustServer(t, st, "nas")
	now := time.Now()
	st.SetAgentToken(ctx, sv.ID, "h", now.Add(time.Minute), now)
	if _, _, err := st.ClaimAgentToken(ctx, "h", "ssh-ed25519 A", now.Add(2*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired token: %v", err)
	}
	if err := st.SetAgentLink(ctx, sv.ID, true, "10.0.0.9:4000", now); err != nil {
		t.Fatal(err)
	}
	a, _ := st.AgentOf(ctx, sv.ID)
	if !a.Connected || a.LinkAddr != "10.0.0.9:4000" {
		t.Errorf("link %+v", a)
	}
}
