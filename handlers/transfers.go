package handlers

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// Transfers in flight: every upload, download and archive registers here for its
// whole life, so that
//
//   - a transfer that stops moving is ended (the progress deadline): fewer than
//     TransferConfig.StallFloor bytes in TransferConfig.StallTimeout cuts it, its
//     temporary file is removed by the upload engine, its pooled SFTP session is
//     released, and the audit says "stalled";
//   - a graceful shutdown can wait for them (Drain), then cut what remains.
//
// Cutting a transfer cancels its context and moves the connection's read (and, for
// downloads, write) deadline to now, which unblocks a handler stuck reading a silent
// body or writing to a client that stopped reading. A remote server that stops
// answering is the SSH keepalive's job (terminal.DialOptions), which closes the
// connection within 45 s by default.

// errStalled is the cause of a transfer ended by its progress deadline.
var errStalled = errors.New("transfer stalled")

// errDraining is the cause of a transfer cut at the end of the drain period.
var errDraining = errors.New("shellgate is restarting")

// TransferConfig tunes the progress deadline of streamed transfers.
type TransferConfig struct {
	// StallTimeout ends a transfer that moved fewer than StallFloor bytes for this
	// long. Default 60 s.
	StallTimeout time.Duration
	// StallFloor is the progress that counts: a trickle below StallFloor bytes per
	// StallTimeout is cut like a silence. Default 1 KiB.
	StallFloor int64
	// CleanupWait bounds how long Drain waits for cut transfers to clean up
	// (uploads remove their temporary files). Default 10 s.
	CleanupWait time.Duration
	// MaxTotal and MaxPerUser bound the transfers in flight (each holds up to
	// terminal.FilesOptions.Concurrency × 32 KiB, 2 MiB by default); one more is
	// refused with 503. Defaults 128 and 16 (the file panel runs 3 at once).
	MaxTotal, MaxPerUser int
}

func (c TransferConfig) withDefaults() TransferConfig {
	if c.StallTimeout <= 0 {
		c.StallTimeout = 60 * time.Second
	}
	if c.StallFloor <= 0 {
		c.StallFloor = 1 << 10
	}
	if c.CleanupWait <= 0 {
		c.CleanupWait = 10 * time.Second
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = 128
	}
	if c.MaxPerUser <= 0 {
		c.MaxPerUser = 16
	}
	return c
}

// transferSet is the registry. Bound: one entry per transfer request in flight,
// which the HTTP server's connections bound; it holds no buffers.
type transferSet struct {
	cfg TransferConfig

	mu       sync.Mutex
	draining bool
	live     map[*transfer]struct{} // bound: cfg.MaxTotal
	perUser  map[int64]int          // bound: one key per user with a transfer in flight
	idle     chan struct{}          // closed when live becomes empty while draining
}

func newTransferSet(cfg TransferConfig) *transferSet {
	return &transferSet{cfg: cfg.withDefaults(), live: make(map[*transfer]struct{}), perUser: make(map[int64]int)}
}

// transfer is one streamed request.
type transfer struct {
	set    *transferSet
	ctx    context.Context
	cancel context.CancelCauseFunc
	rc     *http.ResponseController
	upload bool
	user   int64

	last    atomic.Int64 // unix nanoseconds of the last StallFloor bytes
	pending atomic.Int64 // bytes since then
	timer   *time.Timer
	once    sync.Once
}

// begin registers a transfer of the request; ErrShutdown-like refusal while
// draining. end must be called when the handler is done.
func (ts *transferSet) begin(c echo.Context, upload bool) (*transfer, error) {
	var user int64
	if u := currentUser(c); u != nil {
		user = u.ID
	}
	ts.mu.Lock()
	switch {
	case ts.draining:
		ts.mu.Unlock()
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "shellgate is restarting. Try again in a moment.")
	case len(ts.live) >= ts.cfg.MaxTotal, ts.perUser[user] >= ts.cfg.MaxPerUser:
		ts.mu.Unlock()
		c.Response().Header().Set("Retry-After", "5")
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "Too many transfers at once. Try again when one has finished.")
	}
	ctx, cancel := context.WithCancelCause(c.Request().Context())
	t := &transfer{set: ts, ctx: ctx, cancel: cancel, upload: upload, user: user,
		rc: http.NewResponseController(c.Response().Writer)}
	t.last.Store(time.Now().UnixNano())
	ts.live[t] = struct{}{}
	ts.perUser[user]++
	ts.mu.Unlock()
	t.timer = time.AfterFunc(ts.cfg.StallTimeout, t.check)
	return t, nil
}

// end unregisters t; safe to call once per begin.
func (t *transfer) end() {
	t.timer.Stop()
	t.cancel(context.Canceled)
	ts := t.set
	ts.mu.Lock()
	delete(ts.live, t)
	if ts.perUser[t.user]--; ts.perUser[t.user] <= 0 {
		delete(ts.perUser, t.user)
	}
	if ts.draining && len(ts.live) == 0 && ts.idle != nil {
		close(ts.idle)
		ts.idle = nil
	}
	ts.mu.Unlock()
}

