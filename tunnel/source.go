package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/shellgate/shellgate/store"
)

// SourcePath is where local proxies (shellgate proxy) connect.
const SourcePath = "/tunnel/connect"

// Services a tunnel may carry, by name, and the port each means on the server.
// "ssh" is the server's own SSH port.
const ServiceSSH = "ssh"

// TunnelStore is what the SourceHub needs from the database.
type TunnelStore interface {
	ClaimTunnelToken(ctx context.Context, tokenHash, key string, now time.Time) (*store.Tunnel, error)
	TunnelBySourceKey(ctx context.Context, key string, now time.Time) (*store.Tunnel, error)
	TunnelByID(ctx context.Context, id int64) (*store.Tunnel, error)
	ServerInStack(ctx context.Context, stackID, serverID int64) (*store.Server, error)
	CloseTunnel(ctx context.Context, id int64, reason string, now time.Time) error
	AddTunnelTraffic(ctx context.Context, id, up, down int64) error
}

// ConnEvent is a tunnel event for the audit log: a proxied connection ended
// ("tunnel.connection", with bytes and duration), a tunnel expired, a proxy
// connected or disconnected.
type ConnEvent struct {
	Kind     string
	Tunnel   *store.Tunnel
	Addr     string // the proxy's address
	Service  string
	Up, Down int64
	Duration time.Duration
	Err      string
}

// SourceConfig configures a SourceHub.
type SourceConfig struct {
	Store TunnelStore
	// Dialer reaches the servers: DialAgent for servers behind an agent,
	// DialContext for the others (a Router).
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
		DialAgent(ctx context.Context, serverID int64, addr string) (net.Conn, error)
	}
	Logger           *slog.Logger
	Heartbeat        time.Duration
	HandshakeTimeout time.Duration
	ClientAddr       func(*http.Request) string
	OnEvent          func(ConnEvent)
	Now              func() time.Time
}

// SourceHub is shellgate's side of tunnels for native clients: local proxies
// connect here, and every stream they open is carried to the tunnel's server.
type SourceHub struct {
	cfg SourceConfig

	mu     sync.Mutex
	links  map[int64]*sourceLink
	closed bool
	wg     sync.WaitGroup
}

type sourceLink struct {
	tunnelID int64
	key      string
	addr     string
	since    time.Time
	ws       *wsConn
	sess     *yamux.Session
	active   atomic.Int64 // live proxied connections
	once     sync.Once
}

func (l *sourceLink) close(code int, reason string) {
	l.once.Do(func() {
		l.ws.closeWith(code, reason)
		l.sess.Close()
	})
}

// NewSourceHub returns a SourceHub; Close it at shutdown.
func NewSourceHub(cfg SourceConfig) *SourceHub {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.ClientAddr == nil {
		cfg.ClientAddr = func(r *http.Request) string { return r.RemoteAddr }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SourceHub{cfg: cfg, links: map[int64]*sourceLink{}}
}

func (h *SourceHub) event(e ConnEvent) {
	if h.cfg.OnEvent != nil {
		h.cfg.OnEvent(e)
	}
}

// ServeHTTP serves a local proxy's upgrade. Like the agent endpoint it is not
// a browser endpoint: a request with an Origin is refused, cookies are never
// read; the proxy authenticates with the source token (first message) or the
// key it enrolled with it.
func (h *SourceHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") != "" {
		http.Error(w, "not a browser endpoint", http.StatusForbidden)
		return
	}
	addr := h.cfg.ClientAddr(r)
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	h.serve(context.WithoutCancel(r.Context()), ws, r.Host, addr)
}

func (h *SourceHub) serve(ctx context.Context, ws *websocket.Conn, host, addr string) {
	conn := newWSConn(ws, missedHeartbeats*h.cfg.Heartbeat)
	var t *store.Tunnel
	var keyLine string
	err := serverHandshake(ws, host, h.cfg.HandshakeTimeout, func(hello *Hello, line, fp string) (*Welcome, error) {
		var err error
		now := h.cfg.Now()
		if hello.Token != "" {
			t, err = h.cfg.Store.ClaimTunnelToken(ctx, HashToken(hello.Token), line, now)
		} else {
			t, err = h.cfg.Store.TunnelBySourceKey(ctx, line, now)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: tunnel token or key not valid (%v)", ErrUnauthorized, err)
		}
		keyLine = line
		return &Welcome{Type: MsgWelcome, Server: t.Server, HeartbeatMS: h.cfg.Heartbeat.Milliseconds(),
			Enrolled: hello.Token != "", ExpiresAtMS: t.ExpiresAt.UnixMilli()}, nil
	})
	if err != nil {
		code := CloseUnauthorized
		if !errors.Is(err, ErrUnauthorized) {
			code = CloseProtocol
		}
		h.cfg.Logger.Warn("local proxy refused", "addr", addr, "err", err)
		conn.closeWith(code, "not authorized")
		return
	}
	ws.SetReadLimit(maxMuxFrame)
	// The proxy opens the streams: shellgate is the multiplexer's server here.
	sess, err := yamux.Server(conn, muxConfig(h.cfg.Heartbeat))
	if err != nil {
		conn.closeWith(websocket.CloseInternalServerErr, "")
		return
	}
	l := &sourceLink{tunnelID: t.ID, key: keyLine, addr: addr, since: h.cfg.Now(), ws: conn, sess: sess}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		l.close(CloseGoingAway, "shutting down")
		return
	}
	old := h.links[t.ID]
	h.links[t.ID] = l
	h.mu.Unlock()
	if old != nil {
		old.close(CloseReplaced, "replaced by a newer connection")
	}
	h.cfg.Logger.Info("local proxy connected", "tunnel", t.ID, "server", t.Server, "addr", addr)
	h.event(ConnEvent{Kind: "tunnel.proxy_connect", Tunnel: t, Addr: addr})

	// The tunnel never outlives its lifetime: at its end it is closed and
	// every connection through it cut.
	expire := time.AfterFunc(t.ExpiresAt.Sub(h.cfg.Now()), func() {
		ectx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.cfg.Store.CloseTunnel(ectx, t.ID, "expired", h.cfg.Now()); err == nil {
			h.event(ConnEvent{Kind: "tunnel.expire", Tunnel: t})
		}
		l.close(CloseTunnelExpired, "tunnel expired")
	})
	defer expire.Stop()

	hb := h.cfg.Heartbeat
	ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
	ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb)) })
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(hb)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(hb)) != nil {
					l.close(CloseGoingAway, "heartbeat write failed")
					return
				}
			}
		}
	}()
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.carry(ctx, l, t, s)
		}()
	}
	close(done)
	l.close(CloseGoingAway, "link lost")
	wg.Wait()
	h.mu.Lock()
	if h.links[t.ID] == l {
		delete(h.links, t.ID)
	}
	h.mu.Unlock()
	h.cfg.Logger.Info("local proxy disconnected", "tunnel", t.ID, "addr", addr)
	h.event(ConnEvent{Kind: "tunnel.proxy_disconnect", Tunnel: t, Addr: addr})
}

