package terminal

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config tunes a Manager; the zero value gives the documented defaults.
type Config struct {
	Dialer      Dialer      // default &net.Dialer{}
	DialOptions DialOptions // timeouts, keepalive, trace

	Window     int           // unacked output per session before reading pauses; default DefaultWindow
	Grace      time.Duration // how long a detached session waits for resume; default 60s
	MaxPerUser int           // live sessions per user (detached ones count); default 10
	MaxTotal   int           // live sessions in the process, all users; default 1000
	// MaxPendingPerUser bounds a user's sockets upgraded but not yet opened
	// (no first message yet; see Admit); default 4.
	MaxPendingPerUser int

	FirstMessageTimeout time.Duration // open/resume must arrive within; default 10s
	PingInterval        time.Duration // server pings; default 25s
	PongWait            time.Duration // read deadline, reset by any frame or pong; default 60s
	WriteTimeout        time.Duration // per frame; default 10s

	Logger *slog.Logger // default slog.Default(); terminal content is never logged
}

func (c Config) withDefaults() Config {
	if c.Dialer == nil {
		c.Dialer = &net.Dialer{}
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Grace <= 0 {
		c.Grace = 60 * time.Second
	}
	if c.MaxPerUser <= 0 {
		c.MaxPerUser = 10
	}
	if c.MaxTotal <= 0 {
		// Each session holds up to Window (1 MiB) of output: 1 GiB at most.
		c.MaxTotal = 1000
	}
	if c.MaxPendingPerUser <= 0 {
		c.MaxPendingPerUser = 4
	}
	if c.FirstMessageTimeout <= 0 {
		c.FirstMessageTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PongWait <= 0 {
		c.PongWait = 60 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Manager is the registry of live terminal sessions of this process. Live
// sessions belong to the replica holding their SSH connection, so this is
// the one piece of state kept only in memory.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	closing  bool
	sessions map[string]*Session  // bound: cfg.MaxTotal (reserve)
	perUser  map[string]int       // live sessions plus opens in progress; bound: one key per user with a session
	reserved int                  // sum of perUser; at most cfg.MaxTotal
	pending  map[string]int       // sockets admitted, first message not yet read; bound: cfg.MaxPendingPerUser per user
	bridges  map[*bridge]struct{} // bound: one per open terminal socket (HTTP connections are capped)
	closers  []func()             // run by Shutdown (the file connection pool)
	wg       sync.WaitGroup       // session goroutines and Serve calls
}

// NewManager returns an empty registry.
func NewManager(cfg Config) *Manager {
	cfg = cfg.withDefaults()
	return &Manager{
		cfg:      cfg,
		log:      cfg.Logger,
		sessions: make(map[string]*Session),
		perUser:  make(map[string]int),
		pending:  make(map[string]int),
		bridges:  make(map[*bridge]struct{}),
	}
}

// Sessions lists live sessions, oldest first, for the admin page.
func (m *Manager) Sessions() []SessionInfo {
	m.mu.Lock()
	list := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		list = append(list, s)
	}
	m.mu.Unlock()
	infos := make([]SessionInfo, len(list))
	for i, s := range list {
		infos[i] = s.Info()
	}
	slices.SortFunc(infos, func(a, b SessionInfo) int { return a.Started.Compare(b.Started) })
	return infos
}

// ClientFor returns the SSH connection of the newest live session of
// userID to serverKey (the OpenMessage.Server its Hooks.Open accepted), or nil. The connection stays the
// session's: borrowers must not close it, and it closes when the session ends.
func (m *Manager) ClientFor(userID, serverKey string) *ssh.Client {
	if serverKey == "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *Session
	for _, s := range m.sessions {
		if s.userID != userID || s.server != serverKey || s.ctx.Err() != nil {
			continue
		}
		if best == nil || s.started.After(best.started) {
			best = s
		}
	}
	if best == nil {
		return nil
	}
	return best.client
}

// onShutdown registers f to run when Shutdown starts.
func (m *Manager) onShutdown(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closers = append(m.closers, f)
}

// Terminate ends a session for an administrator: its socket closes with
// CloseTerminated and OnEnd receives an error wrapping ErrTerminated and
// the reason.
func (m *Manager) Terminate(id, reason string) error {
	m.mu.Lock()
	s := m.sessions[id]
	m.mu.Unlock()
	if s == nil {
		return ErrSessionNotFound
	}
	s.Close(fmt.Errorf("%w: %s", ErrTerminated, reason))
	<-s.done
	return nil
}

// Shutdown ends every session and socket (http.Server.Shutdown does not
// know about hijacked connections) and waits for them, or for ctx.
// Sockets close with CloseGoingAway. New Serve calls fail with ErrShutdown.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	sessions := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		sessions = append(sessions, s)
	}
	bridges := make([]*bridge, 0, len(m.bridges))
	for b := range m.bridges {
		bridges = append(bridges, b)
	}
	closers := m.closers
	m.mu.Unlock()
	for _, f := range closers {
		f()
	}
	for _, b := range bridges {
		b.cancel(ErrShutdown)
	}
	for _, s := range sessions {
		s.Close(ErrShutdown)
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (m *Manager) addBridge(b *bridge) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return false
	}
	m.bridges[b] = struct{}{}
	m.wg.Add(1)
	return true
}