// moved records n bytes of progress.
func (t *transfer) moved(n int) {
	if n <= 0 {
		return
	}
	if t.pending.Add(int64(n)) >= t.set.cfg.StallFloor {
		t.pending.Store(0)
		t.last.Store(time.Now().UnixNano())
	}
}

// check runs when the deadline may have passed: cut, or look again later.
func (t *transfer) check() {
	since := time.Since(time.Unix(0, t.last.Load()))
	if left := t.set.cfg.StallTimeout - since; left > 0 {
		t.timer.Reset(left)
		return
	}
	t.cut(errStalled)
}

// cut ends the transfer with cause: its context ends and blocked reads (and, for
// downloads, writes) of its connection return at once.
func (t *transfer) cut(cause error) {
	t.once.Do(func() {
		t.cancel(cause)
		now := time.Now()
		_ = t.rc.SetReadDeadline(now)
		if !t.upload {
			_ = t.rc.SetWriteDeadline(now)
		}
	})
}

// stalled reports whether the progress deadline ended t.
func (t *transfer) stalled() bool { return errors.Is(context.Cause(t.ctx), errStalled) }

// drained reports whether the end of the drain period cut t.
func (t *transfer) drained() bool { return errors.Is(context.Cause(t.ctx), errDraining) }

// reason is the error a cut transfer reports: errStalled or errDraining.
func (t *transfer) reason() error { return context.Cause(t.ctx) }

// body wraps an upload's request body so every byte read counts as progress.
func (t *transfer) body(r io.Reader) io.Reader { return &progressReader{r: r, t: t} }

type progressReader struct {
	r io.Reader
	t *transfer
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.t.moved(n)
	if err != nil && p.t.ctx.Err() != nil {
		// The read failed because the transfer was cut (deadline moved to now):
		// say why, not "i/o timeout".
		err = context.Cause(p.t.ctx)
	}
	return n, err
}

// writer wraps a download's response writer so every byte written counts.
func (t *transfer) writer(w http.ResponseWriter) http.ResponseWriter {
	return &progressWriter{ResponseWriter: w, t: t}
}

type progressWriter struct {
	http.ResponseWriter
	t *transfer
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.ResponseWriter.Write(b)
	p.t.moved(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// Draining reports whether Drain has started: new work is refused and /readyz
// answers 503.
func (ts *transferSet) Draining() bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.draining
}

// Drain refuses new transfers and waits until those in flight have finished, or
// until ctx ends; then it cuts what remains and waits (at most CleanupWait) for
// their handlers to clean up, so no upload leaves its temporary file behind. It
// returns the number of transfers cut.
func (ts *transferSet) Drain(ctx context.Context) int {
	ts.mu.Lock()
	ts.draining = true
	if len(ts.live) == 0 {
		ts.mu.Unlock()
		return 0
	}
	idle := make(chan struct{})
	ts.idle = idle
	ts.mu.Unlock()
	select {
	case <-idle:
		return 0
	case <-ctx.Done():
	}
	ts.mu.Lock()
	cut := make([]*transfer, 0, len(ts.live))
	for t := range ts.live {
		cut = append(cut, t)
	}
	ts.mu.Unlock()
	for _, t := range cut {
		t.cut(errDraining)
	}
	wait := time.NewTimer(ts.cfg.CleanupWait)
	defer wait.Stop()
	select {
	case <-idle:
	case <-wait.C:
	}
	return len(cut)
}

// Drain starts the graceful shutdown of the HTTP side: /readyz turns 503, new
// requests are refused (503), and transfers in flight get until ctx ends to
// finish before they are cut (see transferSet.Drain). Terminals are the
// terminal.Manager's: the caller shuts it down after Drain.
func (s *Server) Drain(ctx context.Context) int { return s.xfers.Drain(ctx) }

// refuseWhileDraining turns away new work once Drain has started; the health
// endpoints still answer.
func (s *Server) refuseWhileDraining(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Request().URL.Path; p != "/healthz" && p != "/readyz" && s.xfers.Draining() {
			c.Response().Header().Set("Retry-After", "5")
			c.Response().Header().Set("Connection", "close")
			return echo.NewHTTPError(http.StatusServiceUnavailable, "shellgate is restarting. Try again in a moment.")
		}
		return next(c)
	}
}

// ReadyChecker is what /readyz asks the store: reachable, schema current.
type ReadyChecker interface {
	Ready(ctx context.Context) error
}

// readyz says whether this process should get new work: not draining, the
// database answers with every migration applied, the master key is loaded.
// /healthz stays the plain process check.
func (s *Server) readyz(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	if s.xfers.Draining() {
		return c.String(http.StatusServiceUnavailable, "draining")
	}
	if s.cfg.Secrets == nil {
		return c.String(http.StatusServiceUnavailable, "master key not loaded")
	}
	if rc, ok := s.store.(ReadyChecker); ok {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := rc.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			return c.String(http.StatusServiceUnavailable, "database not ready")
		}
	}
	return c.String(http.StatusOK, "ready")
}
