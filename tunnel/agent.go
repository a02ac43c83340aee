package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// DefaultAllow is the agent's allow list when none is configured: the host's own sshd.
var DefaultAllow = []string{"127.0.0.1:22"}

// AgentConfig configures an Agent.
type AgentConfig struct {
	// URL is shellgate's public URL (http or https); the agent dials Path on it.
	URL string
	// Key is the agent's credential.
	Key ed25519.PrivateKey
	// Token is the single-use destination token, set only until enrolled.
	Token string
	// OnEnrolled is called once shellgate accepted the token (persist that).
	OnEnrolled func() error
	// Allow lists the host:port destinations shellgate may open; default DefaultAllow.
	Allow []string
	// Dial reaches a destination; default a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// DialTimeout bounds the TCP connect to shellgate and to destinations (10 s).
	DialTimeout time.Duration
	// HandshakeTimeout bounds TLS, the upgrade and the hello exchange (15 s).
	HandshakeTimeout time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay (1 s, 1 min): the n-th
	// retry waits a uniformly random time in [0, min(Max, Min·2ⁿ)] (full jitter).
	MinBackoff, MaxBackoff time.Duration
	// TLSConfig for https URLs; default the system's roots.
	TLSConfig *tls.Config
	Logger    *slog.Logger
}

// Agent is the hidden host's side of the link. Run keeps it connected.
type Agent struct {
	cfg   AgentConfig
	allow map[string]bool

	mu    sync.Mutex
	token string // "" once enrolled
}

// ErrStopped wraps the close reason when shellgate refuses or revokes the agent:
// reconnecting cannot help.
var ErrStopped = errors.New("shellgate refused this agent")

// NewAgent checks cfg and returns an Agent.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Key == nil {
		return nil, errors.New("agent: no key")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent: URL %q must be http(s)://host[:port]", cfg.URL)
	}
	if len(cfg.Allow) == 0 {
		cfg.Allow = DefaultAllow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 15 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout}
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	a := &Agent{cfg: cfg, allow: map[string]bool{}, token: cfg.Token}
	for _, x := range cfg.Allow {
		n, err := normalizeAddr(x)
		if err != nil {
			return nil, fmt.Errorf("agent: allow: %w", err)
		}
		a.allow[n] = true
	}
	return a, nil
}

// Backoff returns the full-jitter delay before retry n (0-based).
func Backoff(n int, lo, hi time.Duration) time.Duration {
	ceil := hi
	if n < 30 && lo<<n < hi && lo<<n > 0 {
		ceil = lo << n
	}
	return rand.N(ceil + 1)
}

// Run connects and reconnects until ctx ends (nil) or shellgate refuses or
// revokes the agent (an ErrStopped error).
func (a *Agent) Run(ctx context.Context) error {
	retry := 0
	for {
		welcomed, err := a.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrStopped) {
			return err
		}
		if welcomed {
			retry = 0
		}
		wait := Backoff(retry, a.cfg.MinBackoff, a.cfg.MaxBackoff)
		retry++
		a.cfg.Logger.Warn("agent link down; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// wsURL turns shellgate's public URL into the WebSocket URL of path.
func wsURL(raw, path string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// dialLink opens the WebSocket to path on shellgate: proxies from the
// environment, dial and handshake timeouts, and a fresh dialer each time so
// the name is resolved again on every attempt.
func dialLink(ctx context.Context, rawURL, path string, dialTimeout, handshakeTimeout time.Duration, tlsConf *tls.Config, userAgent string) (*websocket.Conn, *url.URL, error) {
	u, err := wsURL(rawURL, path)
	if err != nil {
		return nil, nil, err
	}
	d := &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		NetDialContext:   (&net.Dialer{Timeout: dialTimeout}).DialContext,
		HandshakeTimeout: handshakeTimeout,
		TLSClientConfig:  tlsConf,
		ReadBufferSize:   32 << 10,
		WriteBufferSize:  32 << 10,
	}
	hdr := http.Header{"User-Agent": {userAgent}}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout+handshakeTimeout)
	ws, resp, err := d.DialContext(dctx, u.String(), hdr)
	cancel()
	if err != nil {
		if resp != nil {
			return nil, nil, fmt.Errorf("connect %s: %s", u.Redacted(), resp.Status)
		}
		return nil, nil, fmt.Errorf("connect %s: %w", u.Redacted(), err)
	}
	return ws, u, nil
}

// connectOnce dials, authenticates and serves streams until the link ends.
// welcomed reports that shellgate accepted the agent on this attempt.
func (a *Agent) connectOnce(ctx context.Context) (welcomed bool, err error) {
	ws, u, err := dialLink(ctx, a.cfg.URL, Path, a.cfg.DialTimeout, a.cfg.HandshakeTimeout, a.cfg.TLSConfig, "shellgate-agent/1")
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseNormal, "agent stopping"), time.Now().Add(time.Second))
		ws.Close()
	})
	defer stop()
	defer ws.Close()

	welcome, err := a.hello(ws, u.Host)
	if err != nil {
		return false, err
	}
	a.cfg.Logger.Info("agent connected", "url", a.cfg.URL, "server", welcome.Server)

	hb := time.Duration(welcome.HeartbeatMS) * time.Millisecond
	if hb <= 0 {
		hb = DefaultHeartbeat
	}
	ws.SetReadLimit(maxMuxFrame)
	// Heartbeat: shellgate pings; each ping extends the read deadline, so a
	// link silent for three intervals is given up and redialed.
	ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
	ws.SetPingHandler(func(data string) error {
		ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(hb))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	conn := newWSConn(ws, missedHeartbeats*hb)
	sess, err := yamux.Server(conn, muxConfig(hb))
	if err != nil {
		return true, err
	}
	defer sess.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			// Tell why: a close frame from shellgate is in the read error.
			var ce *websocket.CloseError
			if ctx.Err() == nil {
				if _, _, rerr := ws.NextReader(); errors.As(rerr, &ce) {
					err = ce
				}
			}
			sess.Close()
			return true, closeReason(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveStream(ctx, s)
		}()
	}
}

