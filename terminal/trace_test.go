package terminal

import (
	"golang.org/x/crypto/ssh"

	"strings"
	"sync"
	"testing"
)

// lines collects trace lines from several goroutines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, s)
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

// TestBridgeTraceHookOverridesManager: a socket whose Hooks carry Trace (a stack with
// debugging on) gets its own ssh -v lines; the Manager-wide trace sees nothing of it,
// and a socket without the hook still goes to the Manager's.
func TestBridgeTraceHookOverridesManager(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	var global, mine lines
	traced := true
	hooks := func() Hooks {
		h := sshHooks(srv, key, true, "tess")()
		if traced {
			h.Trace = mine.add
		}
		return h
	}
	r := newRig(t, Config{DialOptions: DialOptions{Trace: global.add}}, hooks)
	c := r.dial()
	c.open("web-1")
	c.type_("exit\r")
	c.waitClosed()
	got := mine.text()
	for _, want := range []string{"Connecting to web-1", "Offering public key: ssh-ed25519", "Authenticated to web-1"} {
		if !strings.Contains(got, want) {
			t.Errorf("hook trace lacks %q:\n%s", want, got)
		}
	}
	if g := global.text(); g != "" {
		t.Errorf("the Manager's trace saw a hooked socket:\n%s", g)
	}

	traced = false
	c = r.dial()
	c.open("web-1")
	c.type_("exit\r")
	c.waitClosed()
	if !strings.Contains(global.text(), "Authenticated to web-1") {
		t.Errorf("without the hook, the Manager's trace is used:\n%s", global.text())
	}
}
