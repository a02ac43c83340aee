package tunnel

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/store"
)

// memStore is an in-memory AgentStore: one server, id 1, named "nas".
type memStore struct {
	mu        sync.Mutex
	tokenHash string
	key       string
	claims    int // successful claims
	connected bool
	changes   int
}

func (m *memStore) ClaimAgentToken(_ context.Context, hash, key string, _ time.Time) (int64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokenHash == "" || hash != m.tokenHash {
		return 0, "", store.ErrNotFound
	}
	m.tokenHash, m.key = "", key
	m.claims++
	return 1, "nas", nil
}

func (m *memStore) AgentByPublicKey(_ context.Context, key string) (int64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.key == "" || key != m.key {
		return 0, "", store.ErrNotFound
	}
	return 1, "nas", nil
}

func (m *memStore) SetAgentLink(_ context.Context, _ int64, connected bool, _ string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.connected = connected
	m.changes++
	return nil
}

func (m *memStore) claimCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claims
}

func (m *memStore) isConnected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connected
}

// rig is a Hub behind a loopback HTTP server, with a swappable hub so a test
// can "restart" shellgate under a running agent.
type rig struct {
	t     *testing.T
	st    *memStore
	hub   atomic.Pointer[Hub]
	srv   *httptest.Server
	token string
	hb    time.Duration
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRig(t *testing.T, hb time.Duration) *rig {
	r := &rig{t: t, st: &memStore{}, hb: hb}
	var h string
	r.token, h = NewToken()
	r.st.tokenHash = h
	r.hub.Store(NewHub(HubConfig{Store: r.st, Logger: quietLogger(), Heartbeat: hb}))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != Path {
			http.NotFound(w, req)
			return
		}
		r.hub.Load().ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		r.hub.Load().Close()
		r.srv.Close()
	})
	return r
}

// restartHub closes the current hub (its agents see 1001) and serves a new one.
func (r *rig) restartHub() {
	old := r.hub.Load()
	r.hub.Store(NewHub(HubConfig{Store: r.st, Logger: quietLogger(), Heartbeat: r.hb}))
	old.Close()
}

// pipeDialer hands the agent one end of a net.Pipe per dial and the test the other.
type pipeDialer struct {
	mu    sync.Mutex
	addrs []string
	peers chan net.Conn
}

func newPipeDialer() *pipeDialer { return &pipeDialer{peers: make(chan net.Conn, 16)} }

func (p *pipeDialer) dial(_ context.Context, addr string) (net.Conn, error) {
	p.mu.Lock()
	p.addrs = append(p.addrs, addr)
	p.mu.Unlock()
	a, b := net.Pipe()
	p.peers <- b
	return a, nil
}

func (p *pipeDialer) dialed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.addrs...)
}

type runningAgent struct {
	cancel   context.CancelFunc
	done     chan error
	enrolled atomic.Int32
	once     sync.Once
}

