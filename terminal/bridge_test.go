package terminal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"
)

// rig is a Manager behind a real HTTP server, as handlers will wire it.
type rig struct {
	t      testing.TB
	m      *Manager
	srv    *httptest.Server
	hooks  func() Hooks
	served chan error // what each Serve returned
}

func newRig(t testing.TB, cfg Config, hooks func() Hooks) *rig {
	t.Helper()
	if cfg.DialOptions.KeepaliveInterval == 0 {
		cfg.DialOptions.KeepaliveInterval = -1
	}
	r := &rig{t: t, m: NewManager(cfg), hooks: hooks, served: make(chan error, 100)}
	up := websocket.Upgrader{} // no Origin header from the test dialer, so the default check passes
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ws, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		r.served <- r.m.Serve(req.Context(), ws, r.hooks())
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		r.srv.Close()
	})
	return r
}

// sshHooks opens a session on srv with key auth and a pinning policy.
func sshHooks(srv *testServer, key ssh.Signer, pinned bool, user string) func() Hooks {
	return func() Hooks {
		return Hooks{
			UserID: user,
			Open: func(_ context.Context, msg OpenMessage) (*Target, Auth, error) {
				if msg.Ticket != "good" {
					return nil, Auth{}, fmt.Errorf("ticket: %w", ErrTicket)
				}
				return srv.target(msg.Server, pinned), Auth{Signers: []ssh.Signer{key}}, nil
			},
			HostKeys: policyFunc(func(context.Context, *Target, ssh.PublicKey) (bool, error) { return true, nil }),
		}
	}
}

// client is the browser side: it records output and control messages.
type client struct {
	t       testing.TB
	ws      *websocket.Conn
	wmu     sync.Mutex
	autoAck atomic.Bool
	mu      sync.Mutex
	out     bytes.Buffer
	offset  int64
	ctrl    chan Message
	closed  chan struct{}
	code    int
	changed chan struct{}
	// inAcked is the input written to the shell as the server last said
	// (session message, inputack); credit wakes paste.
	inAcked atomic.Int64
	credit  chan struct{}
	// keepTail, when set, keeps only about the last keepTail bytes of output
	// (floods); offset still counts everything.
	keepTail int
}

func (r *rig) dial() *client {
	r.t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(r.srv.URL, "http"), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	c := &client{t: r.t, ws: ws, ctrl: make(chan Message, 100), closed: make(chan struct{}), changed: make(chan struct{}, 1),
		credit: make(chan struct{}, 1)}
	c.autoAck.Store(true)
	go c.readLoop()
	r.t.Cleanup(func() { ws.Close() })
	return c
}

func (c *client) readLoop() {
	defer close(c.closed)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code = ce.Code
			}
			return
		}
		if typ == websocket.BinaryMessage {
			c.mu.Lock()
			c.out.Write(data)
			if c.keepTail > 0 && c.out.Len() > 2*c.keepTail {
				tail := append([]byte(nil), c.out.Bytes()[c.out.Len()-c.keepTail:]...)
				c.out.Reset()
				c.out.Write(tail)
			}
			c.offset += int64(len(data))
			off := c.offset
			c.mu.Unlock()
			select {
			case c.changed <- struct{}{}:
			default:
			}
			if c.autoAck.Load() {
				c.send(AckMessage{Offset: off})
			}
			continue
		}
		m, err := DecodeServerControl(data)
		if err != nil {
			c.t.Errorf("bad control message %s: %v", data, err)
			return
		}
		switch m := m.(type) {
		case *InputAckMessage:
			c.inAcked.Store(m.Offset)
			select {
			case c.credit <- struct{}{}:
			default:
			}
			continue // the flow of input is paste's business, not expect's
		case *SessionMessage:
			c.inAcked.Store(m.InputWritten)
		}
		c.ctrl <- m
	}
}

func (c *client) send(m Message) {
	data, _ := EncodeControl(m)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.WriteMessage(websocket.TextMessage, data)
}

func (c *client) sendRaw(typ int, data []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.WriteMessage(typ, data)
}

