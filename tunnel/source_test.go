package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// memTunnels is an in-memory TunnelStore with one tunnel (id 7) to server 3.
type memTunnels struct {
	mu     sync.Mutex
	t      store.Tunnel
	hash   string
	closed bool
}

func (m *memTunnels) get() *store.Tunnel { c := m.t; return &c }

func (m *memTunnels) ClaimTunnelToken(_ context.Context, hash, key string, now time.Time) (*store.Tunnel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hash == "" || hash != m.hash || m.closed || !now.Before(m.t.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	m.hash, m.t.SourceKey = "", key
	return m.get(), nil
}

func (m *memTunnels) TunnelBySourceKey(_ context.Context, key string, now time.Time) (*store.Tunnel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if key == "" || key != m.t.SourceKey || m.closed {
		return nil, store.ErrNotFound
	}
	return m.get(), nil
}

func (m *memTunnels) TunnelByID(context.Context, int64) (*store.Tunnel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.get()
	if m.closed {
		t.ClosedAt = time.Now()
	}
	return t, nil
}

func (m *memTunnels) ServerInStack(context.Context, int64, int64) (*store.Server, error) {
	return &store.Server{ID: 3, Name: "web-1", Host: "127.0.0.1", Port: 22}, nil
}

func (m *memTunnels) CloseTunnel(context.Context, int64, string, time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memTunnels) AddTunnelTraffic(context.Context, int64, int64, int64) error { return nil }

// pipeRouter answers every direct dial with a net.Pipe whose far end the
// test holds; agent dials are never expected here.
type pipeRouter struct{ pd *pipeDialer }

func (p pipeRouter) DialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	return p.pd.dial(ctx, addr)
}

func (p pipeRouter) DialAgent(context.Context, int64, string) (net.Conn, error) {
	return nil, errors.New("unexpected agent dial")
}

// TestProxyThroughSourceHub: a local proxy spends its token, carries a client
// connection in order both ways to the server, and when the tunnel is closed
// the client connection is cut, the proxy stops saying so, and no goroutine
// is left behind.
func TestProxyThroughSourceHub(t *testing.T) {
	base := runtime.NumGoroutine()
	token, hash := NewToken()
	ms := &memTunnels{t: store.Tunnel{ID: 7, ServerID: 3, Server: "web-1", Services: "ssh", ExpiresAt: time.Now().Add(time.Hour)}, hash: hash}
	pd := newPipeDialer()
	hub := NewSourceHub(SourceConfig{Store: ms, Dialer: pipeRouter{pd}, Logger: quietLogger()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hub.ServeHTTP(w, r) }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var outMu sync.Mutex
	p, err := NewProxy(ProxyConfig{URL: srv.URL, Token: token, Listener: ln, Out: lockedWriter{&outMu, &out}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	waitFor(t, "proxy link", func() bool { return hub.State(7).Connected })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-pd.peers
	if d := pd.dialed(); d[0] != "127.0.0.1:22" {
		t.Fatalf("dialed %v", d)
	}
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("server side read %v, bytes differ or out of order", err)
	}
	go peer.Write([]byte("pong"))
	back := make([]byte, 4)
	if _, err := io.ReadFull(c, back); err != nil || string(back) != "pong" {
		t.Fatalf("client read %q %v", back, err)
	}

	ms.CloseTunnel(context.Background(), 7, "closed", time.Now())
	hub.Cut(7, CloseTunnelClosed, "tunnel closed")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("client connection not cut")
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("proxy ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy kept running")
	}
	c.Close()
	peer.Close()
	hub.Close()
	srv.Close()
	waitFor(t, "no goroutine left", func() bool { return runtime.NumGoroutine() <= base+2 })
	outMu.Lock()
	defer outMu.Unlock()
	if !strings.Contains(out.String(), "Tunnel to web-1 open") || strings.Contains(out.String(), token) {
		t.Errorf("proxy output:\n%s", out.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
