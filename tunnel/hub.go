package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/shellgate/shellgate/terminal"
)

// Errors of DialAgent.
var (
	// ErrAgentOffline means the server's agent has no live link to this shellgate.
	ErrAgentOffline = terminal.ErrAgentOffline
	// ErrLinkLost is what a stream's Read returns when the link under it died.
	ErrLinkLost = terminal.ErrAgentLinkLost
	// ErrRefused means the agent refused the destination (not in its allow list)
	// or could not reach it.
	ErrRefused = errors.New("the agent refused the connection")
	// ErrUnauthorized means a token or credential was not accepted.
	ErrUnauthorized = errors.New("agent not authorized")
)

// AgentStore is what the Hub needs from the database. The store satisfies it.
type AgentStore interface {
	// ClaimAgentToken spends a destination token (by its hash) with one conditional
	// UPDATE, enrolling publicKey for its server: exactly one of any number of
	// concurrent claimants wins; the others (and any later one) get an error.
	ClaimAgentToken(ctx context.Context, tokenHash, publicKey string, now time.Time) (serverID int64, name string, err error)
	// AgentByPublicKey finds the server an enrolled credential stands for.
	AgentByPublicKey(ctx context.Context, publicKey string) (serverID int64, name string, err error)
	// SetAgentLink records that the agent of serverID connected (from addr) or
	// disconnected at at.
	SetAgentLink(ctx context.Context, serverID int64, connected bool, addr string, at time.Time) error
}

// Event is an agent lifecycle event, for the audit log. It never carries a token.
type Event struct {
	Kind     string // "agent.enroll", "agent.connect", "agent.disconnect", "agent.refused"
	ServerID int64  // 0 for a refused connection that named no valid server
	Server   string
	Addr     string // the agent's address as seen by shellgate
	Reason   string
}

// HubConfig configures a Hub.
type HubConfig struct {
	Store  AgentStore
	Logger *slog.Logger
	// Heartbeat is the ping interval (default DefaultHeartbeat); a link that
	// misses three is closed.
	Heartbeat time.Duration
	// HandshakeTimeout bounds the challenge/hello exchange (default 10 s).
	HandshakeTimeout time.Duration
	// ClientAddr returns the client address of r (trusted-proxy aware); default
	// r.RemoteAddr.
	ClientAddr func(r *http.Request) string
	// OnEvent receives lifecycle events; may be nil.
	OnEvent func(Event)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Hub is shellgate's side of agent links: it serves the agents' WebSocket
// upgrades, authenticates them, keeps one live link per server and opens
// streams through it (DialAgent).
type Hub struct {
	cfg HubConfig

	mu     sync.Mutex
	links  map[int64]*link
	closed bool
	wg     sync.WaitGroup
}

// link is one live agent connection.
type link struct {
	serverID int64
	server   string
	addr     string
	since    time.Time
	ws       *wsConn
	sess     *yamux.Session

	once   sync.Once
	reason string // why it was closed by shellgate, for the log
}

// close ends the link with code, once.
func (l *link) close(code int, reason string) {
	l.once.Do(func() {
		l.reason = reason
		l.ws.closeWith(code, reason) // first, so the agent reads this code
		l.sess.Close()
	})
}

// NewHub returns a Hub; call Close at shutdown.
func NewHub(cfg HubConfig) *Hub {
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
	return &Hub{cfg: cfg, links: map[int64]*link{}}
}

// muxConfig is the multiplexer's configuration on both sides. Its own
// keepalive is off: the WebSocket ping is the one heartbeat layer.
func muxConfig(heartbeat time.Duration) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.ConnectionWriteTimeout = missedHeartbeats * heartbeat
	// A larger window than yamux's 256 KiB keeps bulk transfers (files, scp)
	// fast over long round trips; memory per stream stays bounded by it.
	c.MaxStreamWindowSize = 1 << 20
	return c
}

// maxMuxFrame bounds a binary WebSocket message after the handshake: yamux
// writes a 12-byte header and a body of at most one window.
const maxMuxFrame = 1<<20 + 64 // header and body travel in one message

var upgrader = websocket.Upgrader{
	ReadBufferSize:  32 << 10,
	WriteBufferSize: 32 << 10,
	// ServeHTTP refuses every request that carries an Origin before upgrading.
	CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
}

// ServeHTTP serves an agent's upgrade. It is not a browser endpoint: a request
// with an Origin header (every browser sends one on a WebSocket) is refused,
// and cookies are never read: the agent authenticates by token or credential
// in the first message only.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") != "" {
		http.Error(w, "not a browser endpoint", http.StatusForbidden)
		return
	}
	addr := h.cfg.ClientAddr(r)
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered already
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
	h.serve(r.Context(), ws, r.Host, addr)
}