func (c *client) type_(s string) { c.sendRaw(websocket.BinaryMessage, []byte(s)) }

func (c *client) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *client) received() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// waitOutput waits until the output contains want.
func (c *client) waitOutput(want string) {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(c.output(), want) {
		select {
		case <-c.changed:
		case <-deadline:
			c.t.Fatalf("output never contained %q; %d bytes, ending %q", want, c.received(), tail(c.output()))
		case <-c.closed:
			if !strings.Contains(c.output(), want) {
				c.t.Fatalf("closed (%d) before output contained %q; ending %q", c.code, want, tail(c.output()))
			}
		}
	}
}

// expect returns the next control message of type T, skipping statuses
// other than the wanted one when T is StatusMessage with want set.
func expect[T Message](c *client, skip ...string) T {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.ctrl:
			if v, ok := any(m).(*T); ok {
				return *v
			}
			if !slices.Contains(skip, m.MessageType()) {
				c.t.Fatalf("got %#v, want %T", m, *new(T))
			}
		case <-deadline:
			c.t.Fatalf("no %T within 10s", *new(T))
		}
	}
}

func (c *client) waitStatus(state string) StatusMessage {
	c.t.Helper()
	for {
		s := expect[StatusMessage](c, TypeSession, TypePong)
		if s.State == state {
			return s
		}
	}
}

func (c *client) waitClosed() int {
	c.t.Helper()
	select {
	case <-c.closed:
		return c.code
	case <-time.After(10 * time.Second):
		c.t.Fatal("socket not closed")
		return 0
	}
}

func (c *client) open(server string) SessionMessage {
	c.t.Helper()
	c.send(OpenMessage{Server: server, Cols: 80, Rows: 24, Ticket: "good"})
	s := expect[SessionMessage](c, TypeStatus)
	c.waitStatus(StateConnected)
	c.waitOutput("$ ") // typing before the prompt would mix echo and output
	return s
}

// goroutines waits for the goroutine count to drop back to base.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBridgeShell(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	var ended atomic.Value
	hooks := func() Hooks {
		h := sshHooks(srv, key, true, "alice")()
		h.OnEnd = func(info SessionInfo, status int, in, out int64, err error) {
			ended.Store(fmt.Sprintf("%s %d %v %v %v", info.Server, status, in > 0, out > 0, err))
		}
		return h
	}
	r := newRig(t, Config{}, hooks)
	base := runtime.NumGoroutine()
	c := r.dial()
	sess := c.open("web-1")
	if sess.ID == "" || len(sess.ResumeToken) < 40 || sess.Window != DefaultWindow {
		t.Errorf("session message %#v", sess)
	}

	c.type_("echo $((6*7))\r")
	c.waitOutput("42")

	c.type_("stty size\r")
	c.waitOutput("24 80")
	// A burst of resizes: only the last must count.
	for cols := 90; cols <= 130; cols += 10 {
		c.send(ResizeMessage{Cols: cols, Rows: 30})
	}
	time.Sleep(2 * resizeInterval)
	c.type_("stty size\r")
	c.waitOutput("30 130")

	if got := r.m.Sessions(); len(got) != 1 || got[0].UserID != "alice" || got[0].Server != "web-1" || !got[0].Attached {
		t.Errorf("Sessions() = %#v", got)
	}

	c.type_("exit 3\r")
	st := c.waitStatus(StateClosed)
	if st.ExitStatus == nil || *st.ExitStatus != 3 || st.Message != "Connection to web-1 closed." {
		t.Errorf("closed status %#v", st)
	}
	if code := c.waitClosed(); code != CloseNormal {
		t.Errorf("close code %d, want 1000", code)
	}
	if err := <-r.served; err != nil {
		t.Errorf("Serve = %v, want nil for a shell exit", err)
	}
	if got, _ := ended.Load().(string); !strings.HasPrefix(got, "web-1 3 true true remote shell on web-1") {
		t.Errorf("OnEnd got %q", got)
	}
	if n := len(r.m.Sessions()); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	checkGoroutines(t, base) // session, bridge, SSH client and keepalive all gone
}

