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
	Dialer      Dialer        // default &net.Dialer{} (through Manager's config)
	DialOptions DialOptions
	Files       FilesOptions
	Logger      *slog.Logger
}

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
	entries map[PoolKey]*poolEntry
}

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
	if cfg.DialOptions.Observe == nil {
		cfg.DialOptions.Observe = m.cfg.DialOptions.Observe
	}
	p := &Pool{m: m, cfg: cfg, log: cfg.Logger, entries: make(map[PoolKey]*poolEntry)}
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
	p.mu.Unlock()

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
	return f, p.releaser(e), nil
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
}
