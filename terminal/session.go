package terminal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Session is one PTY shell on one SSH server. It outlives the WebSockets
// that show it: when a socket drops, the session stays detached for a grace
// period and a new socket can resume it.
//
// Output flows through a ring that is both the flow-control window and the
// resume buffer: the pump reads the SSH channel straight into the ring's free
// space, the attached socket's writer copies out of it, and acks free it.
// When the ring is full (window bytes unacked) the pump stops reading, the
// SSH channel window closes, and the remote process blocks in write(2).
type Session struct {
	id       string
	token    string
	userID   string
	target   *Target
	server   string // OpenMessage.Server, as validated by Hooks.Open
	started  time.Time
	client   *ssh.Client
	ssh      *ssh.Session
	stdout   io.Reader
	recorder io.Writer
	input    *inputQueue // keystrokes and pastes on their way to stdin
	onEnd    func(SessionInfo, int, int64, int64, error)
	grace    time.Duration
	m        *Manager

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the session has fully ended

	resizeKick chan struct{}

	stopGuard atomic.Pointer[func()] // ends the access watch (Hooks.Guard)

	mu       sync.Mutex
	ring     []byte // grows on demand up to window bytes
	window   int
	start    int64         // offset of the oldest byte kept (everything before is acked)
	end      int64         // offset after the newest byte: total output so far
	changed  chan struct{} // closed and replaced whenever start, end or state change
	finished bool          // output complete and exit known
	exit     error         // why it ended, once finished
	att      *bridge       // the socket showing the session; nil when detached
	detachN  int           // bumps on every attach/detach, to void stale grace timers
	cols     int
	rows     int
}

// SessionInfo describes a live session for audit hooks and admin pages.
type SessionInfo struct {
	ID       string
	UserID   string
	Server   string // Target.Name
	Addr     string // host:port
	User     string // remote login
	Started  time.Time
	BytesIn  int64 // keystrokes and pastes sent to the server
	BytesOut int64 // terminal output received
	Attached bool  // a browser is showing it right now
	// Local is shellgate's end of the SSH connection: the "from … port …" the
	// server logs for this login (a jump host's, through a jump).
	Local string
}

const (
	readChunk      = 32 << 10              // largest single read from the SSH channel
	initialRing    = 64 << 10              // ring starts small; most sessions never need the full window
	resizeInterval = 50 * time.Millisecond // window-change at most this often
)

