// Package handlers is shellgate's HTTP edge: echo routes and middleware for sign-in,
// accounts, keys, stacks, the terminal WebSocket upgrade, the file API and the audit log.
// Handlers are thin: parse, authorize, call, render. Every route is registered in
// routes.go.
package handlers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/internal/revoke"
	"github.com/shellgate/shellgate/static"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/views"
)

// Config is what the handlers need from the outside world. Keys are derived from the
// master secret by the caller; nothing here has a default secret.
type Config struct {
	// PublicURL is where people reach shellgate (scheme and host). When set, requests
	// for any other Host are refused and it defines the only accepted Origin.
	PublicURL *url.URL
	// AllowedHosts, when PublicURL is nil, lists the Host values accepted (the listen
	// address and its loopback aliases). Empty means any host.
	AllowedHosts []string
	// TrustedProxies are the networks whose X-Forwarded-For is believed.
	TrustedProxies []*net.IPNet
	// SessionHashKey (64 bytes) and SessionBlockKey (32 bytes) sign and encrypt the
	// session cookie; CSRFKey (32 bytes) signs CSRF tokens.
	SessionHashKey, SessionBlockKey, CSRFKey []byte
	// SessionTTL is how long a sign-in lasts (default 12 h).
	SessionTTL time.Duration
	// SessionIdleTimeout ends a sign-in that made no request for this long (default
	// 2 h); an open terminal page keeps its session alive.
	SessionIdleTimeout time.Duration
	// DeviceKey (32 bytes) signs the cookies that mark browsers which signed in
	// before. Nil: derived from CSRFKey.
	DeviceKey []byte
	// Passwords bounds the memory of password hashing. Nil: sized from the machine.
	Passwords *password.Limiter
	Logger    *slog.Logger
	// Secrets seals private SSH keys at rest (the master key ring). Required: there
	// is no plaintext fallback.
	Secrets Sealer
	// Now is the clock, replaceable in tests.
	Now func() time.Time
	// Stacks configures the stack pages: gateway key, SSH dialer, deploy worker.
	Stacks StacksConfig
	// Terminals runs the browser terminals. Nil: a manager with default settings,
	// dialing directly.
	Terminals *terminal.Manager
	// DemoAuth, set only in --demo mode, returns extra keys to offer to one server
	// (the in-process demo server) for every user who may open it; nil elsewhere.
	DemoAuth func(serverID int64) []ssh.Signer
	// Revoke ends live terminals and transfers when access ends. Nil: one on an
	// in-process bus over the store (enough for one process; the caller runs its
	// Watch to notice changes made by other processes).
	Revoke *revoke.Service
	// RecordingsDir holds terminal recordings (asciicast files); empty records nothing.
	RecordingsDir string
	// RecordingRetention is how long recordings are kept (default 90 days).
	RecordingRetention time.Duration
	// Cluster, set when replicas share the database, shows and ends live sessions
	// held by other replicas; nil: this process only.
	Cluster *ClusterConfig
	// Transfers sets the progress deadline of uploads and downloads.
	Transfers TransferConfig
	// Files tunes the file panel's connection pool (idle time, orphan sweep).
	Files terminal.PoolConfig
	// Ops feeds the system page and the metrics endpoint (see system.go).
	Ops OpsConfig
	// AgentEndpoint serves agents' WebSocket upgrades at AgentPath; nil: none.
	AgentEndpoint http.Handler
	// TunnelEndpoint serves local proxies' upgrades at TunnelPath; nil: none.
	TunnelEndpoint http.Handler
}

// Server holds the dependencies of every handler.
type Server struct {
	cfg       Config
	store     store.Store
	cookies   *sessions.CookieStore
	log       *slog.Logger
	assets    views.Assets
	secure    bool // cookies carry Secure: the public URL is https
	hashes    *password.Limiter
	deviceKey []byte
	stacks    StacksConfig
	terms     *terminal.Manager
	files     *terminal.Pool // SSH connections of the file panel, one per user × server
	revoke    *revoke.Service
	live      liveSessions
	xfers     *transferSet // uploads and downloads in flight (progress deadline, drain)
}

