package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// ProxyConfig configures a local proxy (shellgate proxy, source mode).
type ProxyConfig struct {
	URL   string // shellgate's public URL
	Token string // the tunnel's source token, spent on the first connection
	// Listener accepts the native clients' connections (e.g. 127.0.0.1:5555).
	Listener net.Listener
	// Service is what each connection reaches (default "ssh").
	Service string
	// Out receives the lines meant for the person: time left, closing reason.
	Out    io.Writer
	Logger *slog.Logger
	// Timeouts and backoff as for the agent.
	DialTimeout, HandshakeTimeout time.Duration
	MinBackoff, MaxBackoff        time.Duration
	TLSConfig                     *tls.Config
	// Now is the clock for "time left"; default time.Now.
	Now func() time.Time
}

// Proxy carries every TCP connection made to its listener through shellgate to
// the tunnel's server, over one WebSocket with multiplexed streams.
type Proxy struct {
	cfg ProxyConfig
	key ed25519.PrivateKey

	mu      sync.Mutex
	sess    *yamux.Session
	ready   chan struct{} // closed and replaced as links come and go
	token   string
	expires time.Time
}

// NewProxy checks cfg; the proxy's key is made fresh for this process: a
// restarted proxy needs a new (rotated) source token.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Listener == nil || cfg.URL == "" || cfg.Token == "" {
		return nil, errors.New("proxy: URL, token and listener are required")
	}
	if cfg.Service == "" {
		cfg.Service = ServiceSSH
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Proxy{cfg: cfg, key: key, token: cfg.Token, ready: make(chan struct{})}, nil
}

// Run keeps the link up and serves the listener until ctx ends (nil) or the
// tunnel is closed, expired, rotated or refused (an ErrStopped error saying
// which). The listener is closed when Run returns.
func (p *Proxy) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.accept(ctx)
	}()
	defer p.cfg.Listener.Close()

	retry := 0
	for {
		welcomed, err := p.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrStopped) {
			fmt.Fprintf(p.cfg.Out, "shellgate proxy: %v\n", errors.Unwrap(err))
			return err
		}
		if welcomed {
			retry = 0
		}
		wait := Backoff(retry, p.cfg.MinBackoff, p.cfg.MaxBackoff)
		retry++
		fmt.Fprintf(p.cfg.Out, "Link to shellgate lost (%v); reconnecting in %v.\n", err, wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (p *Proxy) connectOnce(ctx context.Context) (bool, error) {
	ws, u, err := dialLink(ctx, p.cfg.URL, SourcePath, p.cfg.DialTimeout, p.cfg.HandshakeTimeout, p.cfg.TLSConfig, "shellgate-proxy/1")
	if err != nil {
		return false, err
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseNormal, "proxy stopping"), time.Now().Add(time.Second))
		ws.Close()
	})
	defer stop()
	p.mu.Lock()
	token := p.token
	p.mu.Unlock()
	w, err := clientHello(ws, u.Host, p.key, token, p.cfg.HandshakeTimeout)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	p.token = "" // spent (or never needed again): reconnects use the key
	p.expires = time.UnixMilli(w.ExpiresAtMS)
	p.mu.Unlock()
	hb := time.Duration(w.HeartbeatMS) * time.Millisecond
	if hb <= 0 {
		hb = DefaultHeartbeat
	}
	ws.SetReadLimit(maxMuxFrame)
	ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
	ws.SetPingHandler(func(data string) error {
		ws.SetReadDeadline(time.Now().Add(missedHeartbeats * hb))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(hb))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	sess, err := yamux.Client(newWSConn(ws, missedHeartbeats*hb), muxConfig(hb))
	if err != nil {
		return true, err
	}
	defer sess.Close()
	fmt.Fprintf(p.cfg.Out, "Tunnel to %s open: %s left. Listening on %s; e.g. ssh -p %s USER@localhost\n",
		w.Server, p.left(), p.cfg.Listener.Addr(), portOf(p.cfg.Listener.Addr()))
	p.setSession(sess)
	defer p.setSession(nil)

	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-sess.CloseChan():
			var ce *websocket.CloseError
			if _, _, rerr := ws.NextReader(); errors.As(rerr, &ce) {
				return true, closeReason(ce)
			}
			return true, errors.New("link closed")
		case <-tick.C:
			fmt.Fprintf(p.cfg.Out, "Tunnel: %s left.\n", p.left())
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// left is the tunnel's remaining lifetime, rounded for people.
func (p *Proxy) left() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(0, p.expires.Sub(p.cfg.Now())).Round(time.Second)
}

func (p *Proxy) setSession(s *yamux.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sess = s
	if s != nil {
		close(p.ready)
	} else {
		p.ready = make(chan struct{})
	}
}

// session waits (bounded) for a live link.
func (p *Proxy) session(ctx context.Context) (*yamux.Session, error) {
	for {
		p.mu.Lock()
		s, ready := p.sess, p.ready
		p.mu.Unlock()
		if s != nil && !s.IsClosed() {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, errors.New("no link to shellgate")
		}
	}
}

func (p *Proxy) accept(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := p.cfg.Listener.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serveConn(ctx, c)
		}()
	}
}

// serveConn carries one client connection through a new stream. A link that
// ends (tunnel closed, expired, rotated) ends the stream and so the connection.
func (p *Proxy) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout+p.cfg.HandshakeTimeout)
	sess, err := p.session(wctx)
	cancel()
	if err != nil {
		p.cfg.Logger.Warn("connection refused: no link to shellgate", "client", c.RemoteAddr())
		return
	}
	s, err := sess.OpenStream()
	if err != nil {
		return
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close(); c.Close() })
	defer stop()
	s.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	if writeFrame(s, OpenRequest{Addr: p.cfg.Service}) != nil {
		return
	}
	var rep OpenReply
	if err := readFrame(s, &rep); err != nil {
		return
	}
	if !rep.OK {
		fmt.Fprintf(p.cfg.Out, "Connection from %s refused: %s\n", c.RemoteAddr(), rep.Error)
		return
	}
	s.SetDeadline(time.Time{})
	// When the link dies, the stream's reads end; close the client at once
	// so a native ssh notices now, not after its own timeouts.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sess.CloseChan():
			c.Close()
		case <-done:
		}
	}()
	splice(c, s)
}