func TestBridgeKeyboardInteractive(t *testing.T) {
	srv := startServer(t, serverOpts{kbd: func(ch ssh.KeyboardInteractiveChallenge) bool {
		ans, err := ch("", "Second factor", []string{"Token: ", "PIN: "}, []bool{true, false})
		return err == nil && len(ans) == 2 && ans[0] == "t0k" && ans[1] == "1234"
	}})
	r := newRig(t, Config{}, func() Hooks {
		return Hooks{UserID: "bob", Open: func(context.Context, OpenMessage) (*Target, Auth, error) {
			return srv.target("web-1", true), Auth{}, nil
		}}
	})
	c := r.dial()
	c.send(OpenMessage{Server: "web-1", Cols: 80, Rows: 24, Ticket: "x"})
	c.waitStatus(StatePrompt)
	p := expect[PromptMessage](c, TypeStatus)
	if p.Instruction != "Second factor" || len(p.Questions) != 2 || p.Questions[0] != (Question{"Token: ", true}) || p.Questions[1] != (Question{"PIN: ", false}) {
		t.Fatalf("prompt %#v", p)
	}
	c.send(AnswerMessage{Answers: []string{"t0k", "1234"}})
	expect[SessionMessage](c, TypeStatus)
	c.type_("echo $((6*7))\r")
	c.waitOutput("42")
}

func TestBridgeUnknownHostKey(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	var pinned atomic.Int32
	r := newRig(t, Config{}, func() Hooks {
		h := sshHooks(srv, key, false, "carol")()
		h.HostKeys = policyFunc(func(_ context.Context, _ *Target, k ssh.PublicKey) (bool, error) {
			pinned.Add(1)
			return true, nil
		})
		return h
	})
	for _, accept := range []bool{true, false} {
		c := r.dial()
		c.send(OpenMessage{Server: "web-1", Cols: 80, Rows: 24, Ticket: "good"})
		hk := expect[HostKeyMessage](c, TypeStatus)
		if hk.Fingerprint != ssh.FingerprintSHA256(srv.HostKey()) || hk.KeyType != "ssh-ed25519" || hk.Changed {
			t.Fatalf("hostkey message %#v", hk)
		}
		c.send(HostKeyAnswer{Accept: accept})
		if accept {
			expect[SessionMessage](c, TypeStatus)
			c.type_("exit\r")
			c.waitClosed()
			continue
		}
		e := expect[ErrorMessage](c, TypeStatus)
		if e.Code != CloseHostKeyRejected || c.waitClosed() != CloseHostKeyRejected {
			t.Errorf("reject: error %#v, close %d", e, c.code)
		}
	}
	if pinned.Load() != 1 || srv.authCalls.Load() != 1 {
		t.Errorf("pinned %d times, %d auth calls; want 1 and 1", pinned.Load(), srv.authCalls.Load())
	}
}

// TestBridgeChangedHostKeyRefusedBeforeAuth: an impostor presenting another
// key than the pinned one must not receive any authentication attempt, and
// the browser must be told plainly, without being offered to accept it.
func TestBridgeChangedHostKeyRefusedBeforeAuth(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}, password: "pw"})
	r := newRig(t, Config{}, func() Hooks {
		h := sshHooks(srv, key, false, "dave")()
		open := h.Open
		h.Open = func(ctx context.Context, m OpenMessage) (*Target, Auth, error) {
			tg, a, err := open(ctx, m)
			tg.HostKeys = []ssh.PublicKey{newSigner(t).PublicKey()}
			return tg, a, err
		}
		return h
	})
	c := r.dial()
	c.send(OpenMessage{Server: "web-1", Cols: 80, Rows: 24, Ticket: "good"})
	hk := expect[HostKeyMessage](c, TypeStatus)
	if !hk.Changed || hk.Fingerprint != ssh.FingerprintSHA256(srv.HostKey()) {
		t.Errorf("hostkey %#v", hk)
	}
	e := expect[ErrorMessage](c, TypeStatus)
	if e.Code != CloseHostKeyChanged || !strings.Contains(e.Message, "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("error %#v", e)
	}
	if code := c.waitClosed(); code != CloseHostKeyChanged {
		t.Errorf("close %d", code)
	}
	if n := srv.authCalls.Load(); n != 0 {
		t.Errorf("server saw %d auth attempts", n)
	}
	if err := <-r.served; !errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("Serve = %v", err)
	}
}

