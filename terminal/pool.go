package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrNoKeyAuth means the file panel has no connection to borrow and the
// person's keys did not get in: files cannot ask for a password over plain
// HTTP, so the person opens a terminal first (its connection is then
// borrowed) or attaches a key shellgate holds.
var ErrNoKeyAuth = errors.New("no usable key for file access")

// PoolKey identifies one pooled connection: one per user × server.
type PoolKey struct {
	UserID string // Hooks.UserID of the person's terminals
	Server string // OpenMessage.Server of the person's terminals
}

// PoolConfig tunes a Pool; the zero value gives the documented defaults.
type PoolConfig struct {
	Idle        time.Duration // close a connection this long after its last release; default 2 min
	MaxConns    int           // pooled connections at most; when full, an idle one is closed, else Acquire fails with ErrTooManySessions; default 256
	Dialer      Dialer        // default &net.Dialer{} (through Manager's config)
	DialOptions DialOptions
	Files       FilesOptions
	Logger      *slog.Logger

	// OrphanAge is how old a temporary upload file must be before the sweep
	// removes it (no upload can still be writing it); default 24 h.
	OrphanAge time.Duration
	// SweepEvery is how often one folder of one server is swept at most;
	// default 1 h. Negative turns the sweep off.
	SweepEvery time.Duration
}

// maxSweepMarks bounds the Pool's memory of swept folders; when full, marks
// older than SweepEvery are dropped, and if none is, the sweep is skipped.
const maxSweepMarks = 4096

// Pool holds the SSH connections of the file panel, one per user × server,
// with a *Files on each. A connection is, in order of preference: the one
// already pooled; the connection of a live terminal session of the same
// person to the same server (borrowed, so servers that need a password or
// a one-time code work once the terminal is open); or a new one dialed
// with the person's keys only (no one can be asked anything over HTTP).
//
// Connections are closed idle after PoolConfig.Idle, when they die (the
// next Acquire dials again) and when the Manager shuts down. Borrowed
// connections are never closed by the pool, only its SFTP sessions.
type Pool struct {
	m   *Manager
	cfg PoolConfig
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	entries map[PoolKey]*poolEntry // bound: one per user × server in use, closed idle after cfg.Idle

	sweepMu sync.Mutex
	swept   map[sweepMark]time.Time // bound: maxSweepMarks
	sweeps  sync.WaitGroup
}

// sweepMark is one folder of one server.
type sweepMark struct{ server, dir string }

type poolEntry struct {
	key    PoolKey
	client *ssh.Client
	owned  bool // dialed by the pool: closed by the pool
	files  *Files
	refs   int
	timer  *time.Timer // idle timer; guarded by Pool.mu
	dead   bool

	closeOnce sync.Once
}

// NewPool returns an empty pool that borrows m's sessions and closes with m.
func NewPool(m *Manager, cfg PoolConfig) *Pool {
	if cfg.Idle <= 0 {
		cfg.Idle = 2 * time.Minute
	}
	if cfg.Dialer == nil {
		cfg.Dialer = m.cfg.Dialer
	}
	if cfg.Logger == nil {
		cfg.Logger = m.log
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	if cfg.OrphanAge <= 0 {
		cfg.OrphanAge = 24 * time.Hour
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = time.Hour
	}
	if cfg.DialOptions.Observe == nil {
		cfg.DialOptions.Observe = m.cfg.DialOptions.Observe
	}
	p := &Pool{m: m, cfg: cfg, log: cfg.Logger, entries: make(map[PoolKey]*poolEntry), swept: make(map[sweepMark]time.Time)}
	m.onShutdown(p.Close)
	return p
}

// Acquire returns the Files of key's connection and a release function the
// caller must call once when done with it. dial is called only when a new
// connection has to be made; it returns the target and the person's keys
// (Auth.Prompter and Locked keys are ignored: nobody can be asked).
func (p *Pool) Acquire(ctx context.Context, key PoolKey, dial func(context.Context) (*Target, Auth, error)) (*Files, func(), error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil, ErrShutdown
	}
	if e := p.entries[key]; e != nil && !e.dead {
		f := p.hold(e)
		p.mu.Unlock()
		return f, p.releaser(e), nil
	}
	evicted, err := p.makeRoom()
	p.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
	if err != nil {
		return nil, nil, err
	}

	client, owned := p.m.ClientFor(key.UserID, key.Server), false
	if client == nil {
		t, auth, err := dial(ctx)
		if err != nil {
			return nil, nil, err
		}
		if len(auth.Signers) == 0 {
			return nil, nil, ErrNoKeyAuth
		}
		auth = Auth{Signers: auth.Signers}
		// Host keys were pinned by an administrator; unknown ones are refused.
		c, err := Dial(ctx, p.cfg.Dialer, t, auth, nil, p.cfg.DialOptions)
		if err != nil {
			if errors.Is(err, ErrAuthFailed) {
				return nil, nil, fmt.Errorf("%w: %w", ErrNoKeyAuth, err)
			}
			return nil, nil, err
		}
		client, owned = c, true
	}
	files, err := NewFiles(client, p.cfg.Files)
	if err != nil {
		if owned {
			client.Close()
		}
		return nil, nil, err
	}
	// Each folder an upload goes to is swept too (set before files is shared).
	files.beforeUpload = func(dir string) { p.sweep(key.Server, files, dir) }
	e := &poolEntry{key: key, client: client, owned: owned, files: files}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		e.close()
		return nil, nil, ErrShutdown
	}
	if old := p.entries[key]; old != nil && !old.dead {
		// Another request connected meanwhile: use that one.
		f := p.hold(old)
		p.mu.Unlock()
		e.close()
		return f, p.releaser(old), nil
	}
	p.entries[key] = e
	f := p.hold(e)
	p.mu.Unlock()
	go p.watch(e)
	// A new SFTP session: sweep the login's home of orphaned temporary files.
	p.sweep(key.Server, files, files.Home())
	return f, p.releaser(e), nil
}

