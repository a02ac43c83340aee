package terminal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// TestInputQueueOrderCreditAndEnd: the stdin writer with an io.Pipe for stdin. The
// socket's reader pushes without ever blocking, even while stdin does not drain; the
// bytes arrive complete and in order; a push beyond the input window is refused
// whole (a protocol violation, nothing queued); written advances as stdin drains and
// wakes the socket's writer; a stdin that fails ends run, leaving no goroutine.
func TestInputQueueOrderCreditAndEnd(t *testing.T) {
	pr, pw := io.Pipe()
	var progress atomic.Int32
	var recorded bytes.Buffer
	q := newInputQueue(pw, &recorded, 64, func() { progress.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- q.run(ctx) }()

	var want []byte
	for i := range 8 { // 8 × 8 = the whole window, pushed while nobody reads stdin
		p := bytes.Repeat([]byte{byte('a' + i)}, 8)
		if err := q.push(p); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		want = append(want, p...)
	}
	if err := q.push([]byte("x")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("push beyond the window: %v, want ErrProtocol", err)
	}
	if rcv, _ := q.offsets(); rcv != 64 {
		t.Fatalf("received %d after a refused push, want 64", rcv)
	}
	got := make([]byte, 64)
	if _, err := io.ReadFull(pr, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stdin got %q, want %q", got, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, w := q.offsets(); w == 64 && progress.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("written never reached 64")
		}
		runtime.Gosched()
	}
	if recorded.String() != string(want) {
		t.Errorf("input recorder got %q", recorded.String())
	}
	if err := q.push([]byte("more")); err != nil { // credit came back
		t.Fatalf("push after drain: %v", err)
	}
	pr.CloseWithError(errors.New("channel closed"))
	select {
	case err := <-ran:
		if err == nil || !strings.Contains(err.Error(), "channel closed") {
			t.Errorf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not end when stdin failed")
	}
}

// paste sends data as the browser does: in PasteChunk frames, never more than
// InputWindow beyond the input the server said it wrote. waiting, if set, is
// called each time it has to wait for credit. It returns the bytes sent.
func (c *client) paste(data []byte, waiting func(sent int64)) int64 {
	var sent int64
	base := c.inAcked.Load() // input written before the paste began
	for len(data) > 0 {
		n := min(PasteChunk, len(data))
		for base+sent+int64(n)-c.inAcked.Load() > InputWindow {
			if waiting != nil {
				waiting(sent)
			}
			select {
			case <-c.credit:
			case <-c.closed:
				return sent
			case <-time.After(30 * time.Second):
				c.t.Errorf("no input credit for 30 s after %d bytes", sent)
				return sent
			}
		}
		c.sendRaw(websocket.BinaryMessage, data[:n])
		sent += int64(n)
		data = data[n:]
	}
	return sent
}

func pasteData(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = "0123456789abcdefghijklmnopqrstuvwxyz\n"[i%37]
	}
	return data
}

// TestOpenSSHPasteWhileFloodCompletes: an 8 MiB paste while the remote floods the
// terminal (yes). It used to stall for good at about 1 MiB: keystrokes were written
// on the socket's only reader, so while stdin was blocked the acks that let the flood
// drain were never read, and the session, its goroutines and the user's slot leaked.
// Now the paste arrives complete (the remote's checksum matches), the flood ends, the
// shell exits, and no goroutine is left.
func TestOpenSSHPasteWhileFloodCompletes(t *testing.T) {
	d := testsshd.Start(t, testsshd.Options{})
	r := newRig(t, Config{}, opensshHooks(d, d.HostKey, Auth{Signers: []ssh.Signer{d.ClientSigner}}))
	base := runtime.NumGoroutine()
	c := r.dial()
	c.keepTail = 64 << 10
	c.open("real-1")
	const size = 8 << 20
	data := pasteData(size)
	sum := sha256.Sum256(data)
	// The flood runs until the paste has been read in full.
	c.type_(fmt.Sprintf("stty raw -echo; yes >/dev/tty & head -c %d | sha256sum; kill $!; wait; echo FLOOD-STOPPED\n", size))
	c.waitOutput("y\ny\ny\n") // the flood has begun
	if sent := c.paste(data, nil); sent != size {
		t.Fatalf("sent %d of %d bytes", sent, size)
	}
	waitOutputLong(c, hex.EncodeToString(sum[:]), 4*time.Minute)
	waitOutputLong(c, "FLOOD-STOPPED", 4*time.Minute)
	c.type_("stty sane; exit\n")
	if code := c.waitClosed(); code != CloseNormal {
		t.Fatalf("close %d", code)
	}
	<-r.served
	checkGoroutines(t, base)
}

// waitOutputLong is waitOutput with a longer deadline (a flood takes a while under
// the race detector on two cores).
func waitOutputLong(c *client, want string, d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for !strings.Contains(c.output(), want) {
		select {
		case <-c.changed:
		case <-deadline:
			c.t.Fatalf("output never contained %q; %d bytes, ending %q", want, c.received(), tail(c.output()))
		case <-c.closed:
			c.t.Fatalf("closed (%d) before output contained %q", c.code, want)
		}
	}
}