func (m *Manager) removeBridge(b *bridge) {
	m.mu.Lock()
	delete(m.bridges, b)
	m.mu.Unlock()
	m.wg.Done()
}

// Admit counts a socket of user about to be upgraded, before the upgrade:
// each one costs a connection and a goroutine until its first message (or
// FirstMessageTimeout). It fails with ErrTooManyPending beyond
// Config.MaxPendingPerUser; otherwise pass release as Hooks.Admitted (it is
// safe to call more than once).
func (m *Manager) Admit(user string) (release func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending[user] >= m.cfg.MaxPendingPerUser {
		return nil, fmt.Errorf("%w (limit %d)", ErrTooManyPending, m.cfg.MaxPendingPerUser)
	}
	m.pending[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.pending[user]--; m.pending[user] <= 0 {
				delete(m.pending, user)
			}
		})
	}, nil
}

// reserve claims a session slot for user before dialing, so concurrent
// opens cannot exceed the cap.
func (m *Manager) reserve(user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return ErrShutdown
	}
	if m.perUser[user] >= m.cfg.MaxPerUser {
		return fmt.Errorf("%w (limit %d)", ErrTooManySessions, m.cfg.MaxPerUser)
	}
	if m.reserved >= m.cfg.MaxTotal {
		return fmt.Errorf("%w (limit %d on this server)", ErrTooManySessions, m.cfg.MaxTotal)
	}
	m.perUser[user]++
	m.reserved++
	return nil
}

func (m *Manager) release(user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserved--
	if m.perUser[user]--; m.perUser[user] <= 0 {
		delete(m.perUser, user)
	}
}

// register adds a started session (its slot already reserved) and runs its
// goroutines. It fails, and the caller closes the session, during shutdown.
func (m *Manager) register(s *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return ErrShutdown
	}
	m.sessions[s.id] = s
	m.wg.Add(3)
	go func() { defer m.wg.Done(); s.pump() }()
	go func() { defer m.wg.Done(); s.resizer() }()
	// A failed stdin write means the channel is closing: the pump sees the
	// end and records why, so the error itself is not the cause.
	go func() { defer m.wg.Done(); s.input.run(s.ctx) }()
	return nil
}

// remove drops a finished session and frees its slot.
func (m *Manager) remove(s *Session) {
	m.mu.Lock()
	_, ok := m.sessions[s.id]
	delete(m.sessions, s.id)
	m.mu.Unlock()
	if ok {
		m.release(s.userID)
	}
}

func (m *Manager) lookup(id string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[id]
}

// randomID is 130 bits from crypto/rand, base32: fine for ids and, doubled,
// for resume tokens.
func randomID() string { return rand.Text() }
