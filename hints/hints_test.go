package hints

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m.Run)) }

// collector records the hints a subscriber receives.
type collector chan Hint

func (c collector) fn(h Hint) { c <- h }

// next waits for the next hint, with a deadline.
func (c collector) next(t *testing.T, what string) Hint {
	t.Helper()
	select {
	case h := <-c:
		return h
	case <-time.After(10 * time.Second):
		t.Fatalf("no hint: %s", what)
		return Hint{}
	}
}

func (c collector) none(t *testing.T, what string) {
	t.Helper()
	select {
	case h := <-c:
		t.Fatalf("%s: unexpected hint %+v", what, h)
	default:
	}
}

func TestLocalBus(t *testing.T) {
	b := NewLocal()
	revoked, other := make(collector, 10), make(collector, 10)
	unsub := b.Subscribe("session.revoked", revoked.fn)
	b.Subscribe("stack.changed", other.fn)
	if err := b.Publish("session.revoked", "7"); err != nil {
		t.Fatal(err)
	}
	if h := revoked.next(t, "local publish"); h.Topic != "session.revoked" || h.Payload != "7" || h.Resync {
		t.Fatalf("got %+v", h)
	}
	other.none(t, "another topic's subscriber")
	unsub()
	b.Publish("session.revoked", "8")
	revoked.none(t, "after unsubscribe")
	if err := b.Publish("x", strings.Repeat("a", MaxPayload+1)); err == nil {
		t.Fatal("an oversized payload was accepted: hints name state, they do not carry it")
	}
	b.Close()
	if err := b.Publish("x", "1"); err == nil {
		t.Fatal("publish after Close succeeded")
	}
}

// replica opens a store and a bus on url, as one shellgate replica does.
func replica(t *testing.T, url string) *Postgres {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	b := NewPostgres(st.PostgresConfig(), st.Notify, nil)
	t.Cleanup(func() { b.Close(); st.Close() })
	select {
	case <-b.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("bus not listening")
	}
	return b
}

// TestHintsReachEveryReplica: a hint published on one replica reaches the subscribers
// of another, and the publisher's own subscribers exactly once (locally, not again
// through PostgreSQL).
func TestHintsReachEveryReplica(t *testing.T) {
	url := testpg.Need(t).NewDatabase(t)
	a, b := replica(t, url), replica(t, url)
	onA, onB := make(collector, 10), make(collector, 10)
	a.Subscribe("session.revoked", onA.fn)
	b.Subscribe("session.revoked", onB.fn)

	if err := a.Publish("session.revoked", "7"); err != nil {
		t.Fatal(err)
	}
	if h := onA.next(t, "publisher's own subscriber"); h.Payload != "7" {
		t.Fatalf("A got %+v", h)
	}
	if h := onB.next(t, "other replica"); h.Payload != "7" || h.Resync {
		t.Fatalf("B got %+v", h)
	}
	// PostgreSQL delivers notifications in commit order: once A hears B's "8", a
	// duplicate of its own "7" would have arrived before it.
	if err := b.Publish("session.revoked", "8"); err != nil {
		t.Fatal(err)
	}
	if h := onA.next(t, "B's hint on A"); h.Payload != "8" {
		t.Fatalf("A got %+v, want only B's 8 (its own 7 delivered twice?)", h)
	}
	onB.next(t, "B's own hint")
}

// TestResyncAfterReconnect: when a replica's listening connection is cut (a database
// restart, a failover, an idle timeout in a proxy), hints sent meanwhile are lost; the
// bus reconnects and tells every subscriber to re-read its state, then hints flow again.
func TestResyncAfterReconnect(t *testing.T) {
	url := testpg.Need(t).NewDatabase(t)
	a, b := replica(t, url), replica(t, url)
	onB := make(collector, 10)
	b.Subscribe("session.revoked", onB.fn)
	b.Subscribe("stack.changed", onB.fn)

	admin, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.DB().Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?`,
		"shellgate-hints-"+b.origin)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("terminated %d listening connections, want 1", n)
	}
	// One Resync per subscriber, whatever its topic.
	for i := range 2 {
		if h := onB.next(t, "resync after the cut"); !h.Resync {
			t.Fatalf("hint %d after the cut: %+v, want Resync", i, h)
		}
	}
	if b.Reconnects() != 1 {
		t.Fatalf("%d reconnects", b.Reconnects())
	}
	if err := a.Publish("session.revoked", "9"); err != nil {
		t.Fatal(err)
	}
	if h := onB.next(t, "hint after reconnect"); h.Payload != "9" || h.Resync {
		t.Fatalf("B got %+v", h)
	}
}

// TestScopesCrossReplicas: a revocation committed on replica A wakes the sessions of
// the revoked scopes on replica B (and not A's twice); an announcement too big for a
// hint wakes everything; a reconnect of B's listener wakes everything on B.
func TestScopesCrossReplicas(t *testing.T) {
	url := testpg.Need(t).NewDatabase(t)
	a, b := replica(t, url), replica(t, url)
	onA, onB := make(chan []string, 10), make(chan []string, 10)
	sa := BridgeScopes(a, "access", func(s []string) { onA <- s })
	sb := BridgeScopes(b, "access", func(s []string) { onB <- s })
	defer sa.Close()
	defer sb.Close()
	next := func(c chan []string, what string) []string {
		t.Helper()
		select {
		case s := <-c:
			return s
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing woken: %s", what)
			return nil
		}
	}

	sa.Announce([]string{"user:7", "web:abc"})
	if got := next(onB, "B after A's revocation"); strings.Join(got, ",") != "user:7,web:abc" {
		t.Fatalf("B woke %v", got)
	}
	sa.Announce([]string{strings.Repeat("x", MaxPayload+1)})
	if got := next(onB, "B after a big announcement"); len(got) != 1 || got[0] != AllScopes {
		t.Fatalf("B woke %v, want everything", got)
	}
	// B's own announcement reaches A; A's own never came back to A (it would be first).
	sb.Announce([]string{"server:3"})
	if got := next(onA, "A after B's change"); strings.Join(got, ",") != "server:3" {
		t.Fatalf("A woke %v: its own announcements came back to it?", got)
	}

	admin, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.DB().Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?`,
		"shellgate-hints-"+b.origin); err != nil {
		t.Fatal(err)
	}
	if got := next(onB, "B after its listener reconnected"); len(got) != 1 || got[0] != AllScopes {
		t.Fatalf("B woke %v after a reconnect, want everything", got)
	}
}
