package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"time"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// Deployer edits authorized_keys over SSH; *terminal.Deployer satisfies it. Deploy
// adds each key's marked line for the target's login user (or, in user-per-key mode,
// a login named after the key); Remove takes exactly those lines out again. A
// changed host key is refused before authenticating (terminal.Dial), and log
// receives the steps in plain words ("Adding user: My_office_Laptop").
type Deployer interface {
	Deploy(ctx context.Context, t *terminal.Target, keys []terminal.DeployKey, mode terminal.DeployMode, log func(string)) error
	Remove(ctx context.Context, t *terminal.Target, keys []terminal.DeployKey, mode terminal.DeployMode, log func(string)) error
}

// QueueStore is the part of the store the worker uses.
type QueueStore interface {
	ClaimDeployment(ctx context.Context, now time.Time, lease time.Duration, maxAttempts int, token string) (*store.Deployment, error)
	FinishDeployment(ctx context.Context, d *store.Deployment, jobErr error, retryAt, now time.Time) error
	ListServers(ctx context.Context, stackID int64) ([]store.Server, error)
	SetPresentedKey(ctx context.Context, serverID int64, key string, at time.Time) error
	AppendStackLog(ctx context.Context, l *store.StackLogLine) error
	AppendEvent(ctx context.Context, e *store.Event) error
}

// Worker runs the deployment queue.
//
// Retry policy: a failed job is retried after Backoff·2^(attempts−1), capped at
// MaxBackoff, with ±10 % jitter, at most MaxAttempts times; then it stays failed until
// an admin presses Retry or re-pins the host key. A changed host key is not retried
// at all: the job waits for a person.
type Worker struct {
	Store    QueueStore
	Deployer Deployer
	Log      *slog.Logger
	Now      func() time.Time

	PollInterval time.Duration // how often to look for due jobs; default 2s
	Lease        time.Duration // how long a claim lasts; default 2m
	JobTimeout   time.Duration // one job's SSH work; default 90s (below Lease)
	MaxAttempts  int           // default 8
	Backoff      time.Duration // first retry delay; default 10s
	MaxBackoff   time.Duration // default 30m

	// ID names this worker (one per process) in the workers table; its claim
	// tokens start with ID + ".". Default: random.
	ID string
	// Heartbeat is how often the worker renews its row and looks for workers
	// that are gone; default 5s. DeadAfter is how old a heartbeat must be for
	// its worker to count as gone; default 30s.
	Heartbeat time.Duration
	DeadAfter time.Duration
	// Alive reports whether the process of a worker row on this host still
	// runs; default: signal 0 to its PID when the row's host is this one.
	Alive func(w store.WorkerRow) bool
	// OnFinish, when set, hears of every job run: a removal or not, and its error.
	OnFinish func(removing bool, err error)

	wake chan struct{}
	host string
}

func (w *Worker) defaults() {
	if w.Log == nil {
		w.Log = slog.Default()
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.PollInterval <= 0 {
		w.PollInterval = 2 * time.Second
	}
	if w.Lease <= 0 {
		w.Lease = 2 * time.Minute
	}
	if w.JobTimeout <= 0 || w.JobTimeout >= w.Lease {
		w.JobTimeout = w.Lease * 3 / 4
	}
	if w.MaxAttempts <= 0 {
		w.MaxAttempts = 8
	}
	if w.Backoff <= 0 {
		w.Backoff = 10 * time.Second
	}
	if w.MaxBackoff <= 0 {
		w.MaxBackoff = 30 * time.Minute
	}
	if w.ID == "" {
		w.ID = newToken()
	}
	if w.Heartbeat <= 0 {
		w.Heartbeat = 5 * time.Second
	}
	if w.DeadAfter <= 0 {
		w.DeadAfter = 6 * w.Heartbeat
	}
	if w.host == "" {
		w.host, _ = os.Hostname()
	}
	if w.Alive == nil {
		w.Alive = w.processAlive
	}
}

// processAlive: a row of another host is presumed alive (its heartbeat decides);
// on this host, a PID that no longer exists is a process that is gone.
func (w *Worker) processAlive(r store.WorkerRow) bool {
	if r.Host != w.host || r.PID <= 0 {
		return true
	}
	return pidExists(r.PID)
}

// NewWorker returns a worker with defaults filled in.
func NewWorker(st QueueStore, d Deployer) *Worker {
	w := &Worker{Store: st, Deployer: d, wake: make(chan struct{}, 1)}
	w.defaults()
	return w
}

// Wake makes a sleeping Run look for jobs now (after an attach, say). It never blocks.
func (w *Worker) Wake() {
	if w == nil || w.wake == nil {
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run works the queue until ctx is cancelled, and returns nil then. A job running at
// that moment is cancelled with it; its claim lapses and another run picks it up.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	// Leases: this worker's heartbeat, and the jobs of workers that are gone
	// reclaimed at once (at start, then every Heartbeat) rather than after
	// their lease.
	if ls, ok := w.Store.(store.WorkerStore); ok {
		started := w.Now()
		w.beat(ctx, ls, started)
		hbDone := make(chan struct{})
		defer func() {
			<-hbDone
			// A clean stop: nothing of ours is running any more.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = ls.DeleteWorker(dctx, w.ID)
		}()
		go func() {
			defer close(hbDone)
			t := time.NewTicker(w.Heartbeat)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					w.beat(ctx, ls, started)
				}
			}
		}()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-w.wake:
		}
		// Drain what is due, one job at a time, then sleep.
		for ctx.Err() == nil {
			ran, err := w.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				w.Log.Error("deployment queue", "err", err)
			}
			if !ran || err != nil {
				break
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(w.PollInterval)
	}
}

