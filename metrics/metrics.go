// Package metrics is shellgate's Prometheus registry: what an operator scrapes to see
// how a running shellgate is doing.
//
// The rest of the code reports through a few hook methods on *Metrics, called at the
// edges where things happen (a terminal starts or ends, an SSH dial returns, a file
// transfer finishes, a deployment job finishes, a sign-in is decided, a WebSocket
// upgrade is refused). Every method is safe on a nil *Metrics, so tests and callers
// without metrics pass nil. Gauges that describe current state (live sessions, the
// deployment queue) are read from their owner at scrape time instead of being kept
// in step by hand.
//
// Label values are a small fixed set each (reasons, causes, directions); never a user,
// server, stack or path, so the number of series stays bounded however big the site.
package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shellgate/shellgate/terminal"
)

// Namespace prefixes every shellgate metric.
const Namespace = "shellgate"

// Terminal end reasons (label "reason" of shellgate_terminal_sessions_ended_total).
const (
	EndExit           = "exit"            // the remote shell exited
	EndDetachExpired  = "detach_expired"  // the browser left and nobody resumed in time
	EndTerminated     = "terminated"      // an administrator closed it
	EndShutdown       = "shutdown"        // shellgate stopped
	EndConnectionLost = "connection_lost" // the SSH connection died
	EndError          = "error"           // anything else
)

// Dial failure causes (label "cause" of shellgate_ssh_dial_failures_total).
const (
	CauseRefused     = "refused"     // TCP connection refused
	CauseTimeout     = "timeout"     // connect, banner or handshake timed out
	CauseHostKey     = "host_key"    // host key changed or not accepted
	CauseAuth        = "auth"        // no credential accepted
	CauseUnreachable = "unreachable" // no route, or the name does not resolve
	CauseCanceled    = "canceled"    // the person went away during the dial
	CauseOther       = "other"       // not SSH, algorithm mismatch, closed early, …
)

// Transfer directions (label "direction" of the file transfer metrics).
const (
	Upload   = "upload"
	Download = "download"
)

// Sign-in results (label "result" of shellgate_signins_total).
const (
	SignInSuccess   = "success"
	SignInFailure   = "failure"
	SignInThrottled = "throttled"
)

// Reasons a WebSocket upgrade is refused (label "reason").
const (
	RefusedOrigin    = "origin"    // Origin is not shellgate's own
	RefusedHandshake = "handshake" // not a valid WebSocket handshake
)

// Metrics holds shellgate's collectors and its registry.
type Metrics struct {
	reg *prometheus.Registry

	termOpened  prometheus.Counter
	termEnded   *prometheus.CounterVec
	dialSeconds prometheus.Histogram
	dialFailed  *prometheus.CounterVec
	fileBytes   *prometheus.CounterVec
	fileSeconds *prometheus.HistogramVec
	fileDone    *prometheus.CounterVec
	deployJobs  *prometheus.CounterVec
	signIns     *prometheus.CounterVec
	wsRefused   *prometheus.CounterVec

	term *terminalCollector
}

// Build describes the running binary for shellgate_build_info.
type Build struct {
	Version, Commit, GoVersion string
}

// New returns a registry with shellgate's metrics, the Go runtime and process
// collectors, and shellgate_build_info.
func New(b Build) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the labels say which shellgate is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	info.Set(1)
	f(info)

	m.termOpened = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "terminal_sessions_opened_total",
		Help: "Terminal sessions whose shell started.",
	})
	m.termEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "terminal_sessions_ended_total",
		Help: "Terminal sessions ended, by reason: exit, detach_expired, terminated, shutdown, connection_lost, error.",
	}, []string{"reason"})
	m.dialSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "ssh_dial_duration_seconds",
		Help:    "Time to connect and authenticate to an SSH server (every hop of a jump chain, prompts included), successful or not.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.dialFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "ssh_dial_failures_total",
		Help: "SSH dials that failed, by cause: refused, timeout, host_key, auth, unreachable, canceled, other.",
	}, []string{"cause"})
	m.fileBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "file_transfer_bytes_total",
		Help: "Bytes moved by the file panel, by direction (upload, download).",
	}, []string{"direction"})
	m.fileSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "file_transfer_duration_seconds",
		Help:    "Duration of file transfers, by direction.",
		Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 1800},
	}, []string{"direction"})
	m.fileDone = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "file_transfers_total",
		Help: "File transfers finished, by direction and result (ok, error).",
	}, []string{"direction", "result"})
	m.deployJobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "deploy_jobs_total",
		Help: "Deployment queue jobs run, by kind (add, remove) and result (ok, error).",
	}, []string{"kind", "result"})
	m.signIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "signins_total",
		Help: "Dashboard sign-in attempts, by result: success, failure, throttled.",
	}, []string{"result"})
	m.wsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "websocket_upgrades_refused_total",
		Help: "WebSocket upgrades refused, by reason: origin, handshake.",
	}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.termOpened, m.termEnded, m.dialSeconds, m.dialFailed, m.fileBytes,
		m.fileSeconds, m.fileDone, m.deployJobs, m.signIns, m.wsRefused} {
		f(c)
	}
	// Known label values start at zero, so a rate() works before the first event.
	for _, r := range []string{EndExit, EndDetachExpired, EndTerminated, EndShutdown, EndConnectionLost, EndError} {
		m.termEnded.WithLabelValues(r)
	}
	for _, c := range []string{CauseRefused, CauseTimeout, CauseHostKey, CauseAuth, CauseUnreachable, CauseCanceled, CauseOther} {
		m.dialFailed.WithLabelValues(c)
	}
	for _, d := range []string{Upload, Download} {
		m.fileBytes.WithLabelValues(d)
		m.fileDone.WithLabelValues(d, "ok")
		m.fileDone.WithLabelValues(d, "error")
	}
	for _, r := range []string{SignInSuccess, SignInFailure, SignInThrottled} {
		m.signIns.WithLabelValues(r)
	}
	for _, r := range []string{RefusedOrigin, RefusedHandshake} {
		m.wsRefused.WithLabelValues(r)
	}
	return m
}