// startSession opens a PTY shell on client. On error the caller still owns client.
func startSession(client *ssh.Client, t *Target, userID string, cols, rows int, cfg sessionConfig) (*Session, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("new session on %s: %w", t, err)
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty("xterm-256color", rows, cols, modes); err != nil {
		sess.Close()
		return nil, fmt.Errorf("pty on %s: %w", t, err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	// With a PTY the remote merges stderr into the terminal; the extended
	// data stream stays empty and x/crypto discards it.
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.Shell(); err != nil {
		sess.Close()
		return nil, fmt.Errorf("shell on %s: %w", t, err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Session{
		id:         randomID(),
		token:      randomID() + randomID(),
		userID:     userID,
		target:     t,
		server:     cfg.serverKey,
		started:    time.Now(),
		client:     client,
		ssh:        sess,
		stdout:     stdout,
		recorder:   cfg.recorder,
		onEnd:      cfg.onEnd,
		grace:      cfg.grace,
		m:          cfg.m,
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		resizeKick: make(chan struct{}, 1),
		window:     cfg.window,
		ring:       make([]byte, min(initialRing, cfg.window)),
		changed:    make(chan struct{}),
		cols:       cols,
		rows:       rows,
	}
	s.input = newInputQueue(stdin, cfg.input, InputWindow, func() {
		// Wakes the socket's writer, which returns input credit (inputack).
		s.mu.Lock()
		s.broadcast()
		s.mu.Unlock()
	})
	s.recordSize(cols, rows)
	// Closing the client is what unblocks the pump's Read and ends the
	// session whatever the cause.
	context.AfterFunc(ctx, func() { client.Close() })
	return s, nil
}

type sessionConfig struct {
	window   int
	grace    time.Duration
	recorder io.Writer
	input    io.Writer
	onEnd    func(SessionInfo, int, int64, int64, error)
	m        *Manager

	serverKey string // OpenMessage.Server, as validated by Hooks.Open
}

// recordSize tells a recorder that wants sizes (asciicast "r" events) the
// size the remote PTY now has.
func (s *Session) recordSize(cols, rows int) {
	if r, ok := s.recorder.(interface{ Resize(cols, rows int) }); ok {
		r.Resize(cols, rows)
	}
}

// ID names the session in resume messages and admin pages.
func (s *Session) ID() string { return s.id }

// Done is closed once the session has ended and its resources are released.
func (s *Session) Done() <-chan struct{} { return s.done }

// Info is a snapshot for listings and audit.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SessionInfo{
		ID: s.id, UserID: s.userID, Server: s.target.Name, Addr: s.target.Addr(), User: s.target.User,
		Started: s.started, BytesIn: s.inputWritten(), BytesOut: s.end, Attached: s.att != nil,
		Local: s.client.LocalAddr().String(),
	}
}

// Close ends the session with cause (the first cause wins) and kicks the
// attached socket, which closes with CloseCode(cause).
func (s *Session) Close(cause error) {
	s.cancel(cause)
	s.mu.Lock()
	att := s.att
	s.mu.Unlock()
	if att != nil {
		att.cancel(context.Cause(s.ctx))
	}
}

// pushInput queues input for the remote shell without blocking; its own
// goroutine writes it (see inputQueue). It fails with ErrProtocol when the
// browser exceeds its input credit. Keystrokes are never dropped.
func (s *Session) pushInput(p []byte) error { return s.input.push(p) }

func (s *Session) inputWritten() int64 {
	_, w := s.input.offsets()
	return w
}

// Guard watches whether the person behind a session may keep it: a sign-out,
// a password change, a removal from the stack… (Hooks.Guard).
type Guard interface {
	// Watch calls revoked at most once, from any goroutine, with the reason
	// in plain words ("you signed out"), as soon as access has ended. It
	// checks once right away. stop ends the watch.
	Watch(revoked func(reason string)) (stop func())
}

// watch ends the session with a RevokedError when g says access ended.
func (s *Session) watch(g Guard) {
	stop := g.Watch(func(reason string) { s.Close(&RevokedError{Reason: reason}) })
	s.stopGuard.Store(&stop)
	if s.ctx.Err() != nil { // ended while we subscribed: finish may have run already
		stop()
	}
}

// Resize records the browser's size; the resizer applies the latest one at
// most every resizeInterval, so a window drag does not flood the server.
func (s *Session) Resize(cols, rows int) {
	s.mu.Lock()
	s.cols, s.rows = cols, rows
	s.mu.Unlock()
	select {
	case s.resizeKick <- struct{}{}:
	default: // a kick is pending; it will pick up the latest size
	}
}

func (s *Session) resizer() {
	timer := time.NewTimer(resizeInterval)
	timer.Stop()
	defer timer.Stop()
	s.mu.Lock()
	applied := [2]int{s.cols, s.rows}
	s.mu.Unlock()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.resizeKick:
		}
		s.mu.Lock()
		size := [2]int{s.cols, s.rows}
		s.mu.Unlock()
		if size == applied {
			continue
		}
		if err := s.ssh.WindowChange(size[1], size[0]); err != nil {
			continue // the session is ending; the pump will notice
		}
		applied = size
		s.recordSize(size[0], size[1])
		timer.Reset(resizeInterval)
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// broadcast wakes everyone waiting on s.changed. Call with s.mu held.
func (s *Session) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// pump moves output from the SSH channel into the ring until EOF, then
// records how the session ended.
func (s *Session) pump() {
	for {
		region, ok := s.freeRegion()
		if !ok {
			break
		}
		n, err := s.stdout.Read(region)
		if n > 0 {
			s.mu.Lock()
			s.end += int64(n)
			s.broadcast()
			s.mu.Unlock()
			if s.recorder != nil {
				s.recorder.Write(region[:n]) // best effort; a failing recorder must not kill the shell
			}
		}
		if err != nil {
			break
		}
	}
	s.finish(s.ssh.Wait())
}

// freeRegion waits until the window allows reading and returns the free,
// contiguous part of the ring to read into. Only the pump writes into the
// ring, and only outside [start, end), so it may fill the region unlocked.
func (s *Session) freeRegion() ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.end-s.start >= int64(s.window) {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
			s.mu.Lock()
			return nil, false
		}
		s.mu.Lock()
	}
	used := int(s.end - s.start)
	if len(s.ring)-used < readChunk && len(s.ring) < s.window {
		s.grow(min(s.window, 2*len(s.ring)))
	}
	l := len(s.ring)
	w := int(s.end % int64(l))
	n := min(l-w, l-used, readChunk)
	return s.ring[w : w+n], true
}

