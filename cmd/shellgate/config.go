package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// config is everything shellgate reads from flags and SHELLGATE_* variables. A flag
// wins over its variable.
type config struct {
	Listen         string
	DataDir        string
	DatabaseURL    string
	PublicURL      *url.URL
	TLSCert        string
	TLSKey         string
	TrustedProxies []*net.IPNet
	AdminPassword  string // only for the first start; never stored as given
	LogFormat      string
	// Demo runs an in-process SSH server on loopback and a stack "demo" pointing at it.
	Demo bool
	// MaxTerminalsPerUser caps live terminal sessions per user (detached ones count).
	MaxTerminalsPerUser int
	// RecordingRetention is how long terminal recordings are kept.
	RecordingRetention time.Duration
	// RecordingsDir holds the recordings; several replicas share one (a shared volume).
	RecordingsDir string
	// SessionIdleTimeout ends a dashboard sign-in left without requests this long.
	SessionIdleTimeout time.Duration
	// AllowAnyHost lets shellgate listen beyond loopback without a public URL, which
	// turns off the Host and Origin checks that a public URL anchors.
	AllowAnyHost bool
	// DrainTimeout is how long a graceful shutdown lets transfers finish.
	DrainTimeout time.Duration
	// StallTimeout ends a transfer that stops moving for this long.
	StallTimeout time.Duration
	// DatabaseMaxConns caps the database pool; 0 is the engine's default.
	DatabaseMaxConns int
	// MaxConnections caps open HTTP connections (terminal sockets included).
	MaxConnections int
	// MaxTerminals caps live terminal sessions in the process, all users.
	MaxTerminals int
	// Metrics: a separate listener (with pprof if asked), and/or a token file that
	// opens /metrics on the main port (see ops.go).
	MetricsListen    string
	MetricsTokenFile string
	Pprof            bool
	// AgentHeartbeat is how often agents are pinged; three misses end a link.
	AgentHeartbeat time.Duration
	// TunnelMaxLifetime is the longest lifetime a member may give a tunnel.
	TunnelMaxLifetime time.Duration
}

