package terminal

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"
)

// Hooks is what the web layer tells the bridge about one socket.
type Hooks struct {
	UserID string // who is on the other end (from the dashboard session)
	// Open validates the ticket in the open message (single-use, bound to
	// UserID and msg.Server; return an error wrapping ErrTicket otherwise)
	// and returns what to dial. If the returned Auth has no Prompter, the
	// bridge relays password, keyboard-interactive and passphrase prompts
	// over the socket. It must return when ctx is done: Serve waits for it.
	Open func(ctx context.Context, msg OpenMessage) (*Target, Auth, error)
	// HostKeys pins keys. For an unknown key the bridge first asks the
	// person over the socket; only if they accept is HostKeys.Unknown
	// called, to pin (returning false still refuses). Nil refuses unknown
	// keys without asking.
	HostKeys HostKeyPolicy
	OnStart  func(info SessionInfo) // the shell started
	// OnEnd runs once when the session ends (not when a socket detaches):
	// exitStatus is -1 unless the shell exited; err is an *ExitError for a
	// normal end.
	OnEnd    func(info SessionInfo, exitStatus int, bytesIn, bytesOut int64, err error)
	Recorder io.Writer // optional copy of all output; if it has Resize(cols, rows) it gets the PTY sizes too
	// InputRecorder, optional, gets a copy of everything typed or pasted. It
	// captures passwords typed at prompts: only set it when asked to.
	InputRecorder io.Writer
	// Guard, optional, is called once the shell started (after
	// authentication, so it can know which key got in); the session then ends
	// with a RevokedError (close CloseRevoked) as soon as the Guard says
	// access ended. Every revocation path reaches live sessions through it.
	Guard func() Guard
	// Admitted, optional, is called once, when the socket's first message
	// arrived or the socket ended before it did: the caller counts sockets
	// not yet opened (Manager.Admit).
	Admitted func()
	// Trace, when set, receives this socket's ssh -v style dial lines
	// instead of Config.DialOptions.Trace (e.g. a per-stack debug log). It
	// never receives secrets; it is called while dialing and by keepalive,
	// so it must not block for long.
	Trace func(line string)
}

// bridge is one WebSocket showing (or about to show) one session.
type bridge struct {
	m   *Manager
	ws  *websocket.Conn
	h   Hooks
	cfg Config

	ctx    context.Context
	cancel context.CancelCauseFunc

	ctrl     chan Message  // control messages for the writer
	replies  chan Message  // the person's answer to a prompt or host key question
	asking   atomic.Bool   // a prompt or question is outstanding
	ready    chan struct{} // closed once sess is set
	cursor   atomic.Int64  // output offset sent on this socket (writer-owned)
	closing  atomic.Bool   // close frame sent: stop extending the read deadline
	inAcked  atomic.Int64  // input offset last returned to the browser (inputack)
	ctrlRate tokenBucket   // text frames the browser may still send (reader-owned)
	lastAck  int64         // highest ack offset on this socket (reader-owned)

	// sess is read by the writer without b.mu, so a stdin write blocked
	// under b.mu never stalls output.
	sess atomic.Pointer[Session]

	mu      sync.Mutex
	pending []byte // input typed while connecting; guarded with sess's first Store
	cols    int
	rows    int
}

// maxPending bounds input typed before the shell exists.
const maxPending = 64 << 10

