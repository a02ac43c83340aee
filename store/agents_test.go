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

// TestTunnelTokenConcurrentClaims: a source token pasted into several proxies
// at once (or stolen and raced) is spent by exactly one.
func TestTunnelTokenConcurrentClaims(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	sv := mustServer(t, st, "web")
	now := time.Now()
	tn := &store.Tunnel{ServerID: sv.ID, Services: "ssh", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateTunnel(ctx, tn, "th"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := st.ClaimTunnelToken(ctx, "th", fmt.Sprintf("ssh-ed25519 P%d", i), now)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && got.ID == tn.ID {
				wins++
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d winners, want 1", wins)
	}
	// Rotation revokes the enrolled proxy and keeps the end; a closed tunnel takes nothing.
	if err := st.RotateTunnelToken(ctx, tn.ID, "th2", now); err != nil {
		t.Fatal(err)
	}
	got, _ := st.TunnelByID(ctx, tn.ID)
	if got.SourceKey != "" || !got.TokenPending || !got.ExpiresAt.Equal(time.UnixMilli(now.Add(time.Hour).UnixMilli()).UTC()) {
		t.Errorf("after rotation: %+v", got)
	}
	if err := st.CloseTunnel(ctx, tn.ID, "closed", now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimTunnelToken(ctx, "th2", "ssh-ed25519 X", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("claim on a closed tunnel: %v", err)
	}
	if err := st.RotateTunnelToken(ctx, tn.ID, "th3", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate a closed tunnel: %v", err)
	}
	// Expired: not claimable.
	tn2 := &store.Tunnel{ServerID: sv.ID, Services: "ssh", CreatedAt: now, ExpiresAt: now.Add(time.Second)}
	st.CreateTunnel(ctx, tn2, "th4")
	if _, err := st.ClaimTunnelToken(ctx, "th4", "ssh-ed25519 Y", now.Add(2*time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("claim on an expired tunnel: %v", err)
	}
}