func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(key, def string) string {
		if v := getenv("SHELLGATE_" + key); v != "" {
			return v
		}
		return def
	}
	listen := fs.String("listen", env("LISTEN", "127.0.0.1:8080"), "address to listen on (SHELLGATE_LISTEN)")
	dataDir := fs.String("data-dir", env("DATA_DIR", "shellgate-data"), "directory for the database, master key and recordings (SHELLGATE_DATA_DIR)")
	dbURL := fs.String("database-url", env("DATABASE_URL", ""), "database: empty for SQLite in the data dir, sqlite:PATH, or postgres://user@host/db for several replicas; password and TLS from the URL or PG* variables (SHELLGATE_DATABASE_URL)")
	publicURL := fs.String("public-url", env("PUBLIC_URL", ""), "URL people use to reach shellgate, e.g. https://shell.example.com; sets the accepted Host and Origin (SHELLGATE_PUBLIC_URL)")
	tlsCert := fs.String("tls-cert", env("TLS_CERT", ""), "TLS certificate file (SHELLGATE_TLS_CERT)")
	tlsKey := fs.String("tls-key", env("TLS_KEY", ""), "TLS private key file (SHELLGATE_TLS_KEY)")
	proxies := fs.String("trusted-proxies", env("TRUSTED_PROXIES", ""), "comma-separated CIDRs whose X-Forwarded-For is believed (SHELLGATE_TRUSTED_PROXIES)")
	logFormat := fs.String("log-format", env("LOG_FORMAT", "text"), "log format: text or json (SHELLGATE_LOG_FORMAT)")
	demoMode := fs.Bool("demo", env("DEMO", "") == "true", "also run an in-process SSH server on loopback with a stack \"demo\": a shell as the current OS user for anyone who can open it (SHELLGATE_DEMO=true)")
	maxTerms := fs.String("max-terminals-per-user", env("MAX_TERMINALS_PER_USER", "10"), "live terminal sessions per user, detached ones included (SHELLGATE_MAX_TERMINALS_PER_USER)")
	retention := fs.String("recording-retention", env("RECORDING_RETENTION", "90d"), "how long terminal recordings are kept: days (90d) or a Go duration (SHELLGATE_RECORDING_RETENTION)")
	recDir := fs.String("recordings-dir", env("RECORDINGS_DIR", ""), "directory for terminal recordings; default DATA_DIR/recordings; replicas share one volume (SHELLGATE_RECORDINGS_DIR)")
	idle := fs.String("session-idle-timeout", env("SESSION_IDLE_TIMEOUT", "2h"), "end a dashboard sign-in after this long without a request; an open terminal counts as activity (SHELLGATE_SESSION_IDLE_TIMEOUT)")
	anyHost := fs.Bool("allow-any-host", env("ALLOW_ANY_HOST", "") == "true", "listen beyond loopback without --public-url, accepting any Host and Origin; unsafe, for people who know why (SHELLGATE_ALLOW_ANY_HOST=true)")
	drain := fs.String("drain-timeout", env("DRAIN_TIMEOUT", "30s"), "on SIGTERM/SIGINT, how long transfers in flight may finish before they are cut; a second signal cuts at once (SHELLGATE_DRAIN_TIMEOUT)")
	stall := fs.String("transfer-stall-timeout", env("TRANSFER_STALL_TIMEOUT", "60s"), "end an upload or download that moves less than 1 KiB for this long (SHELLGATE_TRANSFER_STALL_TIMEOUT)")
	dbConns := fs.String("database-max-connections", env("DATABASE_MAX_CONNECTIONS", "0"), "database connection pool size; 0 for the engine's default (SQLite 4, PostgreSQL 16) (SHELLGATE_DATABASE_MAX_CONNECTIONS)")
	maxConns := fs.String("max-connections", env("MAX_CONNECTIONS", "4096"), "open HTTP connections at most, terminal sockets included; more wait to be accepted (SHELLGATE_MAX_CONNECTIONS)")
	maxTerminals := fs.String("max-terminals", env("MAX_TERMINALS", "1000"), "live terminal sessions in the process, all users (SHELLGATE_MAX_TERMINALS)")
	metricsListen := fs.String("metrics-listen", env("METRICS_LISTEN", ""), "serve Prometheus metrics at /metrics on this separate address, e.g. 127.0.0.1:9090; no authentication, keep it private (SHELLGATE_METRICS_LISTEN)")
	metricsToken := fs.String("metrics-token-file", env("METRICS_TOKEN_FILE", ""), "serve /metrics on the main port too, to requests with Authorization: Bearer <the file's content> (SHELLGATE_METRICS_TOKEN_FILE)")
	pprofOn := fs.Bool("pprof", env("PPROF", "") == "true", "also serve net/http/pprof under /debug/pprof/ on the metrics listener (SHELLGATE_PPROF=true)")
	heartbeat := fs.Duration("agent-heartbeat", envDuration(getenv, "AGENT_HEARTBEAT", 20*time.Second), "how often agents are pinged; a link silent for three intervals is closed (SHELLGATE_AGENT_HEARTBEAT)")
	tunnelMax := fs.Duration("tunnel-max-lifetime", envDuration(getenv, "TUNNEL_MAX_LIFETIME", 12*time.Hour), "the longest lifetime of a tunnel for native clients (SHELLGATE_TUNNEL_MAX_LIFETIME)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *tunnelMax < time.Minute || *tunnelMax > 30*24*time.Hour {
		return nil, fmt.Errorf("tunnel max lifetime %v: want 1m to 720h", *tunnelMax)
	}
	if *heartbeat < 100*time.Millisecond || *heartbeat > 10*time.Minute {
		return nil, fmt.Errorf("agent heartbeat %v: want 100ms to 10m", *heartbeat)
	}
	cfg := &config{AgentHeartbeat: *heartbeat, TunnelMaxLifetime: *tunnelMax,
		Listen: *listen, DataDir: *dataDir, DatabaseURL: *dbURL, TLSCert: *tlsCert, TLSKey: *tlsKey,
		AdminPassword: getenv("SHELLGATE_ADMIN_PASSWORD"), LogFormat: *logFormat, Demo: *demoMode,
		MetricsListen: *metricsListen, MetricsTokenFile: *metricsToken, Pprof: *pprofOn,
	}
	if cfg.Pprof && cfg.MetricsListen == "" {
		return nil, errors.New("--pprof needs --metrics-listen: profiles are served only on the metrics listener")
	}
	n, err := strconv.Atoi(*maxTerms)
	if err != nil || n < 1 || n > 10000 {
		return nil, fmt.Errorf("max terminals per user %q: want a number from 1 to 10000", *maxTerms)
	}
	cfg.MaxTerminalsPerUser = n
	r, err := parseRetention(*retention)
	if err != nil {
		return nil, err
	}
	cfg.RecordingRetention = r
	cfg.RecordingsDir = *recDir
	if cfg.RecordingsDir == "" {
		cfg.RecordingsDir = filepath.Join(cfg.DataDir, "recordings")
	}
	d, err := time.ParseDuration(*idle)
	if err != nil || d < time.Minute {
		return nil, fmt.Errorf("session idle timeout %q: want a duration of at least 1m, like 2h or 30m", *idle)
	}
	cfg.SessionIdleTimeout = d
	cfg.AllowAnyHost = *anyHost
	if cfg.DrainTimeout, err = time.ParseDuration(*drain); err != nil || cfg.DrainTimeout < 0 {
		return nil, fmt.Errorf("drain timeout %q: want a duration like 30s", *drain)
	}
	if cfg.StallTimeout, err = time.ParseDuration(*stall); err != nil || cfg.StallTimeout < time.Second {
		return nil, fmt.Errorf("transfer stall timeout %q: want a duration of at least 1s, like 60s", *stall)
	}
	if cfg.MaxConnections, err = strconv.Atoi(*maxConns); err != nil || cfg.MaxConnections < 16 || cfg.MaxConnections > 1_000_000 {
		return nil, fmt.Errorf("max connections %q: want a number from 16 to 1000000", *maxConns)
	}
	if cfg.MaxTerminals, err = strconv.Atoi(*maxTerminals); err != nil || cfg.MaxTerminals < 1 || cfg.MaxTerminals > 1_000_000 {
		return nil, fmt.Errorf("max terminals %q: want a number from 1 to 1000000", *maxTerminals)
	}
	if cfg.DatabaseMaxConns, err = strconv.Atoi(*dbConns); err != nil || cfg.DatabaseMaxConns < 0 || cfg.DatabaseMaxConns > 1000 {
		return nil, fmt.Errorf("database max connections %q: want a number from 0 to 1000", *dbConns)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if *publicURL != "" {
		u, err := url.Parse(*publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("public URL %q: want http(s)://host[:port]", *publicURL)
		}
		cfg.PublicURL = &url.URL{Scheme: u.Scheme, Host: u.Host}
	}
	for _, p := range strings.Split(*proxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, n)
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return nil, fmt.Errorf("log format %q: want text or json", cfg.LogFormat)
	}
	if cfg.PublicURL == nil && !cfg.AllowAnyHost && !loopbackListen(cfg.Listen) {
		return nil, fmt.Errorf("--listen %s reaches beyond this machine but --public-url is not set: without it shellgate "+
			"cannot tell its own Host and Origin from an attacker's (DNS rebinding, cross-site WebSockets). "+
			"Set --public-url to the address people use (e.g. https://shell.example.com), or pass --allow-any-host "+
			"if you know why you need neither", cfg.Listen)
	}
	return cfg, nil
}