// Serve runs the terminal protocol on ws until the session ends or the
// socket goes away. The caller upgraded ws (checking Origin); Serve owns it
// from then on: it is the only reader, it runs the only writer, and it
// closes ws before returning, after sending a close frame with
// CloseCode(cause) and, for anything but a normal end, an error message.
//
// Serve returns nil for the two normal ends: the remote shell exited
// (close 1000, status closed with exitStatus), or the browser went away —
// then the session stays detached for Config.Grace and can be resumed.
// Any other return value (ErrAuthFailed, ErrHostKeyChanged, ErrTicket,
// ErrTerminated, ErrShutdown, ErrProtocol, …) has already been reported to
// the browser; the caller only logs it. Cancelling ctx ends the socket
// like a shutdown (the session stays resumable).
func (m *Manager) Serve(parent context.Context, ws *websocket.Conn, h Hooks) error {
	// The socket's context keeps parent's values but not its cancellation:
	// a cancelled parent becomes ErrShutdown, so the browser gets 1001 and
	// the session stays resumable, instead of an anonymous "canceled".
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	defer cancel(nil)
	stop := context.AfterFunc(parent, func() { cancel(fmt.Errorf("%w: %w", ErrShutdown, context.Cause(parent))) })
	defer stop()
	b := &bridge{
		m: m, ws: ws, h: h, cfg: m.cfg,
		ctx: ctx, cancel: cancel,
		ctrl:    make(chan Message, 8),
		replies: make(chan Message, 1),
		ready:   make(chan struct{}),
	}
	if !m.addBridge(b) {
		b.cancel(ErrShutdown)
		b.writeClose(ErrShutdown)
		ws.Close()
		return ErrShutdown
	}
	defer m.removeBridge(b)

	if f := h.Admitted; f != nil {
		var once sync.Once
		b.h.Admitted = func() { once.Do(f) }
		defer b.h.Admitted() // no-op when the first message already called it
	}
	b.ctrlRate = newTokenBucket(ControlRate, ControlBurst, time.Now())
	ws.SetReadLimit(ReadLimit)
	ws.SetPongHandler(func(string) error { b.extendRead(); return nil })
	var wg sync.WaitGroup
	wg.Go(b.writeLoop)
	err := b.readLoop(&wg)
	b.cancel(err) // no-op when the writer or a session already set a cause
	wg.Wait()
	ws.Close()

	cause := context.Cause(ctx)
	if s := b.sess.Load(); s != nil {
		if errors.Is(cause, ErrClosedByBrowser) {
			// Nobody will resume it: the page that knew its id is gone.
			s.closeIfAttached(b, cause)
		} else {
			s.detach(b)
		}
	}
	var exit *ExitError
	if errors.As(cause, &exit) || errors.Is(cause, ErrClientGone) || errors.Is(cause, ErrClosedByBrowser) {
		return nil
	}
	return cause
}

func (b *bridge) extendRead() {
	if !b.closing.Load() {
		b.ws.SetReadDeadline(time.Now().Add(b.cfg.PongWait))
	}
}

// readLoop is the only reader. It handles each message inline: no
// goroutine per message.
func (b *bridge) readLoop(wg *sync.WaitGroup) error {
	b.ws.SetReadDeadline(time.Now().Add(b.cfg.FirstMessageTimeout))
	var buf []byte
	typ, data, err := b.read(&buf)
	if b.h.Admitted != nil {
		b.h.Admitted()
	}
	if err != nil {
		return err
	}
	if typ != websocket.TextMessage {
		return fmt.Errorf("%w: first message must be open or resume", ErrProtocol)
	}
	first, err := DecodeControl(data)
	if err != nil {
		return err
	}
	switch first := first.(type) {
	case *OpenMessage:
		b.cols, b.rows = first.Cols, first.Rows
		msg := *first
		wg.Go(func() {
			if err := b.open(msg); err != nil {
				b.cancel(err)
			}
		})
	case *ResumeMessage:
		if err := b.resume(first); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: first message must be open or resume, not %s", ErrProtocol, first.MessageType())
	}
	b.extendRead()
	for {
		typ, data, err := b.read(&buf)
		if err != nil {
			return err
		}
		b.extendRead()
		if typ == websocket.BinaryMessage {
			if err := b.input(data); err != nil {
				return err
			}
			continue
		}
		m, err := DecodeControl(data)
		if err != nil {
			return err
		}
		// An ack that moves the offset forward is paid for by our own output
		// frames; everything else (pings, resizes, repeated acks…) is rate-limited.
		if a, ok := m.(*AckMessage); !ok || a.Offset <= b.lastAck {
			if !b.ctrlRate.take(time.Now()) {
				return fmt.Errorf("%w: more than %d control messages a second", ErrProtocol, ControlRate)
			}
		} else {
			b.lastAck = a.Offset
		}
		if err := b.control(m); err != nil {
			return err
		}
	}
}

// read returns the next message in a reused buffer.
func (b *bridge) read(buf *[]byte) (int, []byte, error) {
	typ, r, err := b.ws.NextReader()
	if err != nil {
		return 0, nil, b.readErr(err)
	}
	*buf = (*buf)[:0]
	for {
		if len(*buf) == cap(*buf) {
			*buf = append(*buf, 0)[:len(*buf)]
		}
		n, err := r.Read((*buf)[len(*buf):cap(*buf)])
		*buf = (*buf)[:len(*buf)+n]
		if errors.Is(err, io.EOF) {
			return typ, *buf, nil
		}
		if err != nil {
			return 0, nil, b.readErr(err)
		}
	}
}

