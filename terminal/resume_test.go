package terminal

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// digits returns the lines of out that are plain numbers.
func numbers(out string) []int {
	var ns []int
	for _, l := range strings.Split(out, "\r\n") {
		if n, err := strconv.Atoi(l); err == nil {
			ns = append(ns, n)
		}
	}
	return ns
}

func TestResumeReplaysExactlyTheMissedBytes(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	r := newRig(t, Config{Window: 256 << 10}, sshHooks(srv, key, true, "alice"))
	base := runtime.NumGoroutine()

	c1 := r.dial()
	s := c1.open("web-1")
	const last = 200000
	c1.type_("seq 1 " + strconv.Itoa(last) + "; echo E\"\"ND\r")
	// Read a while acking, then stop acking and drop the connection the way
	// a network does: no close frame.
	for c1.received() < 300<<10 {
		select {
		case <-c1.changed:
		case <-time.After(10 * time.Second):
			t.Fatal("no output")
		}
	}
	c1.autoAck.Store(false)
	acked := c1.received()
	c1.send(AckMessage{Offset: acked})
	time.Sleep(50 * time.Millisecond)
	c1.ws.UnderlyingConn().Close()
	<-c1.closed
	first := c1.output()[:acked] // the browser keeps what it acked

	c2 := r.dial()
	c2.mu.Lock()
	c2.offset = acked // offsets are absolute: the browser continues counting
	c2.mu.Unlock()
	c2.send(ResumeMessage{Session: s.ID, Token: s.ResumeToken, Offset: acked})
	expect[SessionMessage](c2, TypeStatus)
	c2.waitOutput("END")

	ns := numbers(first + c2.output())
	if len(ns) != last || ns[0] != 1 || ns[len(ns)-1] != last {
		t.Fatalf("got %d numbers (%v … %v), want 1..%d", len(ns), ns[:min(3, len(ns))], ns[max(0, len(ns)-3):], last)
	}
	for i, n := range ns {
		if n != i+1 {
			t.Fatalf("number %d is %d: stream not complete and in order", i+1, n)
		}
	}
	c2.type_("exit\r")
	if code := c2.waitClosed(); code != CloseNormal {
		t.Errorf("close %d", code)
	}
	checkGoroutines(t, base)
}

func TestResumeRefused(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	user := "alice"
	r := newRig(t, Config{Grace: 300 * time.Millisecond}, func() Hooks { return sshHooks(srv, key, true, user)() })
	c1 := r.dial()
	s := c1.open("web-1")
	c1.type_("echo $((6*7))\r")
	c1.waitOutput("42\r\n$ ") // the prompt is the last output for a while
	got := c1.received()

	refused := func(name string, m ResumeMessage) {
		t.Helper()
		c := r.dial()
		c.send(m)
		if code := c.waitClosed(); code != CloseSessionNotFound {
			t.Errorf("%s: close %d, want %d", name, code, CloseSessionNotFound)
		}
	}
	refused("wrong token", ResumeMessage{Session: s.ID, Token: s.ResumeToken[:len(s.ResumeToken)-1] + "x", Offset: got})
	refused("beyond output", ResumeMessage{Session: s.ID, Token: s.ResumeToken, Offset: got + 1000})
	user = "mallory"
	refused("other user", ResumeMessage{Session: s.ID, Token: s.ResumeToken, Offset: got})
	user = "alice"

	// A second socket takes the session over; the first is told why.
	c2 := r.dial()
	c2.send(ResumeMessage{Session: s.ID, Token: s.ResumeToken, Offset: got})
	expect[SessionMessage](c2, TypeStatus)
	if code := c1.waitClosed(); code != CloseTakenOver {
		t.Errorf("taken over: close %d", code)
	}
	c2.type_("echo again\r")
	c2.waitOutput("again")

	// Detached longer than the grace period: the shell is gone.
	c2.ws.UnderlyingConn().Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.m.Sessions()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(r.m.Sessions()); n != 0 {
		t.Fatalf("%d sessions after grace", n)
	}
	refused("expired", ResumeMessage{Session: s.ID, Token: s.ResumeToken, Offset: got})
}

// TestFlowControlStallsRemote: a browser that never acks must not make the
// server buffer a flood; the remote writer itself must stall.
func TestFlowControlStallsRemote(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	const window = 64 << 10
	r := newRig(t, Config{Window: window}, sshHooks(srv, key, true, "alice"))
	c := r.dial()
	c.autoAck.Store(false)
	s := c.open("web-1")
	dir := t.TempDir()
	progress := filepath.Join(dir, "progress")
	const total = 8 << 20
	c.type_("head -c " + strconv.Itoa(total) + " /dev/zero | tr '\\0' '\\132' | tee " + progress + " >/dev/tty; echo; echo DO\"\"NE\r")

	size := func() int64 {
		fi, err := os.Stat(progress)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	// Wait until the remote writer stops making progress.
	var prev int64 = -1
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		cur := size()
		if cur == prev && cur > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote writer never stalled: %d bytes written", cur)
		}
		prev = cur
	}
	t.Logf("remote stalled after writing %d bytes; browser holds %d unacked", size(), c.received())
	if cur := size(); cur >= total/2 {
		t.Errorf("remote wrote %d of %d bytes without acks", cur, total)
	}
	if got := c.received(); got > window {
		t.Errorf("browser received %d unacked bytes, window %d", got, window)
	}
	sess := r.m.lookup(s.ID)
	sess.mu.Lock()
	ringLen, unacked := len(sess.ring), sess.end-sess.start
	sess.mu.Unlock()
	if ringLen > window || unacked > window {
		t.Errorf("server holds %d bytes in a ring of %d; window %d", unacked, ringLen, window)
	}

	// Acks release the flood, and every byte arrives.
	c.autoAck.Store(true)
	c.send(AckMessage{Offset: c.received()})
	c.waitOutput("DONE")
	if n := strings.Count(c.output(), "Z"); n != total {
		t.Errorf("received %d Z, want %d", n, total)
	}
}
