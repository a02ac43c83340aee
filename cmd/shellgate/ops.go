package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shellgate/shellgate/internal/buildinfo"
	"github.com/shellgate/shellgate/metrics"
)

// newMetrics builds the registry with the running binary's build information.
func newMetrics() *metrics.Metrics {
	bi := buildinfo.Get()
	return metrics.New(metrics.Build{Version: bi.Version, Commit: bi.Commit, GoVersion: bi.GoVersion})
}

// readMetricsToken reads the bearer token that opens /metrics on the main port. The
// file must not be readable by everyone, and the token must be long enough not to be
// guessed.
func readMetricsToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("metrics token: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("metrics token: %w", err)
	}
	if st.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("metrics token %s is readable by every user (%04o): chmod o-r it", path, st.Mode().Perm())
	}
	buf := make([]byte, 4097)
	n, _ := f.Read(buf)
	if n > 4096 {
		return "", fmt.Errorf("metrics token %s: longer than 4096 bytes", path)
	}
	token := strings.TrimSpace(string(buf[:n]))
	if len(token) < 16 {
		return "", fmt.Errorf("metrics token %s: want at least 16 characters (e.g. openssl rand -hex 32 > %s)", path, path)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("metrics token %s: one line without spaces", path)
	}
	return token, nil
}

// metricsServer is the separate metrics listener: /metrics without authentication
// and, when asked, pprof. It is meant for a loopback or private address.
type metricsServer struct {
	srv  *http.Server
	addr string
	errc chan error
}

func startMetricsServer(addr string, m *metrics.Metrics, withPprof bool, log *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	ms := &metricsServer{addr: ln.Addr().String(), errc: make(chan error, 1), srv: &http.Server{
		Handler:           m.ListenerHandler(withPprof),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	if host, _, err := net.SplitHostPort(ms.addr); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			log.Warn("the metrics listener has no authentication and is not on loopback: keep it on a private network",
				"metrics_listen", ms.addr, "pprof", withPprof)
		}
	}
	go func() { ms.errc <- ms.srv.Serve(ln) }()
	log.Info("metrics listening", "addr", ms.addr, "pprof", withPprof)
	return ms, nil
}

// Close stops the listener; scrapes in flight are cut, they are cheap to repeat.
func (ms *metricsServer) Close() {
	if ms == nil {
		return
	}
	ms.srv.Close()
	<-ms.errc
}

// lockFileName is the lock every running shellgate holds (shared) in its data dir,
// so that restore (exclusive) can tell that one is running.
const lockFileName = "shellgate.lock"

// errDataDirInUse says a shellgate process holds the data dir.
var errDataDirInUse = errors.New("a shellgate process is running with this data dir")

// lockDataDir takes the data dir's lock: shared for a server (several may run, e.g.
// during a restart), exclusive and without waiting for restore. The lock is released
// when the process ends, however it ends.
func lockDataDir(dir string, exclusive bool) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errDataDirInUse
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return func() { f.Close() }, nil
}
