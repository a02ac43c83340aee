package terminal

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// connDialer remembers the connections it made, so a test can cut them.
type connDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	n     atomic.Int64
}

func (d *connDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.n.Add(1)
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

func (d *connDialer) cutAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

func poolFixture(t *testing.T, idle time.Duration) (*Pool, *Manager, *connDialer, func(context.Context) (*Target, Auth, error)) {
	t.Helper()
	key := newSigner(t)
	ts := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	d := &connDialer{}
	m := NewManager(Config{Dialer: d})
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	p := NewPool(m, PoolConfig{Idle: idle})
	dial := func(context.Context) (*Target, Auth, error) {
		return ts.target("srv", true), Auth{Signers: []ssh.Signer{key}}, nil
	}
	return p, m, d, dial
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out: %s", what)
}

// TestPoolSharesOneConnectionAndClosesIdle: concurrent users of one user × server
// share one connection; it closes Idle after the last release, and the next use
// dials again.
func TestPoolSharesOneConnectionAndClosesIdle(t *testing.T) {
	p, _, d, dial := poolFixture(t, 100*time.Millisecond)
	ctx := context.Background()
	key := PoolKey{UserID: "1", Server: "7"}
	f1, rel1, err := p.Acquire(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	f2, rel2, err := p.Acquire(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	if f1 != f2 || d.n.Load() != 1 {
		t.Fatalf("not shared: %p %p, %d dials", f1, f2, d.n.Load())
	}
	if _, err := f1.List(ctx, f1.Home()); err != nil {
		t.Fatal(err)
	}
	rel1()
	rel1() // a second release of the same handle is ignored
	time.Sleep(250 * time.Millisecond)
	if p.Len() != 1 {
		t.Fatal("closed while still held")
	}
	rel2()
	waitUntil(t, "idle close", func() bool { return p.Len() == 0 })
	f3, rel3, err := p.Acquire(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer rel3()
	if f3 == f1 || d.n.Load() != 2 {
		t.Fatalf("after idle close: same Files %v, %d dials", f3 == f1, d.n.Load())
	}
	// Another user gets a connection of their own.
	_, rel4, err := p.Acquire(ctx, PoolKey{UserID: "2", Server: "7"}, dial)
	if err != nil {
		t.Fatal(err)
	}
	rel4()
	if d.n.Load() != 3 {
		t.Fatalf("%d dials, want 3", d.n.Load())
	}
}

// TestPoolRedialsAfterTheConnectionDies: a dead connection is dropped at once and
// the next request dials again instead of failing forever.
func TestPoolRedialsAfterTheConnectionDies(t *testing.T) {
	p, _, d, dial := poolFixture(t, time.Minute)
	ctx := context.Background()
	key := PoolKey{UserID: "1", Server: "7"}
	_, rel, err := p.Acquire(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	d.cutAll()
	waitUntil(t, "dead connection dropped", func() bool { return p.Len() == 0 })
	f, rel, err := p.Acquire(ctx, key, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	if _, err := f.List(ctx, f.Home()); err != nil || d.n.Load() != 2 {
		t.Fatalf("after re-dial: %v, %d dials", err, d.n.Load())
	}
}

// TestPoolNeedsKeys: nobody can be asked for a password over HTTP, so without a
// working key the pool says ErrNoKeyAuth and never prompts.
func TestPoolNeedsKeys(t *testing.T) {
	p, _, _, dial := poolFixture(t, time.Minute)
	ctx := context.Background()
	noKeys := func(ctx context.Context) (*Target, Auth, error) {
		tg, _, _ := dial(ctx)
		return tg, Auth{Prompter: &prompterFunc{}}, nil
	}
	if _, _, err := p.Acquire(ctx, PoolKey{UserID: "1", Server: "7"}, noKeys); !errors.Is(err, ErrNoKeyAuth) {
		t.Fatalf("no keys: %v", err)
	}
	other := newSigner(t)
	wrongKey := func(ctx context.Context) (*Target, Auth, error) {
		tg, _, _ := dial(ctx)
		return tg, Auth{Signers: []ssh.Signer{other}}, nil
	}
	if _, _, err := p.Acquire(ctx, PoolKey{UserID: "1", Server: "7"}, wrongKey); !errors.Is(err, ErrNoKeyAuth) {
		t.Fatalf("wrong key: %v", err)
	}
}

// TestPoolClosesWithTheManager: Shutdown closes pooled connections, in use or not,
// and later requests are refused.
func TestPoolClosesWithTheManager(t *testing.T) {
	p, m, _, dial := poolFixture(t, time.Minute)
	ctx := context.Background()
	f, rel, err := p.Acquire(ctx, PoolKey{UserID: "1", Server: "7"}, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 0 {
		t.Fatal("entries left after shutdown")
	}
	if _, err := f.List(ctx, f.Home()); err == nil {
		t.Fatal("listing on a closed connection worked")
	}
	if _, _, err := p.Acquire(ctx, PoolKey{UserID: "1", Server: "7"}, dial); !errors.Is(err, ErrShutdown) {
		t.Fatalf("after shutdown: %v", err)
	}
}