// carry serves one stream: the service asked for is checked against the
// tunnel (re-read, so a tunnel closed elsewhere carries nothing new), the
// server is dialed (through its agent when it has one) and bytes flow.
func (h *SourceHub) carry(ctx context.Context, l *sourceLink, t0 *store.Tunnel, s *yamux.Stream) {
	defer s.Close()
	start := time.Now()
	s.SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
	var req OpenRequest
	if err := readFrame(s, &req); err != nil {
		return
	}
	refuse := func(msg string) {
		writeFrame(s, OpenReply{Error: msg})
		h.event(ConnEvent{Kind: "tunnel.connection", Tunnel: t0, Addr: l.addr, Service: req.Addr, Err: msg})
	}
	t, err := h.cfg.Store.TunnelByID(ctx, t0.ID)
	if err != nil || !t.Open(h.cfg.Now()) || t.SourceKey != l.key {
		refuse("the tunnel is closed")
		l.close(CloseTunnelClosed, "tunnel closed")
		return
	}
	if !hasService(t.Services, req.Addr) {
		refuse("service " + req.Addr + " is not carried by this tunnel")
		return
	}
	sv, err := h.cfg.Store.ServerInStack(ctx, t.StackID, t.ServerID)
	if err != nil {
		refuse("the server is gone")
		return
	}
	addr := net.JoinHostPort(sv.Host, strconv.Itoa(sv.Port))
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	var c net.Conn
	if sv.ViaAgent {
		c, err = h.cfg.Dialer.DialAgent(dctx, sv.ID, addr)
	} else {
		c, err = h.cfg.Dialer.DialContext(dctx, "tcp", addr)
	}
	cancel()
	if err != nil {
		h.cfg.Logger.Info("tunnel connection failed", "tunnel", t.ID, "server", sv.Name, "err", err)
		refuse("shellgate could not reach " + sv.Name)
		return
	}
	defer c.Close()
	if writeFrame(s, OpenReply{OK: true}) != nil {
		return
	}
	s.SetDeadline(time.Time{})
	l.active.Add(1)
	defer l.active.Add(-1)
	up, down := &countingConn{Conn: c}, &countingConn{Conn: s}
	splice(up, down)
	h.cfg.Store.AddTunnelTraffic(context.WithoutCancel(ctx), t.ID, up.written.Load(), down.written.Load())
	h.event(ConnEvent{Kind: "tunnel.connection", Tunnel: t, Addr: l.addr, Service: req.Addr,
		Up: up.written.Load(), Down: down.written.Load(), Duration: time.Since(start)})
}

func hasService(list, svc string) bool {
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == svc {
			return true
		}
	}
	return false
}

// countingConn counts what is written to it.
type countingConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	if s, ok := c.Conn.(*yamux.Stream); ok {
		return s.Close()
	}
	if a, ok := c.Conn.(*agentConn); ok {
		return a.Stream.Close()
	}
	return c.Conn.Close()
}

// ReadFrom keeps io.Copy from bypassing Write.
func (c *countingConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c}, r)
}

// SourceState describes a tunnel's proxy side on this replica.
type SourceState struct {
	Connected   bool
	Addr        string
	Since       time.Time
	Connections int64 // live proxied connections
}

// State reports the proxy side of tunnelID.
func (h *SourceHub) State(tunnelID int64) SourceState {
	h.mu.Lock()
	l := h.links[tunnelID]
	h.mu.Unlock()
	if l == nil {
		return SourceState{}
	}
	return SourceState{Connected: true, Addr: l.addr, Since: l.since, Connections: l.active.Load()}
}

// Cut closes the proxy link of tunnelID at once, with code (CloseRevoked after
// a rotation, CloseTunnelClosed after a close or delete); every connection
// through it ends.
func (h *SourceHub) Cut(tunnelID int64, code int, reason string) {
	h.mu.Lock()
	l := h.links[tunnelID]
	h.mu.Unlock()
	if l != nil {
		l.close(code, reason)
	}
}

// Close ends every proxy link and waits for their handlers.
func (h *SourceHub) Close() {
	h.mu.Lock()
	h.closed = true
	links := make([]*sourceLink, 0, len(h.links))
	for _, l := range h.links {
		links = append(links, l)
	}
	h.mu.Unlock()
	for _, l := range links {
		l.close(CloseGoingAway, "shutting down")
	}
	h.wg.Wait()
}