// TestOpenSSHControlMessagesWhileStdinBlocked: a remote program that never reads its
// input (sleep) and a paste bigger than everything between us and it. Once the
// session's input queue is full, its stdin write is blocked; ping, resize and ack
// must still be read and answered (they used to wait behind the write forever), and
// ending the session must unblock the write and leave no goroutine behind.
func TestOpenSSHControlMessagesWhileStdinBlocked(t *testing.T) {
	d := testsshd.Start(t, testsshd.Options{})
	r := newRig(t, Config{}, opensshHooks(d, d.HostKey, Auth{Signers: []ssh.Signer{d.ClientSigner}}))
	base := runtime.NumGoroutine()
	c := r.dial()
	sm := c.open("real-1")
	c.type_("stty raw -echo; sleep 600\n")
	pasted := make(chan int64, 1)
	go func() { pasted <- c.paste(pasteData(16<<20), nil) }()
	// Full: what the browser may have in flight is queued, and stdin is not draining.
	s := r.m.lookup(sm.ID)
	deadline := time.Now().Add(time.Minute)
	for {
		s.input.mu.Lock()
		queued := len(s.input.buf) + int(s.input.taken)
		s.input.mu.Unlock()
		if queued >= InputWindow-PasteChunk-InputAckStep {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the input queue never filled (%d bytes queued)", queued)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	for range 3 {
		c.send(PingMessage{})
		expect[PongMessage](c, TypeStatus)
	}
	c.send(ResizeMessage{Cols: 100, Rows: 40})
	c.send(AckMessage{Offset: c.received()})
	c.send(PingMessage{})
	expect[PongMessage](c, TypeStatus)
	if err := r.m.Terminate(sm.ID, "test over"); err != nil {
		t.Fatal(err)
	}
	if code := c.waitClosed(); code != CloseTerminated {
		t.Fatalf("close %d", code)
	}
	if sent := <-pasted; sent >= 16<<20 {
		t.Fatalf("a remote that never reads took all %d bytes", sent)
	}
	<-r.served
	checkGoroutines(t, base)
}

// TestBridgeControlFloodCloses: a browser (or a script with a stolen ticket) that
// sends control messages without pause gets the socket closed with 1008 instead of
// a pong for each (writes the server pays for).
func TestBridgeControlFloodCloses(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	r := newRig(t, Config{}, sshHooks(srv, key, true, "alice"))
	c := r.dial()
	c.open("web-1")
	ping, _ := EncodeControl(PingMessage{})
	go func() {
		for range 3 * ControlBurst {
			c.sendRaw(websocket.TextMessage, ping)
		}
	}()
	go func() { // drain the pongs so the socket's writer never waits on us
		for {
			select {
			case <-c.ctrl:
			case <-c.closed:
				return
			}
		}
	}()
	// The client may still be writing when the server closes, so its read can end in
	// a reset instead of the close frame; the server's verdict is what counts.
	err := <-r.served
	if !errors.Is(err, ErrProtocol) || CloseCode(err) != ClosePolicy || !strings.Contains(err.Error(), "control messages a second") {
		t.Fatalf("Serve = %v, want a 1008 for the control flood", err)
	}
	if code := c.waitClosed(); code != ClosePolicy && code != 0 {
		t.Errorf("close %d, want 1008 (or a reset)", code)
	}
}

// TestBridgeBrowserCloseIsANormalEnd: closing the tab sends close 1001 (1000 when the
// page ends the session itself). Nobody can resume that session, so it ends at
// once, as a normal end "closed by the browser", instead of lingering for the grace
// period and being logged as a failure.
func TestBridgeBrowserCloseIsANormalEnd(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	ended := make(chan error, 1)
	r := newRig(t, Config{Grace: time.Hour}, func() Hooks {
		h := sshHooks(srv, key, true, "alice")()
		h.OnEnd = func(_ SessionInfo, _ int, _, _ int64, err error) { ended <- err }
		return h
	})
	c := r.dial()
	c.open("web-1")
	c.wmu.Lock()
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	select {
	case err := <-ended:
		if !errors.Is(err, ErrClosedByBrowser) {
			t.Fatalf("OnEnd err %v, want ErrClosedByBrowser", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session lingered after the browser closed it")
	}
	if err := <-r.served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

// TestAdmitCapsPendingSockets: sockets upgraded but not yet opened are capped per
// user (each holds a connection and a goroutine until its first message); the
// release frees a place, twice is harmless, and other users are not affected.
func TestAdmitCapsPendingSockets(t *testing.T) {
	m := NewManager(Config{MaxPendingPerUser: 2})
	r1, err1 := m.Admit("mallory")
	_, err2 := m.Admit("mallory")
	_, err3 := m.Admit("mallory")
	if err1 != nil || err2 != nil || !errors.Is(err3, ErrTooManyPending) {
		t.Fatalf("admits: %v %v %v", err1, err2, err3)
	}
	if _, err := m.Admit("alice"); err != nil {
		t.Fatalf("another user: %v", err)
	}
	r1()
	r1()
	if _, err := m.Admit("mallory"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := m.Admit("mallory"); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("a double release freed two places: %v", err)
	}
}