func (h *Hub) event(e Event) {
	if h.cfg.OnEvent != nil {
		h.cfg.OnEvent(e)
	}
}

func (h *Hub) serve(ctx context.Context, ws *websocket.Conn, host, addr string) {
	ctx = context.WithoutCancel(ctx) // the link outlives the HTTP handler's context semantics
	conn := newWSConn(ws, missedHeartbeats*h.cfg.Heartbeat)
	serverID, name, enrolled, err := h.handshake(ctx, ws, host)
	if err != nil {
		code := CloseUnauthorized
		if !errors.Is(err, ErrUnauthorized) {
			code = CloseProtocol
		}
		// The reason is logged without the hello: it may hold a token.
		h.cfg.Logger.Warn("agent refused", "addr", addr, "err", err)
		h.event(Event{Kind: "agent.refused", ServerID: serverID, Server: name, Addr: addr, Reason: err.Error()})
		conn.closeWith(code, "not authorized")
		return
	}
	if enrolled {
		h.cfg.Logger.Info("agent enrolled", "server", name, "addr", addr)
		h.event(Event{Kind: "agent.enroll", ServerID: serverID, Server: name, Addr: addr})
	}
	ws.SetReadLimit(maxMuxFrame)
	sess, err := yamux.Client(conn, muxConfig(h.cfg.Heartbeat))
	if err != nil {
		conn.closeWith(websocket.CloseInternalServerErr, "")
		return
	}
	l := &link{serverID: serverID, server: name, addr: addr, since: h.cfg.Now(), ws: conn, sess: sess}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		l.close(CloseGoingAway, "shutting down")
		return
	}
	old := h.links[serverID]
	h.links[serverID] = l
	h.mu.Unlock()
	if old != nil {
		old.close(CloseReplaced, "replaced by a newer connection")
	}
	h.cfg.Store.SetAgentLink(ctx, serverID, true, addr, l.since)
	h.cfg.Logger.Info("agent connected", "server", name, "addr", addr)
	h.event(Event{Kind: "agent.connect", ServerID: serverID, Server: name, Addr: addr})

	// Heartbeat: ping every interval; each pong extends the read deadline by
	// three intervals, so a silent agent is cut after at most three.
	hb := h.cfg.Heartbeat
	ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		t := time.NewTicker(hb)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(hb)); err != nil {
					l.close(CloseGoingAway, "heartbeat write failed")
					return
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		// Only shellgate opens streams: one opened by the agent is refused.
		for {
			s, err := sess.AcceptStream()
			if err != nil {
				return
			}
			h.cfg.Logger.Warn("agent opened a stream: refused", "server", name, "addr", addr)
			s.Close()
		}
	}()
	<-sess.CloseChan()
	close(done)
	l.close(CloseGoingAway, "link lost")
	wg.Wait()

	h.mu.Lock()
	current := h.links[serverID] == l
	if current {
		delete(h.links, serverID)
	}
	h.mu.Unlock()
	if current {
		h.cfg.Store.SetAgentLink(ctx, serverID, false, addr, h.cfg.Now())
	}
	h.cfg.Logger.Info("agent disconnected", "server", name, "addr", addr, "reason", l.reason)
	h.event(Event{Kind: "agent.disconnect", ServerID: serverID, Server: name, Addr: addr, Reason: l.reason})
}

// handshake sends the challenge, reads and checks the hello, and answers
// welcome. A hello with a token enrolls its key (the token is spent); one
// without is accepted only for an enrolled key.
func (h *Hub) handshake(ctx context.Context, ws *websocket.Conn, host string) (serverID int64, name string, enrolled bool, err error) {
	err = serverHandshake(ws, host, h.cfg.HandshakeTimeout, func(hello *Hello, line, fp string) (*Welcome, error) {
		var err error
		if hello.Token != "" {
			serverID, name, err = h.cfg.Store.ClaimAgentToken(ctx, HashToken(hello.Token), line, h.cfg.Now())
			if err != nil {
				return nil, fmt.Errorf("%w: token not valid (%v)", ErrUnauthorized, err)
			}
			enrolled = true
		} else {
			serverID, name, err = h.cfg.Store.AgentByPublicKey(ctx, line)
			if err != nil {
				return nil, fmt.Errorf("%w: credential %s not enrolled (%v)", ErrUnauthorized, fp, err)
			}
		}
		return &Welcome{Type: MsgWelcome, Server: name, HeartbeatMS: h.cfg.Heartbeat.Milliseconds(), Enrolled: enrolled}, nil
	})
	return serverID, name, enrolled, err
}

