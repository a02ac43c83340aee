package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/cluster"
	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/hints"
	"github.com/shellgate/shellgate/internal/logring"
	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/internal/revoke"
	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/tunnel"
)

// openState opens the data dir, the master key and the store: what both the server and
// the user sub-commands need.
func openState(ctx context.Context, cfg *config) (*secrets.Keyring, *store.SQLite, error) {
	url, err := cfg.databaseURL()
	if err != nil {
		return nil, nil, err
	}
	// A database without its master key is a restore gone half-way, or a new replica
	// not given the others' key: every sealed secret in it needs that key. Creating a
	// new one would leave two keys and secrets nobody can open, so nothing is written
	// until the key is back.
	keyPath := filepath.Join(cfg.DataDir, secrets.FileName)
	_, kerr := os.Stat(keyPath)
	keyMissing := errors.Is(kerr, fs.ErrNotExist)
	if path, err := cfg.databasePath(); err == nil && keyMissing {
		if _, err := os.Stat(path); err == nil {
			return nil, nil, fmt.Errorf("the database %s exists but its master key %s is missing: restore master.key "+
				"from the same backup as the database (it seals the private keys and signs sessions) and start again; "+
				"shellgate did not create a new key and changed nothing", path, keyPath)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := store.Open(ctx, url, store.Pool{MaxOpen: cfg.DatabaseMaxConns})
	if err != nil {
		return nil, nil, err
	}
	if keyMissing && st.Engine() == store.EnginePostgres {
		// The shared database already holds secrets sealed by the other replicas.
		if _, err := st.GatewayIdentity(ctx); err == nil {
			st.Close()
			return nil, nil, fmt.Errorf("the PostgreSQL database is in use by shellgate, but this data dir has no master key (%s): "+
				"copy master.key from another replica (every replica needs the same one) and start again; "+
				"shellgate did not create a new key", keyPath)
		}
	}
	keys, err := secrets.LoadOrCreateMaster(cfg.DataDir)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return keys, st, nil
}

// newHintBus returns the bus control hints travel on: LISTEN/NOTIFY when replicas share
// a PostgreSQL database, in process on SQLite.
func newHintBus(st *store.DB, logger *slog.Logger) hints.Bus {
	if st.Engine() == store.EnginePostgres {
		return hints.NewPostgres(st.PostgresConfig(), st.Notify, logger)
	}
	return hints.NewLocal()
}

// buildVersion is the module version the binary was built from, for the replica
// registry ("(devel)" from a work tree).
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}

func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	started := time.Now()
	var logh slog.Handler
	if cfg.LogFormat == "json" {
		logh = slog.NewJSONHandler(stderr, nil)
	} else {
		logh = slog.NewTextHandler(stderr, nil)
	}
	// The last warnings and errors are kept for the system page.
	recent := logring.New(100)
	logger := slog.New(recent.Handler(logh, slog.LevelWarn))

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// The shared lock tells `shellgate restore` that a server uses the data dir.
	switch unlock, err := lockDataDir(cfg.DataDir, false); {
	case errors.Is(err, errDataDirInUse):
		return fmt.Errorf("a restore is running on %s: start shellgate again when it has finished", cfg.DataDir)
	case err != nil: // e.g. a file system without locks: serve, but say what is lost
		logger.Warn("cannot lock the data dir: shellgate restore will not see that shellgate runs", "err", err)
	default:
		defer unlock()
	}
	keys, st, err := openState(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	logger.Info("database", "engine", st.Engine())

	// Control hints between replicas (revocations, terminations, settings changed).
	bus := newHintBus(st, logger)
	defer bus.Close()
	// This replica's row in the registry the replicas share.
	member := cluster.New(st, "", buildVersion(), logger)
	if err := member.Register(ctx); err != nil {
		return fmt.Errorf("register replica: %w", err)
	}
	met := newMetrics()
	var metricsToken string
	if cfg.MetricsTokenFile != "" {
		if metricsToken, err = readMetricsToken(cfg.MetricsTokenFile); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	ln = newLimitListener(ln, cfg.MaxConnections)
	addr := ln.Addr().String()
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	baseURL := scheme + "://" + addr
	if cfg.PublicURL != nil {
		baseURL = cfg.PublicURL.String()
	}
	hosts := allowedHosts(addr)
	if cfg.PublicURL == nil && cfg.AllowAnyHost {
		logger.Error("UNSAFE: --allow-any-host: listening beyond loopback without a public URL; "+
			"Host and Origin are not anchored, so DNS rebinding and cross-site WebSocket protections are weakened. "+
			"Set --public-url unless you know why you cannot", "listen", addr, "any_host", hosts == nil)
	}

	if err := bootstrapAdmin(ctx, st, cfg.AdminPassword, baseURL, stdout); err != nil {
		ln.Close()
		return err
	}

	// shellgate's own SSH key, created on first start, sealed under the master key.
	gateway, err := jobs.LoadOrCreateIdentity(ctx, st, keys)
	if err != nil {
		ln.Close()
		return err
	}
	// Servers behind NAT are reached through their agents' links; everything
	// else is dialed directly. The SSH code sees one dialer.
	hub := tunnel.NewHub(tunnel.HubConfig{
		Store: st, Logger: logger, Heartbeat: cfg.AgentHeartbeat,
		OnEvent: tunnel.Audit(st),
	})
	defer hub.Close()
	dialer := &tunnel.Router{Direct: &net.Dialer{}, Hub: hub}
	sources := tunnel.NewSourceHub(tunnel.SourceConfig{
		Store: st, Dialer: dialer, Logger: logger, Heartbeat: cfg.AgentHeartbeat,
		OnEvent: tunnel.AuditConnections(st),
	})
	defer sources.Close()
	deployer := &terminal.Deployer{
		Dialer: dialer,
		Auth:   terminal.Auth{Signers: []ssh.Signer{gateway.Signer}},
		// nil policy: deployment connects only to servers whose key is pinned.
		Options: terminal.DialOptions{Observe: met.ObserveDial},
	}
	worker := jobs.NewWorker(st, deployer)
	worker.Log = logger
	worker.OnFinish = met.DeployJob
	var dm *demo
	if cfg.Demo {
		if dm, err = startDemo(ctx, st, logger); err != nil {
			ln.Close()
			return err
		}
		defer dm.Close()
	}
	terms := terminal.NewManager(terminal.Config{Dialer: dialer, Logger: logger, MaxPerUser: cfg.MaxTerminalsPerUser, MaxTotal: cfg.MaxTerminals,
		DialOptions: terminal.DialOptions{Observe: met.ObserveDial}})
	met.WatchTerminals(terms.Sessions)
	if dc, ok := any(st).(interface {
		DeploymentCounts(context.Context) (map[string]int, error)
	}); ok {
		met.WatchDeployQueue(dc.DeploymentCounts)
	}
	// Revocations made here wake live sessions at once; the watch notices those made
	// by another process on the same database (e.g. `shellgate user disable`).
	revocations := revoke.NewLocalBus()
	rv := revoke.New(st, revocations, logger)
	go rv.Watch(ctx, time.Second)
	if st.Engine() == store.EnginePostgres {
		// Replicas: a revocation committed here reaches the sessions the others hold at
		// once over LISTEN/NOTIFY, and theirs reach ours; the watch above stays the
		// safety net for a hint lost while a listener reconnects.
		bridge := hints.BridgeScopes(bus, "access", revocations.Publish)
		defer bridge.Close()
		st.OnAccessChange(func(_ int64, scopes []string) { bridge.Announce(scopes) })
	}

	hcfg := handlers.Config{
		PublicURL:       cfg.PublicURL,
		AllowedHosts:    hosts,
		TrustedProxies:  cfg.TrustedProxies,
		SessionHashKey:  keys.Derive("session-cookie-hash", 64),
		SessionBlockKey: keys.Derive("session-cookie-block", 32),
		CSRFKey:         keys.Derive("csrf", 32),
		Secrets:         keys,
		Logger:          logger,
		Stacks: handlers.StacksConfig{
			Gateway: gateway,
			Dialer:  dialer,
			Scan:    deployer.ScanHostKey,
			InstallWithPassword: func(ctx context.Context, t *terminal.Target, password string, log func(string)) error {
				return jobs.InstallWithPassword(ctx, dialer, gateway, t, password, log)
			},
			Wake:              worker.Wake,
			Agents:            hub,
			Tunnels:           sources,
			TunnelMaxLifetime: cfg.TunnelMaxLifetime,
		},
		AgentEndpoint:      hub,
		TunnelEndpoint:     sources,
		Terminals:          terms,
		SessionIdleTimeout: cfg.SessionIdleTimeout,
		DeviceKey:          keys.Derive("device-cookie", 32),
		Revoke:             rv,
		RecordingsDir:      cfg.RecordingsDir,
		RecordingRetention: cfg.RecordingRetention,
		Transfers:          handlers.TransferConfig{StallTimeout: cfg.StallTimeout},
		Ops: handlers.OpsConfig{
			Metrics: met, MetricsToken: metricsToken, Started: started, Listen: baseURL,
			MasterKeyID: keys.PrimaryID(), MasterKeyFile: filepath.Join(cfg.DataDir, secrets.FileName), Log: recent,
		},
	}
	if cfg.MetricsListen != "" {
		ms, err := startMetricsServer(cfg.MetricsListen, met, cfg.Pprof, logger)
		if err != nil {
			ln.Close()
			return err
		}
		defer ms.Close()
		hcfg.Ops.MetricsWhere = "http://" + ms.addr + "/metrics (separate listener)"
		if cfg.Pprof {
			hcfg.Ops.MetricsWhere += ", pprof on"
		}
		fmt.Fprintf(stdout, "metrics are served on http://%s/metrics\n", ms.addr)
	}
	if metricsToken != "" {
		hcfg.Ops.MetricsWhere = strings.TrimPrefix(hcfg.Ops.MetricsWhere+"; ", "; ") + baseURL + "/metrics with the bearer token"
	}
	if dm != nil {
		hcfg.DemoAuth = dm.auth
	}
	if st.Engine() == store.EnginePostgres {
		// Replicas list each other's live sessions and end them through the owner.
		hcfg.Cluster = &handlers.ClusterConfig{ReplicaID: member.Self.ID, Sessions: st, Hints: bus}
	}
	e, hs, err := handlers.New(hcfg, st)
	if err != nil {
		ln.Close()
		return err
	}

	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: downloads stream for as long as they take, and WebSockets
		// carry their own deadlines.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// The deployment worker runs until shutdown; several replicas may run one each.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		worker.Run(workerCtx)
	}()
	defer func() {
		stopWorker()
		<-workerDone
	}()
	memberDone := make(chan struct{})
	go func() {
		defer close(memberDone)
		member.Run(workerCtx) // removes this replica's row when it ends
	}()
	defer func() {
		stopWorker()
		<-memberDone
	}()
	// Recordings past their retention are deleted hourly, files and rows.
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		hs.RunRecordingRetention(workerCtx)
	}()
	defer func() {
		stopWorker()
		<-retentionDone
	}()

	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	fmt.Fprintf(stdout, "shellgate is listening on %s\n", baseURL)
	logger.Info("shellgate started", "listen", addr, "data_dir", cfg.DataDir)

	// A second SIGTERM/SIGINT during the drain cuts at once. Registered now, so
	// that the first signal (which ends ctx) is the one discarded below.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown. 1. Drain: /readyz turns 503 and new requests are refused
	// at once; uploads and downloads in flight get DrainTimeout to finish, then are
	// cut, and each cut upload removes its temporary file before Drain returns.
	logger.Info("draining", "drain_timeout", cfg.DrainTimeout)
	// The signal that ended ctx reaches this channel too (within microseconds: the
	// runtime delivers it to every channel in turn); it is not a second one. A ctx
	// ended otherwise (tests, an embedding program) brings none.
	select {
	case <-signals:
	case <-time.After(100 * time.Millisecond):
	}
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancelDrain()
	go func() {
		select {
		case <-signals:
			logger.Warn("second signal: cutting transfers now")
			cancelDrain()
		case <-drainCtx.Done():
		}
	}()
	if n := hs.Drain(drainCtx); n > 0 {
		logger.Warn("transfers cut at the end of the drain period", "count", n)
	}
	cancelDrain()
	// 2. Terminals are told the server is restarting (close code 1001), their SSH
	// sessions end and the file connection pool closes. http.Server.Shutdown does
	// not wait for hijacked connections: the terminal manager closes them itself.
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sources.Close()
	hub.Close() // agents reconnect, with jittered backoff, when shellgate is back
	if err := terms.Shutdown(shutdownCtx); err != nil {
		logger.Warn("terminal sessions did not all close", "err", err)
	}
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bootstrapAdmin creates the first account when there is none: "admin" with the
// password from SHELLGATE_ADMIN_PASSWORD, or a generated one printed this once.
func bootstrapAdmin(ctx context.Context, st store.Store, given, baseURL string, stdout io.Writer) error {
	n, err := st.CountUsers(ctx)
	if err != nil || n > 0 {
		return err
	}
	pw := given
	if pw == "" {
		pw = password.Generate()
	} else if err := password.CheckStrength(pw); err != nil {
		return fmt.Errorf("SHELLGATE_ADMIN_PASSWORD is too weak: %w", err)
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return err
	}
	if err := st.CreateUser(ctx, &store.User{Username: "admin", PasswordHash: hash, Role: store.RoleAdmin}); err != nil {
		return err
	}
	_ = st.AppendEvent(ctx, &store.Event{Kind: "user.create", ActorName: "shellgate", Target: "admin", OK: true,
		Detail: map[string]string{"role": "admin", "via": "first start"}})
	fmt.Fprintf(stdout, "\nCreated the first account. Sign in at %s/login\n  username: admin\n", baseURL)
	if given == "" {
		fmt.Fprintf(stdout, "  password: %s\n(shown this once: change it under Account after signing in)\n\n", pw)
	} else {
		fmt.Fprintf(stdout, "  password: the one in SHELLGATE_ADMIN_PASSWORD\n\n")
	}
	return nil
}