// New builds the echo application with every route and middleware.
func New(cfg Config, st store.Store) (*echo.Echo, *Server, error) {
	if len(cfg.SessionHashKey) < 32 || len(cfg.SessionBlockKey) != 32 || len(cfg.CSRFKey) < 32 {
		return nil, nil, fmt.Errorf("handlers: session and CSRF keys must come from the master secret")
	}
	if cfg.Secrets == nil {
		return nil, nil, fmt.Errorf("handlers: a Sealer for secrets at rest is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SessionIdleTimeout <= 0 {
		cfg.SessionIdleTimeout = 2 * time.Hour
	}
	if cfg.Passwords == nil {
		cfg.Passwords = password.DefaultLimiter()
	}
	if len(cfg.DeviceKey) < 32 {
		m := hmac.New(sha256.New, cfg.CSRFKey)
		m.Write([]byte("shellgate/device-cookie"))
		cfg.DeviceKey = m.Sum(nil)
	}
	if cfg.Stacks.Dialer == nil {
		cfg.Stacks.Dialer = &net.Dialer{}
	}
	if cfg.Stacks.ScanTimeout <= 0 {
		cfg.Stacks.ScanTimeout = 10 * time.Second
	}
	if cfg.Stacks.Scan == nil {
		// Without a deployer's scan (which authenticates to jump hosts with the
		// gateway key), only servers without a jump host can be scanned.
		d := cfg.Stacks.Dialer
		cfg.Stacks.Scan = func(ctx context.Context, t *terminal.Target) (ssh.PublicKey, error) {
			return terminal.ScanHostKey(ctx, d, t, terminal.DialOptions{})
		}
	}
	s := &Server{
		stacks:    cfg.Stacks,
		cfg:       cfg,
		store:     st,
		log:       cfg.Logger,
		secure:    cfg.PublicURL != nil && cfg.PublicURL.Scheme == "https",
		hashes:    cfg.Passwords,
		deviceKey: cfg.DeviceKey,
		terms:     cfg.Terminals,
		revoke:    cfg.Revoke,
	}
	if s.revoke == nil {
		s.revoke = revoke.New(st, revoke.NewLocalBus(), cfg.Logger)
	}
	if s.terms == nil {
		s.terms = terminal.NewManager(terminal.Config{Dialer: cfg.Stacks.Dialer, Logger: cfg.Logger})
	}
	s.startCluster()
	s.xfers = newTransferSet(cfg.Transfers)
	pcfg := cfg.Files
	if pcfg.Dialer == nil {
		pcfg.Dialer = cfg.Stacks.Dialer
	}
	if pcfg.Logger == nil {
		pcfg.Logger = cfg.Logger
	}
	s.files = terminal.NewPool(s.terms, pcfg)
	s.cookies = sessions.NewCookieStore(cfg.SessionHashKey, cfg.SessionBlockKey)
	s.cookies.MaxAge(int(cfg.SessionTTL.Seconds()))
	s.cookies.Options.HttpOnly = true
	s.cookies.Options.Secure = s.secure
	// Lax: a link to shellgate pasted in chat opens signed in; state changes still need CSRF.
	s.cookies.Options.SameSite = http.SameSiteLaxMode
	s.cookies.Options.Path = "/"

	v := static.Versions()
	s.assets = views.Assets{
		CSS:       "/static/app.css?v=" + v["app.css"],
		JS:        "/static/app.js?v=" + v["app.js"],
		Theme:     "/static/theme.js?v=" + v["theme.js"],
		TermJS:    "/static/terminal.js?v=" + v["terminal.js"],
		TermCSS:   "/static/terminal.css?v=" + v["terminal.css"],
		PlayerJS:  "/static/player.js?v=" + v["player.js"],
		PlayerCSS: "/static/player.css?v=" + v["player.css"],
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.HTTPErrorHandler = s.handleError
	s.routes(e)
	return e, s, nil
}

// ipExtractor believes X-Forwarded-For only from configured proxies. echo's own
// defaults trust loopback and private networks; here nothing is trusted unless named,
// so a client cannot spoof its address to dodge sign-in throttling.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// expectedOrigin is the Origin a same-site browser request carries.
func (s *Server) expectedOrigin(c echo.Context) string {
	if s.cfg.PublicURL != nil {
		return s.cfg.PublicURL.Scheme + "://" + s.cfg.PublicURL.Host
	}
	scheme := "http"
	if c.Request().TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request().Host
}

// hostAllowed reports whether the request's Host is one shellgate answers to.
func (s *Server) hostAllowed(host string) bool {
	if s.cfg.PublicURL != nil {
		return strings.EqualFold(host, s.cfg.PublicURL.Host)
	}
	if len(s.cfg.AllowedHosts) == 0 {
		return true
	}
	for _, h := range s.cfg.AllowedHosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}