// loopbackListen reports whether a listen address is reachable from this machine
// only: a loopback IP or localhost, with a port.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// databasePath is the SQLite file, for the commands that work on the file itself
// (backup, restore) and the start-up check of its master key. PostgreSQL has its own
// tools for that.
func (c *config) databasePath() (string, error) {
	url, err := c.databaseURL()
	if err != nil {
		return "", err
	}
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		return strings.TrimPrefix(path, "//"), nil
	}
	return "", errors.New("the database is PostgreSQL: back it up and restore it with pg_dump and pg_restore " +
		"(and keep master.key with the backups: without it the sealed keys cannot be opened)")
}

// databaseURL resolves which database to open: SQLite in the data dir by default,
// sqlite:PATH, or postgres://… for several replicas sharing one database.
func (c *config) databaseURL() (string, error) {
	switch {
	case c.DatabaseURL == "":
		return "sqlite:" + filepath.Join(c.DataDir, "shellgate.db"), nil
	case strings.HasPrefix(c.DatabaseURL, "sqlite:"),
		strings.HasPrefix(c.DatabaseURL, "postgres://"), strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		return c.DatabaseURL, nil
	default:
		return "", errors.New("database URL: want sqlite:PATH or postgres://user@host/db (the value is not repeated here: it may hold a password)")
	}
}

// allowedHosts lists the Host values to accept when no public URL is configured: the
// listen address and its loopback aliases. Listening on every interface without a
// public URL accepts any host (and the server says so in its log).
func allowedHosts(listen string) []string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if host == "" || (ip != nil && ip.IsUnspecified()) {
		return nil
	}
	hosts := []string{net.JoinHostPort(host, port)}
	if host == "localhost" || (ip != nil && ip.IsLoopback()) {
		hosts = append(hosts, "localhost:"+port, "127.0.0.1:"+port, "[::1]:"+port)
	}
	return hosts
}

// parseRetention reads "90d" (days) or a Go duration ("720h").
func parseRetention(v string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if dur, err := time.ParseDuration(v); err == nil && dur > 0 {
		return dur, nil
	}
	return 0, fmt.Errorf("recording retention %q: want days like 90d or a duration like 720h", v)
}

// envDuration reads SHELLGATE_key as a Go duration, def when unset or malformed
// (the flag's own parsing then reports nothing: a malformed variable is ignored
// with the default, like the flag package would refuse it loudly only as a flag).
func envDuration(getenv func(string) string, key string, def time.Duration) time.Duration {
	if v := getenv("SHELLGATE_" + key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}