// closeReason turns CloseUnauthorized and CloseRevoked into ErrStopped.
func closeReason(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case CloseUnauthorized:
			return fmt.Errorf("%w: not authorized (token used, expired or unknown, or this agent is not enrolled)", ErrStopped)
		case CloseRevoked:
			return fmt.Errorf("%w: credential revoked (a new token was generated): %s", ErrStopped, ce.Text)
		case CloseTunnelClosed:
			return fmt.Errorf("%w: the tunnel was closed", ErrStopped)
		case CloseTunnelExpired:
			return fmt.Errorf("%w: the tunnel expired", ErrStopped)
		}
		return fmt.Errorf("link closed: %d %s", ce.Code, ce.Text)
	}
	return err
}

// hello answers the challenge and waits for the welcome.
func (a *Agent) hello(ws *websocket.Conn, host string) (*Welcome, error) {
	a.mu.Lock()
	token := a.token
	a.mu.Unlock()
	w, err := clientHello(ws, host, a.cfg.Key, token, a.cfg.HandshakeTimeout)
	if err != nil {
		return nil, err
	}
	if w.Enrolled {
		a.mu.Lock()
		a.token = "" // spent: never sent again
		a.mu.Unlock()
		a.cfg.Logger.Info("agent enrolled", "server", w.Server)
		if a.cfg.OnEnrolled != nil {
			if err := a.cfg.OnEnrolled(); err != nil {
				return nil, fmt.Errorf("record enrollment: %w", err)
			}
		}
	}
	return w, nil
}

// clientHello is the client's half of the handshake: read the challenge, sign
// it (with the token when enrolling), read the welcome.
func clientHello(ws *websocket.Conn, host string, key ed25519.PrivateKey, token string, timeout time.Duration) (*Welcome, error) {
	deadline := time.Now().Add(timeout)
	ws.SetReadDeadline(deadline)
	ws.SetWriteDeadline(deadline)
	ws.SetReadLimit(maxHandshakeFrame)
	typ, data, err := ws.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("read challenge: %w", closeReason(err))
	}
	var ch Challenge
	if typ != websocket.TextMessage || decodeStrict(data, &ch) != nil || ch.Type != MsgChallenge || ch.Version != ProtocolVersion {
		return nil, errors.New("bad challenge from shellgate")
	}
	nonce, err := base64.StdEncoding.DecodeString(ch.Nonce)
	if err != nil || len(nonce) < 16 {
		return nil, errors.New("bad challenge nonce")
	}
	msg, err := signHello(key, nonce, host, token)
	if err != nil {
		return nil, err
	}
	if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return nil, err
	}
	typ, data, err = ws.ReadMessage()
	if err != nil {
		return nil, closeReason(err)
	}
	var w Welcome
	if typ != websocket.TextMessage || decodeStrict(data, &w) != nil || w.Type != MsgWelcome {
		return nil, errors.New("bad welcome from shellgate")
	}
	ws.SetReadDeadline(time.Time{})
	ws.SetWriteDeadline(time.Time{})
	return &w, nil
}

// serveStream reads the open request, checks the destination against the
// allow list, dials it and splices bytes both ways until both sides end.
func (a *Agent) serveStream(ctx context.Context, s *yamux.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(a.cfg.HandshakeTimeout))
	var req OpenRequest
	if err := readFrame(s, &req); err != nil {
		a.cfg.Logger.Warn("bad stream open request", "err", err)
		return
	}
	addr, err := normalizeAddr(req.Addr)
	if err != nil || !a.allow[addr] {
		a.cfg.Logger.Warn("refused stream: destination not allowed", "addr", req.Addr)
		writeFrame(s, OpenReply{Error: "destination " + req.Addr + " is not in the agent's allow list"})
		return
	}
	dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	c, err := a.cfg.Dial(dctx, addr)
	cancel()
	if err != nil {
		a.cfg.Logger.Warn("stream destination unreachable", "addr", addr, "err", err)
		writeFrame(s, OpenReply{Error: "agent could not reach " + addr})
		return
	}
	defer c.Close()
	if err := writeFrame(s, OpenReply{OK: true}); err != nil {
		return
	}
	s.SetDeadline(time.Time{})
	splice(c, s)
}

// closeWriter is a connection that can half-close (TCP, yamux streams).
type closeWriter interface{ CloseWrite() error }

// splice copies both ways; each direction's end is passed on as a half close
// so the protocol above (SSH) ends cleanly, and it returns when both ended.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(a, b)
		halfClose(a)
	}()
	io.Copy(b, a)
	halfClose(b)
	wg.Wait()
}

func halfClose(c net.Conn) {
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
		return
	}
	if s, ok := c.(*yamux.Stream); ok {
		s.Close() // yamux's Close is a half close: it sends FIN and keeps reading
		return
	}
	c.Close()
}