// Registry is where later parts (agent links, tunnels) register their collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ListenerHandler is what the separate metrics listener serves: /metrics, and the
// net/http/pprof pages under /debug/pprof/ when withPprof. pprof is never on the
// main port: its profiles show memory that may hold secrets, and a CPU profile costs.
func (m *Metrics) ListenerHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// TerminalStarted counts a shell that started.
func (m *Metrics) TerminalStarted(info terminal.SessionInfo) {
	if m == nil {
		return
	}
	m.termOpened.Inc()
	m.term.started(info)
}

// TerminalEnded counts a session that ended and settles its byte counts.
func (m *Metrics) TerminalEnded(info terminal.SessionInfo, err error) {
	if m == nil {
		return
	}
	m.termEnded.WithLabelValues(EndReason(err)).Inc()
	m.term.ended(info)
}

// EndReason maps the cause a terminal session ended with to a reason label.
func EndReason(err error) string {
	var exit *terminal.ExitError
	switch {
	case err == nil, errors.As(err, &exit):
		return EndExit
	case errors.Is(err, terminal.ErrDetachExpired):
		return EndDetachExpired
	case errors.Is(err, terminal.ErrTerminated):
		return EndTerminated
	case errors.Is(err, terminal.ErrShutdown):
		return EndShutdown
	case errors.Is(err, terminal.ErrConnectionLost):
		return EndConnectionLost
	default:
		return EndError
	}
}

// ObserveDial records one SSH dial (terminal.DialOptions.Observe).
func (m *Metrics) ObserveDial(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.dialSeconds.Observe(d.Seconds())
	if err != nil {
		m.dialFailed.WithLabelValues(DialCause(err)).Inc()
	}
}

// DialCause maps an error of terminal.Dial to a cause label.
func DialCause(err error) string {
	var dns *net.DNSError
	switch {
	case errors.Is(err, terminal.ErrHostKeyChanged), errors.Is(err, terminal.ErrHostKeyRejected):
		return CauseHostKey
	case errors.Is(err, terminal.ErrAuthFailed):
		return CauseAuth
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseRefused
	case errors.Is(err, context.Canceled):
		return CauseCanceled
	case isTimeout(err):
		return CauseTimeout
	case errors.As(err, &dns), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return CauseUnreachable
	default:
		return CauseOther
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// FileTransfer records one finished upload or download (direction Upload or
// Download): the bytes that actually moved, however it ended.
func (m *Metrics) FileTransfer(direction string, bytes int64, d time.Duration, err error) {
	if m == nil {
		return
	}
	if bytes > 0 {
		m.fileBytes.WithLabelValues(direction).Add(float64(bytes))
	}
	m.fileSeconds.WithLabelValues(direction).Observe(d.Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.fileDone.WithLabelValues(direction, result).Inc()
}

// DeployJob records one deployment queue job (jobs.Worker.OnFinish).
func (m *Metrics) DeployJob(removing bool, err error) {
	if m == nil {
		return
	}
	kind, result := "add", "ok"
	if removing {
		kind = "remove"
	}
	if err != nil {
		result = "error"
	}
	m.deployJobs.WithLabelValues(kind, result).Inc()
}

// SignIn records a sign-in decision: SignInSuccess, SignInFailure or SignInThrottled.
func (m *Metrics) SignIn(result string) {
	if m == nil {
		return
	}
	m.signIns.WithLabelValues(result).Inc()
}

// UpgradeRefused records a refused WebSocket upgrade (RefusedOrigin, RefusedHandshake).
func (m *Metrics) UpgradeRefused(reason string) {
	if m == nil {
		return
	}
	m.wsRefused.WithLabelValues(reason).Inc()
}

// WatchTerminals reports live and detached sessions and terminal bytes from sessions,
// read at scrape time (terminal.Manager.Sessions).
func (m *Metrics) WatchTerminals(sessions func() []terminal.SessionInfo) {
	if m == nil {
		return
	}
	m.term = newTerminalCollector(sessions)
	m.reg.MustRegister(m.term)
}

// WatchDeployQueue reports the deployment queue by state, read at scrape time.
// counts returns the number of jobs per state (pending, failed, removing, deployed).
func (m *Metrics) WatchDeployQueue(counts func(ctx context.Context) (map[string]int, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&queueCollector{counts: counts, desc: prometheus.NewDesc(
		prometheus.BuildFQName(Namespace, "deploy", "queue_jobs"),
		"Deployment jobs by state: pending and removing are waiting, failed will be retried or waits for a person, deployed is done.",
		[]string{"state"}, nil)})
}

// CountingReader counts the bytes read through it, for transfers that end early.
type CountingReader struct {
	R io.Reader
	N int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