// beat renews this worker's row and reclaims the jobs of workers that are gone:
// their heartbeat is older than DeadAfter, or their process has left this host.
func (w *Worker) beat(ctx context.Context, ls store.WorkerStore, started time.Time) {
	now := w.Now()
	if err := ls.HeartbeatWorker(ctx, &store.WorkerRow{ID: w.ID, Host: w.host, PID: os.Getpid(),
		StartedAt: started, HeartbeatAt: now}); err != nil {
		if ctx.Err() == nil {
			w.Log.Error("worker heartbeat", "err", err)
		}
		return
	}
	rows, err := ls.ListWorkers(ctx)
	if err != nil {
		return
	}
	for _, r := range rows {
		if r.ID == w.ID || (now.Sub(r.HeartbeatAt) < w.DeadAfter && w.Alive(r)) {
			continue
		}
		n, err := ls.ReclaimDeployments(ctx, r.ID, now)
		if err != nil {
			w.Log.Error("reclaim deployments", "worker", r.ID, "err", err)
			continue
		}
		_ = ls.DeleteWorker(ctx, r.ID)
		w.Log.Info("reclaimed the deployments of a worker that is gone", "worker", r.ID, "host", r.Host, "pid", r.PID, "jobs", n)
		if n > 0 {
			w.Wake()
		}
	}
}

// RunOnce claims one due job and runs it. It reports whether there was one.
func (w *Worker) RunOnce(ctx context.Context) (bool, error) {
	w.defaults()
	token := w.ID + "." + newToken()
	d, err := w.Store.ClaimDeployment(ctx, w.Now(), w.Lease, w.MaxAttempts, token)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim: %w", err)
	}
	retryAt, jobErr := w.run(ctx, d)
	if w.OnFinish != nil {
		w.OnFinish(d.State == store.DeployRemoving, jobErr)
	}
	// Recording the outcome must survive a cancelled ctx (shutdown mid-job).
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.Store.FinishDeployment(fctx, d, jobErr, retryAt, w.Now()); err != nil {
		return true, fmt.Errorf("finish deployment %d: %w", d.ID, err)
	}
	return true, nil
}

func newToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// run does one job and returns its error and, on failure, when to retry it.
func (w *Worker) run(ctx context.Context, d *store.Deployment) (retryAt time.Time, err error) {
	servers, err := w.Store.ListServers(ctx, d.StackID)
	if err != nil {
		return w.retryAt(d), err
	}
	var sv *store.Server
	for i := range servers {
		if servers[i].ID == d.ServerID {
			sv = &servers[i]
		}
	}
	logLine := func(line string) { w.stackLog(ctx, d, line) }
	if sv == nil {
		return store.NeverRetry, store.ErrNotFound
	}
	t, err := Target(servers, sv.ID)
	if err != nil {
		logLine(fmt.Sprintf("Cannot reach %s: %v.", serverLabel(sv), err))
		return w.retryAt(d), err
	}
	keys := []terminal.DeployKey{{ID: d.KeyID, Name: d.KeyName, AuthorizedLine: d.PublicKey}}
	mode := terminal.DeployToLogin
	if d.UserPerKey {
		mode = terminal.DeployUserPerKey
	}
	removing := d.State == store.DeployRemoving
	kind := "deploy.add"
	if removing {
		kind = "deploy.remove"
	}
	jctx, cancel := context.WithTimeout(ctx, w.JobTimeout)
	defer cancel()
	// The deployer logs each step, its success ("Key X deployed to web-1 (10.0.0.5)")
	// and its failure ("Failed on web-1: …"); the worker adds what happens next.
	if removing {
		err = w.Deployer.Remove(jctx, t, keys, mode, logLine)
	} else {
		err = w.Deployer.Deploy(jctx, t, keys, mode, logLine)
	}
	if err == nil {
		w.audit(ctx, kind, d, sv, true, "")
		return time.Time{}, nil
	}
	if ctx.Err() != nil {
		// Shutting down: not the server's fault; another run retries soon.
		return w.Now(), fmt.Errorf("interrupted: %w", err)
	}
	msg := terminal.DeployMessage(err)
	w.Log.Warn("deployment failed", "stack", d.StackID, "server", sv.Name, "key", d.KeyName, "err", err)
	var hk *terminal.HostKeyError
	if errors.As(err, &hk) && errors.Is(err, terminal.ErrHostKeyChanged) && hk.Target != nil && hk.Target.Name == sv.Name {
		// Recorded so the stack page shows the server as blocked and an admin can
		// compare fingerprints; nothing connects to it until they re-pin.
		if perr := w.Store.SetPresentedKey(ctx, sv.ID, KeyLine(hk.Presented), w.Now()); perr != nil {
			w.Log.Error("record presented host key", "err", perr)
		}
		logLine(fmt.Sprintf("%s is blocked until an administrator compares and re-pins its host key.", sv.Name))
		w.audit(ctx, kind, d, sv, false, "host key changed")
		return store.NeverRetry, errors.New(msg)
	}
	retry := w.retryAt(d)
	if d.Attempts >= w.MaxAttempts {
		logLine(fmt.Sprintf("Gave up on key %s for %s after %d attempts; use Retry on the stack's settings.", d.KeyName, sv.Name, d.Attempts))
	} else {
		logLine(fmt.Sprintf("Will try key %s on %s again in %s.", d.KeyName, sv.Name, retry.Sub(w.Now()).Round(time.Second)))
	}
	w.audit(ctx, kind, d, sv, false, msg)
	return retry, errors.New(msg)
}

// retryAt is the exponential backoff with jitter for a job that just failed.
func (w *Worker) retryAt(d *store.Deployment) time.Time {
	delay := w.Backoff
	for i := 1; i < d.Attempts && delay < w.MaxBackoff; i++ {
		delay *= 2
	}
	delay = min(delay, w.MaxBackoff)
	jitter := time.Duration(mathrand.Int64N(int64(delay)/5+1)) - delay/10
	return w.Now().Add(delay + jitter)
}

func serverLabel(sv *store.Server) string {
	return fmt.Sprintf("%s (%s)", sv.Name, sv.Host)
}

func (w *Worker) stackLog(ctx context.Context, d *store.Deployment, line string) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.Store.AppendStackLog(lctx, &store.StackLogLine{
		StackID: d.StackID, ServerID: d.ServerID, At: w.Now(), Tab: store.LogDeploy, Line: line,
	}); err != nil {
		w.Log.Error("stack log", "err", err)
	}
}

func (w *Worker) audit(ctx context.Context, kind string, d *store.Deployment, sv *store.Server, ok bool, reason string) {
	detail := map[string]string{"key": d.KeyName, "stack": fmt.Sprint(d.StackID)}
	if reason != "" {
		detail["reason"] = reason
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.Store.AppendEvent(actx, &store.Event{
		At: w.Now(), Kind: kind, ActorName: "shellgate", OK: ok, Target: serverLabel(sv), Detail: detail,
	}); err != nil {
		w.Log.Error("audit event not written", "kind", kind, "err", err)
	}
}