// sweep removes orphaned temporary uploads from dir in the background, at
// most once per server and folder per cfg.SweepEvery.
func (p *Pool) sweep(server string, f *Files, dir string) {
	if p.cfg.SweepEvery < 0 {
		return
	}
	now := time.Now()
	mark := sweepMark{server, dir}
	p.sweepMu.Lock()
	if last, ok := p.swept[mark]; ok && now.Sub(last) < p.cfg.SweepEvery {
		p.sweepMu.Unlock()
		return
	}
	if len(p.swept) >= maxSweepMarks {
		for m, at := range p.swept {
			if now.Sub(at) >= p.cfg.SweepEvery {
				delete(p.swept, m)
			}
		}
	}
	if len(p.swept) >= maxSweepMarks {
		p.sweepMu.Unlock()
		return
	}
	p.swept[mark] = now
	p.sweepMu.Unlock()
	p.sweeps.Add(1)
	go func() {
		defer p.sweeps.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		removed, err := f.SweepOrphans(ctx, dir, p.cfg.OrphanAge, now)
		for _, path := range removed {
			p.log.Info("removed an orphaned temporary upload", "server", server, "path", path)
		}
		if err != nil {
			p.log.Debug("orphan sweep", "server", server, "dir", dir, "err", err)
		}
	}()
}

// makeRoom keeps the pool within cfg.MaxConns: when full it takes out an
// idle connection (the caller closes it), or fails when every one is in use.
// p.mu is held.
func (p *Pool) makeRoom() (*poolEntry, error) {
	if len(p.entries) < p.cfg.MaxConns {
		return nil, nil
	}
	for k, e := range p.entries {
		if e.refs == 0 {
			delete(p.entries, k)
			e.dead = true
			if e.timer != nil {
				e.timer.Stop()
				e.timer = nil
			}
			return e, nil
		}
	}
	return nil, fmt.Errorf("%w: %d file connections in use", ErrTooManySessions, p.cfg.MaxConns)
}

// hold takes a reference; p.mu is held.
func (p *Pool) hold(e *poolEntry) *Files {
	e.refs++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	return e.files
}

func (p *Pool) releaser(e *poolEntry) func() {
	var once sync.Once
	return func() { once.Do(func() { p.release(e) }) }
}

func (p *Pool) release(e *poolEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.refs--
	if e.refs > 0 {
		return
	}
	if e.dead || p.closed {
		go e.close()
		return
	}
	e.timer = time.AfterFunc(p.cfg.Idle, func() { p.expire(e) })
}

// expire closes e if nobody took it again since its timer started.
func (p *Pool) expire(e *poolEntry) {
	p.mu.Lock()
	if e.refs > 0 || p.entries[e.key] != e {
		p.mu.Unlock()
		return
	}
	delete(p.entries, e.key)
	e.dead = true
	p.mu.Unlock()
	e.close()
}

// watch drops e when its connection ends; transfers in progress fail with
// ErrConnectionLost and the next Acquire dials again.
func (p *Pool) watch(e *poolEntry) {
	_ = e.client.Wait()
	p.mu.Lock()
	e.dead = true
	if p.entries[e.key] == e {
		delete(p.entries, e.key)
	}
	idle := e.refs == 0
	p.mu.Unlock()
	if idle {
		e.close()
	}
}

// close closes the SFTP sessions and, when the pool dialed it, the
// connection. Safe to call more than once.
func (e *poolEntry) close() {
	e.closeOnce.Do(func() {
		_ = e.files.Close()
		if e.owned {
			_ = e.client.Close()
		}
	})
}

// Discard takes the connection whose Files is f out of the pool: the next
// Acquire dials again, and f's SFTP sessions (and the connection, when the
// pool dialed it) close once the last holder releases it. Used after a
// transfer was cut mid-stream, whose requests may still be outstanding.
func (p *Pool) Discard(f *Files) {
	p.mu.Lock()
	var victim *poolEntry
	for k, e := range p.entries {
		if e.files == f {
			victim = e
			delete(p.entries, k)
			break
		}
	}
	if victim == nil {
		p.mu.Unlock()
		return
	}
	victim.dead = true
	if victim.timer != nil {
		victim.timer.Stop()
		victim.timer = nil
	}
	idle := victim.refs == 0
	p.mu.Unlock()
	if idle {
		victim.close()
	}
}

// Len is the number of pooled connections (for tests and the admin page).
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// Close closes every pooled connection; later Acquires fail with
// ErrShutdown. Transfers in progress fail.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	entries := p.entries
	p.entries = map[PoolKey]*poolEntry{}
	for _, e := range entries {
		e.dead = true
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	p.mu.Unlock()
	for _, e := range entries {
		e.close()
	}
	p.sweeps.Wait() // their SFTP sessions are closed: they end at once
}