// grow moves the kept bytes into a bigger ring. Call with s.mu held.
func (s *Session) grow(size int) {
	ring := make([]byte, size)
	for off := s.start; off < s.end; {
		i := int(off % int64(len(s.ring)))
		n := copy(ring[int(off%int64(size)):], s.ring[i:min(len(s.ring), i+int(s.end-off))])
		off += int64(n)
	}
	s.ring = ring
}

// readOutput copies output from offset into p. With nothing to copy it
// returns a channel that closes when that may change, or done once the
// session finished and everything was delivered.
func (s *Session) readOutput(from int64, p []byte) (n int, changed <-chan struct{}, done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from < s.start || from > s.end {
		return 0, nil, false, fmt.Errorf("%w: offset %d outside kept output [%d, %d]", ErrSessionNotFound, from, s.start, s.end)
	}
	for from < s.end && n < len(p) {
		i := int(from % int64(len(s.ring)))
		c := copy(p[n:], s.ring[i:min(len(s.ring), i+int(s.end-from))])
		n += c
		from += int64(c)
	}
	if n > 0 {
		return n, nil, false, nil
	}
	return 0, s.changed, s.finished, nil
}

// ack frees output before offset.
func (s *Session) ack(offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offset > s.start && offset <= s.end {
		s.start = offset
		s.broadcast()
	}
}

// attach makes b the session's socket, replaying from offset. Bytes before
// offset count as acked. A socket already attached is told it was taken over.
func (s *Session) attach(b *bridge, offset int64) error {
	s.mu.Lock()
	if s.finished || s.ctx.Err() != nil {
		s.mu.Unlock()
		return ErrSessionNotFound
	}
	if offset < s.start || offset > s.end {
		s.mu.Unlock()
		return fmt.Errorf("%w: offset %d outside kept output [%d, %d]", ErrSessionNotFound, offset, s.start, s.end)
	}
	if offset > s.start {
		s.start = offset
		s.broadcast()
	}
	prev := s.att
	s.att = b
	s.detachN++
	s.mu.Unlock()
	if prev != nil && prev != b {
		prev.cancel(ErrTakenOver)
	}
	return nil
}

// detach forgets b if it is still the attached socket and starts the grace
// period after which an unclaimed session ends.
func (s *Session) detach(b *bridge) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.att != b || s.finished {
		return
	}
	s.att = nil
	s.detachN++
	n := s.detachN
	time.AfterFunc(s.grace, func() {
		s.mu.Lock()
		stale := s.detachN != n
		s.mu.Unlock()
		if !stale {
			s.Close(ErrDetachExpired)
		}
	})
}

// closeIfAttached ends the session with cause if b is still its socket (a
// socket taken over must not end the session it lost).
func (s *Session) closeIfAttached(b *bridge, cause error) {
	s.mu.Lock()
	mine := s.att == b
	s.mu.Unlock()
	if mine {
		s.Close(cause)
	}
}

// finish runs once, on the pump goroutine, after the output ended.
func (s *Session) finish(waitErr error) {
	var cause error
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case s.ctx.Err() != nil:
		cause = context.Cause(s.ctx)
	case waitErr == nil:
		cause = &ExitError{Target: s.target}
	case errors.As(waitErr, &exit):
		cause = &ExitError{Target: s.target, Status: exit.ExitStatus(), Signal: exit.Signal()}
	case errors.As(waitErr, &missing):
		cause = fmt.Errorf("%w: the channel closed without an exit status", ErrConnectionLost)
	default:
		cause = fmt.Errorf("%w: %w", ErrConnectionLost, waitErr)
	}
	if s.target.Agent != 0 && errors.Is(cause, ErrConnectionLost) {
		cause = agentLost(s.client, s.target, cause)
	}
	s.cancel(cause)
	cause = context.Cause(s.ctx) // first cause wins
	s.client.Close()
	if stop := s.stopGuard.Swap(nil); stop != nil {
		(*stop)()
	}
	// Deregister and audit before the browser hears "closed", so whoever
	// reacts to the close sees a consistent registry and audit trail.
	if s.m != nil {
		s.m.remove(s)
	}
	if s.onEnd != nil {
		status := -1
		var ee *ExitError
		if errors.As(cause, &ee) {
			status = ee.Status
		}
		info := s.Info()
		s.onEnd(info, status, info.BytesIn, info.BytesOut, cause)
	}
	s.mu.Lock()
	s.finished = true
	s.exit = cause
	s.detachN++ // voids a pending grace timer
	s.broadcast()
	s.mu.Unlock()
	close(s.done)
}

// endCause is why the session ended, once finished.
func (s *Session) endCause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exit
}