func TestBridgeRejectsBadStart(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	r := newRig(t, Config{FirstMessageTimeout: 200 * time.Millisecond}, sshHooks(srv, key, true, "eve"))
	tests := []struct {
		name string
		send func(c *client)
		code int
	}{
		{"bad ticket", func(c *client) { c.send(OpenMessage{Server: "web-1", Cols: 80, Rows: 24, Ticket: "bad"}) }, CloseTicketInvalid},
		{"binary first", func(c *client) { c.type_("ls\r") }, ClosePolicy},
		{"ack first", func(c *client) { c.send(AckMessage{Offset: 1}) }, ClosePolicy},
		{"garbage", func(c *client) { c.sendRaw(websocket.TextMessage, []byte(`{"type":"open"`)) }, ClosePolicy},
		{"unknown session", func(c *client) { c.send(ResumeMessage{Session: "nope", Token: "x"}) }, CloseSessionNotFound},
		{"too big", func(c *client) { c.sendRaw(websocket.TextMessage, make([]byte, ReadLimit+1)) }, CloseTooBig},
		{"silent", func(c *client) {}, CloseGoingAway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := r.dial()
			tt.send(c)
			code := c.waitClosed()
			if tt.name == "silent" {
				return // the server gives up reading; no close frame is promised
			}
			if code != tt.code {
				t.Errorf("close %d, want %d", code, tt.code)
			}
		})
	}
}

func TestBridgePerUserCapAndShutdown(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	r := newRig(t, Config{MaxPerUser: 2}, sshHooks(srv, key, true, "frank"))
	base := runtime.NumGoroutine()
	c1, c2 := r.dial(), r.dial()
	c1.open("web-1")
	c2.open("web-1")
	c3 := r.dial()
	c3.send(OpenMessage{Server: "web-1", Cols: 80, Rows: 24, Ticket: "good"})
	if e := expect[ErrorMessage](c3, TypeStatus); e.Code != CloseTooManySessions {
		t.Errorf("third session: %#v", e)
	}
	c3.waitClosed()

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := r.m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{c1, c2} {
		if code := c.waitClosed(); code != CloseGoingAway {
			t.Errorf("after shutdown: close %d", code)
		}
	}
	if n := len(r.m.Sessions()); n != 0 {
		t.Errorf("%d sessions after Shutdown", n)
	}
	c4 := r.dial()
	if code := c4.waitClosed(); code != CloseGoingAway {
		t.Errorf("Serve after Shutdown: close %d", code)
	}
	r.srv.CloseClientConnections()
	checkGoroutines(t, base)
}

func TestBridgeTerminate(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	var endErr atomic.Value
	r := newRig(t, Config{}, func() Hooks {
		h := sshHooks(srv, key, true, "gina")()
		h.OnEnd = func(_ SessionInfo, _ int, _, _ int64, err error) { endErr.Store(err) }
		return h
	})
	c := r.dial()
	s := c.open("web-1")
	if err := r.m.Terminate(s.ID, "maintenance"); err != nil {
		t.Fatal(err)
	}
	e := expect[ErrorMessage](c, TypeStatus)
	if e.Code != CloseTerminated || !strings.Contains(e.Message, "closed by an administrator") {
		t.Errorf("error %#v", e)
	}
	if code := c.waitClosed(); code != CloseTerminated {
		t.Errorf("close %d", code)
	}
	if err, _ := endErr.Load().(error); !errors.Is(err, ErrTerminated) || !strings.Contains(err.Error(), "maintenance") {
		t.Errorf("OnEnd err %v", err)
	}
	if !errors.Is(r.m.Terminate(s.ID, "again"), ErrSessionNotFound) {
		t.Error("terminating a gone session should fail")
	}
}

func tail(s string) string { return s[max(0, len(s)-200):] }