// serverHandshake is shellgate's half of the handshake, shared by agents and
// local proxies: send the challenge, read the hello, check its signature,
// let auth decide (token or enrolled key), send its welcome.
func serverHandshake(ws *websocket.Conn, host string, timeout time.Duration, auth func(h *Hello, keyLine, fingerprint string) (*Welcome, error)) error {
	ws.SetReadLimit(maxHandshakeFrame)
	deadline := time.Now().Add(timeout)
	ws.SetReadDeadline(deadline)
	ws.SetWriteDeadline(deadline)
	nonce := make([]byte, 32)
	rand.Read(nonce)
	if err := ws.WriteJSON(Challenge{Type: MsgChallenge, Version: ProtocolVersion, Nonce: base64.StdEncoding.EncodeToString(nonce)}); err != nil {
		return err
	}
	typ, data, err := ws.ReadMessage()
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if typ != websocket.TextMessage {
		return errors.New("hello: not a text frame")
	}
	hello, key, sig, err := DecodeHello(data)
	if err != nil {
		return err
	}
	if err := VerifyHello(key, sig, nonce, host); err != nil {
		return fmt.Errorf("%w: signature: %v", ErrUnauthorized, err)
	}
	w, err := auth(hello, KeyLine(key), fingerprint(key))
	if err != nil {
		return err
	}
	b, _ := json.Marshal(w)
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return err
	}
	ws.SetReadDeadline(time.Time{})
	ws.SetWriteDeadline(time.Time{})
	return nil
}

// DialAgent opens a stream through the agent of serverID to addr on the
// agent's host. It satisfies terminal.AgentDialer with DialContext.
func (h *Hub) DialAgent(ctx context.Context, serverID int64, addr string) (net.Conn, error) {
	h.mu.Lock()
	l := h.links[serverID]
	h.mu.Unlock()
	if l == nil {
		return nil, ErrAgentOffline
	}
	s, err := l.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAgentOffline, err)
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	if err := writeFrame(s, OpenRequest{Addr: addr}); err != nil {
		s.Close()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	var rep OpenReply
	if err := readFrame(s, &rep); err != nil {
		s.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if !rep.OK {
		s.Close()
		return nil, fmt.Errorf("%w: %s", ErrRefused, rep.Error)
	}
	s.SetDeadline(time.Time{})
	return &agentConn{Stream: s, sess: l.sess}, nil
}

// agentConn is a stream to a destination; its reads name a dead link as
// ErrLinkLost, so the terminal can tell the person the agent went away.
type agentConn struct {
	*yamux.Stream
	sess *yamux.Session
}

func (c *agentConn) Read(p []byte) (int, error) {
	n, err := c.Stream.Read(p)
	if err != nil && c.sess.IsClosed() {
		err = fmt.Errorf("%w: %w", ErrLinkLost, err)
	}
	return n, err
}

// LinkInfo describes a live link.
type LinkInfo struct {
	Addr  string
	Since time.Time
}

// Link reports whether the agent of serverID is connected to this shellgate.
func (h *Hub) Link(serverID int64) (LinkInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.links[serverID]
	if l == nil {
		return LinkInfo{}, false
	}
	return LinkInfo{Addr: l.addr, Since: l.since}, true
}

// Disconnect closes the link of serverID's agent at once (its credential was
// revoked), with CloseRevoked. Every stream through it ends.
func (h *Hub) Disconnect(serverID int64) {
	h.mu.Lock()
	l := h.links[serverID]
	h.mu.Unlock()
	if l != nil {
		l.close(CloseRevoked, "credential revoked")
	}
}

// Close ends every link (the agents reconnect to another replica or after a
// restart) and waits for their handlers.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	links := make([]*link, 0, len(h.links))
	for _, l := range h.links {
		links = append(links, l)
	}
	h.mu.Unlock()
	for _, l := range links {
		l.close(CloseGoingAway, "shutting down")
	}
	h.wg.Wait()
}

// Connected reports whether the agent of serverID holds a link to this Hub.
func (h *Hub) Connected(serverID int64) bool {
	_, ok := h.Link(serverID)
	return ok
}

// Router is the Dialer shellgate's SSH code is given: direct TCP (or whatever
// Direct is) for ordinary servers, the Hub for servers behind an agent. It
// satisfies terminal.AgentDialer.
type Router struct {
	Direct interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
	Hub *Hub
}

// DialContext dials directly.
func (r *Router) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return r.Direct.DialContext(ctx, network, addr)
}

// DialAgent opens a stream through the agent of serverID.
func (r *Router) DialAgent(ctx context.Context, serverID int64, addr string) (net.Conn, error) {
	return r.Hub.DialAgent(ctx, serverID, addr)
}