func (r *rig) startAgent(token string, key ed25519.PrivateKey, dial func(context.Context, string) (net.Conn, error)) *runningAgent {
	r.t.Helper()
	ra := &runningAgent{done: make(chan error, 1)}
	a, err := NewAgent(AgentConfig{
		URL: r.srv.URL, Key: key, Token: token, Dial: dial, Logger: quietLogger(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnEnrolled: func() error { ra.enrolled.Add(1); return nil },
	})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra.cancel = cancel
	go func() { ra.done <- a.Run(ctx) }()
	r.t.Cleanup(func() { ra.stop(r.t) })
	return ra
}

// stop cancels the agent and waits for Run to return (once; a test that
// already received from done puts the value back).
func (ra *runningAgent) stop(t *testing.T) {
	ra.once.Do(func() {
		ra.cancel()
		select {
		case <-ra.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
}

func newKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) waitLinked() {
	r.t.Helper()
	waitFor(r.t, "agent link", func() bool { _, ok := r.hub.Load().Link(1); return ok })
}

func TestEnrollStreamOrderingAndReconnectWithCredential(t *testing.T) {
	base := runtime.NumGoroutine()
	r := newRig(t, time.Minute)
	pd := newPipeDialer()
	ra := r.startAgent(r.token, newKey(t), pd.dial)
	r.waitLinked()
	// The hub registers the link as it sends the welcome; the agent records
	// its enrollment when it reads it.
	waitFor(t, "enrollment recorded", func() bool { return ra.enrolled.Load() == 1 })
	if n := r.st.claimCount(); n != 1 {
		t.Fatalf("claims %d", n)
	}

	// Ordering both ways through one stream, the far end a net.Pipe.
	c, err := r.hub.Load().DialAgent(t.Context(), 1, "127.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	peer := <-pd.peers
	var want bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	go func() {
		for i := range 2000 {
			fmt.Fprintf(c, "line %d\n", i)
		}
	}()
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("peer read (%v) differs from what was written, in order", err)
	}
	go func() {
		peer.Write([]byte("reply"))
		peer.Close() // the far end closes: the hub's stream reaches EOF
	}()
	back, err := io.ReadAll(c)
	if err != nil || string(back) != "reply" {
		t.Fatalf("hub read %q %v", back, err)
	}
	c.Close()

	// shellgate restarts: the agent comes back with its credential, no token.
	r.restartHub()
	r.waitLinked()
	if r.st.claimCount() != 1 {
		t.Errorf("claims %d after reconnect; the token must not be sent again", r.st.claimCount())
	}
	c2, err := r.hub.Load().DialAgent(t.Context(), 1, "127.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()

	ra.stop(t)
	r.hub.Load().Close()
	r.srv.Close()
	waitFor(t, "no goroutine left", func() bool { return runtime.NumGoroutine() <= base+2 })
}

// TestAgentRefusesDestinationsOutsideAllowList: a compromised or confused
// shellgate must not turn the agent into a pivot into the host's network:
// only the configured destinations are dialed.
func TestAgentRefusesDestinationsOutsideAllowList(t *testing.T) {
	r := newRig(t, time.Minute)
	pd := newPipeDialer()
	r.startAgent(r.token, newKey(t), pd.dial)
	r.waitLinked()
	for _, addr := range []string{"127.0.0.1:23", "10.0.0.1:22", "localhost:22", "nonsense"} {
		_, err := r.hub.Load().DialAgent(t.Context(), 1, addr)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err = %v, want ErrRefused", addr, err)
		}
	}
	if d := pd.dialed(); len(d) != 0 {
		t.Errorf("agent dialed %v", d)
	}
	if _, err := r.hub.Load().DialAgent(t.Context(), 2, "127.0.0.1:22"); !errors.Is(err, ErrAgentOffline) {
		t.Errorf("server without agent: %v", err)
	}
}

// TestTokenSecondUseRefused: a leaked, already used destination token must not
// enroll a second agent; the agent stops instead of retrying.
func TestTokenSecondUseRefused(t *testing.T) {
	r := newRig(t, time.Minute)
	r.startAgent(r.token, newKey(t), newPipeDialer().dial)
	r.waitLinked()
	second := r.startAgent(r.token, newKey(t), newPipeDialer().dial)
	select {
	case err := <-second.done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("second agent: %v", err)
		}
		second.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("second agent was not refused")
	}
	if n := r.st.claimCount(); n != 1 {
		t.Errorf("claims %d", n)
	}
}

// TestUnenrolledKeyRefused: an agent without a token and with a key shellgate
// never enrolled is refused.
func TestUnenrolledKeyRefused(t *testing.T) {
	r := newRig(t, time.Minute)
	ra := r.startAgent("", newKey(t), newPipeDialer().dial)
	select {
	case err := <-ra.done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("err = %v", err)
		}
		ra.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("not refused")
	}
}

// TestDisconnectRevokesAtOnce: "Generate new token" must cut the enrolled agent
// off immediately, streams included; the agent stops (its credential is void).
func TestDisconnectRevokesAtOnce(t *testing.T) {
	r := newRig(t, time.Minute)
	pd := newPipeDialer()
	ra := r.startAgent(r.token, newKey(t), pd.dial)
	r.waitLinked()
	c, err := r.hub.Load().DialAgent(t.Context(), 1, "127.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	<-pd.peers
	r.hub.Load().Disconnect(1)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("stream still readable after revocation")
	}
	select {
	case err := <-ra.done:
		if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("agent: %v", err)
		}
		ra.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("agent kept running")
	}
	waitFor(t, "disconnected in store", func() bool { return !r.st.isConnected() })
}

// TestBrowserCannotReachAgentEndpoint: the agent endpoint is not a browser
// endpoint. A page on any site (or shellgate's own) making a WebSocket to it
// carries an Origin, and maybe the person's cookies: it is refused before
// the upgrade, and cookies grant nothing.
func TestBrowserCannotReachAgentEndpoint(t *testing.T) {
	r := newRig(t, time.Minute)
	wsURL := "ws" + strings.TrimPrefix(r.srv.URL, "http") + Path
	for _, origin := range []string{r.srv.URL, "https://evil.example"} {
		hdr := http.Header{"Origin": {origin}, "Cookie": {"__Host-shellgate=whatever"}}
		_, resp, err := websocket.DefaultDialer.Dial(wsURL, hdr)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %s: err %v resp %v, want 403", origin, err, resp)
		}
	}
}

// TestSilentAgentIsCut: an agent that stops answering heartbeats is marked
// disconnected after three intervals, and a fresh link is accepted after it.
func TestSilentAgentIsCut(t *testing.T) {
	r := newRig(t, 50*time.Millisecond)
	key := newKey(t)
	// A hand-made agent that answers the handshake and then never reads again,
	// so pongs are never sent.
	wsURL := "ws" + strings.TrimPrefix(r.srv.URL, "http") + Path
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var ch Challenge
	if err := ws.ReadJSON(&ch); err != nil {
		t.Fatal(err)
	}
	nonce, _ := base64Decode(ch.Nonce)
	host := strings.TrimPrefix(r.srv.URL, "http://")
	msg, _ := signHello(key, nonce, host, r.token)
	ws.WriteMessage(websocket.TextMessage, msg)
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	r.waitLinked()
	waitFor(t, "silent agent cut", func() bool { _, ok := r.hub.Load().Link(1); return !ok && !r.st.isConnected() })
}

func TestBackoffFullJitter(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for n, ceil := range map[int]time.Duration{0: time.Second, 1: 2 * time.Second, 3: 8 * time.Second, 6: time.Minute, 40: time.Minute} {
		var maxSeen time.Duration
		for range 200 {
			d := Backoff(n, lo, hi)
			if d < 0 || d > ceil {
				t.Fatalf("retry %d: %v outside [0, %v]", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil/4 {
			t.Errorf("retry %d: never above %v of %v: no jitter over the range", n, maxSeen, ceil)
		}
	}
}

func TestTokenShape(t *testing.T) {
	a, ha := NewToken()
	b, _ := NewToken()
	if a == b || !validToken(a) || ha != HashToken(a) || strings.Contains(ha, a) || len(a) < 4+43 {
		t.Fatalf("tokens %q %q hash %q", a, b, ha)
	}
	for _, bad := range []string{"", "sgd_", "sgd_abc", "xyz_" + a[4:], a + "x"} {
		if validToken(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