func (b *bridge) readErr(err error) error {
	if b.ctx.Err() != nil {
		return context.Cause(b.ctx) // we are closing; the read failed because of it
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return err
	}
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
		return fmt.Errorf("%w: %w", ErrClosedByBrowser, err)
	}
	return fmt.Errorf("%w: %w", ErrClientGone, err)
}

// input queues keystrokes for the session's stdin writer; it never blocks,
// so control messages behind a paste are read at once.
func (b *bridge) input(p []byte) error {
	if s := b.sess.Load(); s != nil {
		return s.pushInput(p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.sess.Load(); s != nil { // set while we waited for the lock
		return s.pushInput(p)
	}
	if len(b.pending)+len(p) > maxPending {
		return fmt.Errorf("%w: more than %d bytes typed before the session started", ErrProtocol, maxPending)
	}
	b.pending = append(b.pending, p...)
	return nil
}

func (b *bridge) control(m Message) error {
	switch m := m.(type) {
	case *AckMessage:
		s := b.sess.Load()
		if s == nil || m.Offset > b.cursor.Load() {
			return fmt.Errorf("%w: ack of %d beyond the %d bytes sent", ErrProtocol, m.Offset, b.cursor.Load())
		}
		s.ack(m.Offset)
	case *ResizeMessage:
		b.mu.Lock()
		b.cols, b.rows = m.Cols, m.Rows
		b.mu.Unlock()
		if s := b.sess.Load(); s != nil {
			s.Resize(m.Cols, m.Rows)
		}
	case *PingMessage:
		b.send(PongMessage{})
	case *AnswerMessage, *HostKeyAnswer:
		if !b.asking.Load() {
			return fmt.Errorf("%w: %s without a question", ErrProtocol, m.MessageType())
		}
		select {
		case b.replies <- m:
		default:
			return fmt.Errorf("%w: second %s to one question", ErrProtocol, m.MessageType())
		}
	default:
		return fmt.Errorf("%w: unexpected %s", ErrProtocol, m.MessageType())
	}
	return nil
}

// send queues a control message for the writer.
func (b *bridge) send(m Message) {
	select {
	case b.ctrl <- m:
	case <-b.ctx.Done():
	}
}

func (b *bridge) status(state, msg string) {
	b.send(StatusMessage{State: state, Message: msg})
}

// open dials, starts the shell and attaches this socket. It runs beside
// the read loop so answers to prompts can arrive while it waits.
func (b *bridge) open(msg OpenMessage) error {
	b.status(StateConnecting, "Connecting to "+msg.Server+"…")
	if b.h.Open == nil {
		return errors.New("terminal: Hooks.Open is nil")
	}
	t, auth, err := b.h.Open(b.ctx, msg)
	if err != nil {
		return err
	}
	if err := b.m.reserve(b.h.UserID); err != nil {
		return err
	}
	reserved := true
	defer func() {
		if reserved {
			b.m.release(b.h.UserID)
		}
	}()
	if auth.Prompter == nil {
		auth.Prompter = socketPrompter{b}
	}
	opts := b.cfg.DialOptions
	if b.h.Trace != nil {
		opts.Trace = b.h.Trace
	}
	client, err := Dial(b.ctx, b.cfg.Dialer, t, auth, askingPolicy{b}, opts)
	if err != nil {
		var hk *HostKeyError
		if errors.As(err, &hk) && errors.Is(err, ErrHostKeyChanged) {
			b.send(HostKeyMessage{Fingerprint: hk.Fingerprint, KeyType: hk.Presented.Type(), Changed: true})
		}
		return err
	}
	b.mu.Lock()
	cols, rows := b.cols, b.rows
	b.mu.Unlock()
	s, err := startSession(client, t, b.h.UserID, cols, rows, sessionConfig{
		window: b.cfg.Window, grace: b.cfg.Grace, recorder: b.h.Recorder, input: b.h.InputRecorder, onEnd: b.h.OnEnd, m: b.m,
		// Open has checked the ticket binds msg.Server to this user.
		serverKey: msg.Server,
	})
	if err != nil {
		client.Close()
		return err
	}
	if err := b.m.register(s); err != nil {
		s.Close(err)
		client.Close()
		return err
	}
	reserved = false // the registered session holds the slot now
	if b.ctx.Err() != nil {
		// The browser left while we dialed; it never learnt the id, so
		// nobody could resume this session.
		s.Close(context.Cause(b.ctx))
		return nil
	}
	b.m.log.Info("terminal session started", "session", s.id, "user", b.h.UserID, "server", t.Name, "addr", t.Addr())
	if b.h.OnStart != nil {
		b.h.OnStart(s.Info())
	}
	if b.h.Guard != nil {
		if g := b.h.Guard(); g != nil {
			s.watch(g)
		}
	}
	// Queued before the session is visible to the writer, so the browser
	// learns the id before the first output byte.
	b.send(b.sessionMessage(s))
	b.status(StateConnected, "")
	if err := s.attach(b, 0); err != nil {
		return err
	}
	b.setSession(s)
	return nil
}

// setSession makes s visible to reader and writer and flushes input typed
// while connecting, holding b.mu so later keystrokes cannot overtake it.
func (b *bridge) setSession(s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) > 0 {
		s.pushInput(b.pending) // at most maxPending, far below InputWindow
		b.pending = nil
	}
	b.sess.Store(s)
	close(b.ready)
}

func (b *bridge) resume(m *ResumeMessage) error {
	s := b.m.lookup(m.Session)
	// One error for every mismatch: a guesser learns nothing.
	if s == nil || s.userID != b.h.UserID || subtle.ConstantTimeCompare([]byte(s.token), []byte(m.Token)) != 1 {
		return ErrSessionNotFound
	}
	b.cursor.Store(m.Offset)
	if err := s.attach(b, m.Offset); err != nil {
		return err
	}
	b.send(b.sessionMessage(s))
	b.status(StateConnected, "")
	b.setSession(s)
	b.m.log.Info("terminal session resumed", "session", s.id, "user", b.h.UserID, "offset", m.Offset)
	return nil
}

// sessionMessage tells the browser the session's id and where its input
// stands, and sets the base from which this socket returns input credit.
func (b *bridge) sessionMessage(s *Session) SessionMessage {
	received, written := s.input.offsets()
	b.inAcked.Store(written)
	return SessionMessage{ID: s.id, ResumeToken: s.token, Window: int64(b.cfg.Window),
		InputReceived: received, InputWritten: written, InputWindow: InputWindow}
}

// ask sends a question and waits for the person's reply.
func (b *bridge) ask(ctx context.Context, q Message) (Message, error) {
	b.asking.Store(true)
	defer b.asking.Store(false)
	b.send(q)
	select {
	case r := <-b.replies:
		return r, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// socketPrompter relays authentication prompts over the socket.
type socketPrompter struct{ b *bridge }

func (p socketPrompter) Prompt(ctx context.Context, q Prompt) ([]string, error) {
	p.b.status(StatePrompt, "")
	questions := q.Questions
	if questions == nil {
		questions = []Question{}
	}
	r, err := p.b.ask(ctx, PromptMessage{Name: q.Name, Instruction: q.Instruction, Questions: questions})
	if err != nil {
		return nil, err
	}
	a, ok := r.(*AnswerMessage)
	if !ok || len(a.Answers) != len(q.Questions) {
		err := fmt.Errorf("%w: expected %d answers", ErrProtocol, len(q.Questions))
		p.b.cancel(err)
		return nil, err
	}
	p.b.status(StateConnecting, "")
	return a.Answers, nil
}

// askingPolicy asks the person about an unknown host key, then lets the
// hooks' policy pin it.
type askingPolicy struct{ b *bridge }

func (p askingPolicy) Unknown(ctx context.Context, t *Target, key ssh.PublicKey) (bool, error) {
	if p.b.h.HostKeys == nil {
		return false, nil
	}
	p.b.status(StatePrompt, fmt.Sprintf("The authenticity of %s can't be established.", t))
	r, err := p.b.ask(ctx, HostKeyMessage{Fingerprint: ssh.FingerprintSHA256(key), KeyType: key.Type()})
	if err != nil {
		return false, err
	}
	a, ok := r.(*HostKeyAnswer)
	if !ok {
		err := fmt.Errorf("%w: expected a hostkey answer", ErrProtocol)
		p.b.cancel(err)
		return false, err
	}
	if !a.Accept {
		return false, nil
	}
	p.b.status(StateConnecting, "")
	return p.b.h.HostKeys.Unknown(ctx, t, key)
}

// writeLoop is the only goroutine writing data frames. Control messages go
// before output so a status or prompt is never stuck behind a flood.
func (b *bridge) writeLoop() {
	ping := time.NewTicker(b.cfg.PingInterval)
	defer ping.Stop()
	buf := make([]byte, readChunk)
	for {
		if b.ctx.Err() != nil {
			b.writeClose(context.Cause(b.ctx))
			return
		}
		select {
		case m := <-b.ctrl:
			if !b.writeControl(m) {
				return
			}
			continue
		default:
		}
		var changed <-chan struct{}
		ready := b.ready
		if s := b.sess.Load(); s != nil {
			ready = nil
			if w := s.inputWritten(); w-b.inAcked.Load() >= InputAckStep {
				b.inAcked.Store(w)
				if !b.writeControl(InputAckMessage{Offset: w}) {
					return
				}
			}
			n, ch, done, err := s.readOutput(b.cursor.Load(), buf)
			if err != nil {
				b.cancel(err)
				continue
			}
			if n > 0 {
				// Advance before writing: the browser may ack these bytes
				// before WriteMessage returns.
				b.cursor.Add(int64(n))
				b.ws.SetWriteDeadline(time.Now().Add(b.cfg.WriteTimeout))
				if err := b.ws.WriteMessage(websocket.BinaryMessage, buf[:n]); err != nil {
					b.gone(err)
					return
				}
				continue
			}
			if done {
				b.cancel(s.endCause())
				continue
			}
			changed = ch
		}
		select {
		case m := <-b.ctrl:
			if !b.writeControl(m) {
				return
			}
		case <-changed:
		case <-ready:
		case <-ping.C:
			if err := b.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(b.cfg.WriteTimeout)); err != nil {
				b.gone(err)
				return
			}
		case <-b.ctx.Done():
		}
	}
}

func (b *bridge) writeControl(m Message) bool {
	data, err := EncodeControl(m)
	if err != nil {
		b.cancel(err)
		return true
	}
	b.ws.SetWriteDeadline(time.Now().Add(b.cfg.WriteTimeout))
	if err := b.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		b.gone(err)
		return false
	}
	return true
}

// gone handles a failed write: the browser is unreachable, so unblock the
// reader at once and let Serve detach the session.
func (b *bridge) gone(err error) {
	b.cancel(fmt.Errorf("%w: %w", ErrClientGone, err))
	b.closing.Store(true)
	b.ws.UnderlyingConn().SetReadDeadline(time.Now())
}

// writeClose tells the browser why the socket ends, then gives it a moment
// to answer the close frame before the reader is cut off.
func (b *bridge) writeClose(cause error) {
	b.closing.Store(true)
	defer b.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(time.Second))
	if errors.Is(cause, ErrClientGone) || errors.Is(cause, ErrClosedByBrowser) {
		return // the browser is gone or already answered by the close handler
	}
	// Control messages queued before the end (a changed host key's fingerprint)
	// go out before the reason.
	for drained := false; !drained; {
		select {
		case m := <-b.ctrl:
			b.writeFinal(m)
		default:
			drained = true
		}
	}
	code := CloseCode(cause)
	msg := UserMessage(cause)
	if code != CloseNormal {
		b.writeFinal(ErrorMessage{Code: code, Message: msg})
	}
	closed := StatusMessage{State: StateClosed, Message: msg}
	var exit *ExitError
	if errors.As(cause, &exit) && exit.Signal == "" {
		closed.ExitStatus = &exit.Status
	}
	if !errors.Is(cause, ErrTakenOver) {
		b.writeFinal(closed)
	}
	if code != CloseNormal {
		b.m.log.Info("terminal socket closed", "user", b.h.UserID, "code", code, "err", cause)
	}
	b.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, truncate(msg, 120)),
		time.Now().Add(b.cfg.WriteTimeout))
}

func (b *bridge) writeFinal(m Message) {
	data, err := EncodeControl(m)
	if err != nil {
		return
	}
	b.ws.SetWriteDeadline(time.Now().Add(b.cfg.WriteTimeout))
	b.ws.WriteMessage(websocket.TextMessage, data)
}

// truncate cuts s to at most n bytes on a rune boundary (close reasons are
// limited to 123 bytes).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// tokenBucket bounds the rate of control messages from one browser.
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(rate, burst int, now time.Time) tokenBucket {
	return tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// take spends one token, refilled at rate per second up to burst.
func (t *tokenBucket) take(now time.Time) bool {
	t.tokens = min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	t.last = now
	if t.tokens < 1 {
		return false
	}
	t.tokens--
	return true
}
