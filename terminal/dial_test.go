package terminal

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var netDialer = &net.Dialer{}

// noKeepalive keeps test dials from leaving a ticker behind for 15 s.
var testOpts = DialOptions{KeepaliveInterval: -1}

func TestDialPinnedKeyAndTrace(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	var mu sync.Mutex
	var trace []string
	opts := testOpts
	opts.Trace = func(l string) { mu.Lock(); trace = append(trace, l); mu.Unlock() }
	c, err := Dial(t.Context(), netDialer, srv.target("web-1", true), Auth{Signers: []ssh.Signer{key}}, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	all := strings.Join(trace, "\n")
	for _, want := range []string{"Connecting to web-1", "Remote protocol version SSH-2.0-shellgate", "kex: algorithm: ",
		"kex: host key algorithm: ssh-ed25519", "Host key matches", "Offering public key: ssh-ed25519",
		`Authenticated to web-1 (` + srv.Addr() + `) using "publickey"`} {
		if !strings.Contains(all, want) {
			t.Errorf("trace lacks %q:\n%s", want, all)
		}
	}
}

// TestDialChangedHostKeySendsNoCredentials: a server presenting a key other
// than the pinned one may be an impostor; it must not see a password or
// even a public key offer, and nobody is asked to trust it.
func TestDialChangedHostKeySendsNoCredentials(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{password: "pw", keys: []ssh.PublicKey{key.PublicKey()}})
	tg := srv.target("web-1", false)
	tg.HostKeys = []ssh.PublicKey{newSigner(t).PublicKey()}
	asked := false
	policy := policyFunc(func(context.Context, *Target, ssh.PublicKey) (bool, error) { asked = true; return true, nil })
	prompter := &prompterFunc{answer: func(Prompt) ([]string, error) { return []string{"pw"}, nil }}
	_, err := Dial(t.Context(), netDialer, tg, Auth{Signers: []ssh.Signer{key}, Prompter: prompter}, policy, testOpts)
	var hk *HostKeyError
	if !errors.Is(err, ErrHostKeyChanged) || !errors.As(err, &hk) {
		t.Fatalf("err = %v, want ErrHostKeyChanged", err)
	}
	if hk.Fingerprint != ssh.FingerprintSHA256(srv.HostKey()) {
		t.Errorf("fingerprint %s, want the presented key's", hk.Fingerprint)
	}
	if n := srv.authCalls.Load(); n != 0 || asked || prompter.count() != 0 {
		t.Errorf("auth callbacks %d, policy asked %v, prompts %d; want none", n, asked, prompter.count())
	}
	if CloseCode(err) != CloseHostKeyChanged || !strings.Contains(UserMessage(err), "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
		!strings.Contains(UserMessage(err), hk.Fingerprint) {
		t.Errorf("code %d message %q", CloseCode(err), UserMessage(err))
	}
}

func TestDialUnknownHostKey(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	for _, accept := range []bool{true, false} {
		var seen ssh.PublicKey
		policy := policyFunc(func(_ context.Context, tg *Target, k ssh.PublicKey) (bool, error) {
			seen = k
			return accept, nil
		})
		c, err := Dial(t.Context(), netDialer, srv.target("web-1", false), Auth{Signers: []ssh.Signer{key}}, policy, testOpts)
		if seen == nil || string(seen.Marshal()) != string(srv.HostKey().Marshal()) {
			t.Errorf("policy saw %v", seen)
		}
		if accept {
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			continue
		}
		if !errors.Is(err, ErrHostKeyRejected) || CloseCode(err) != CloseHostKeyRejected {
			t.Errorf("rejected: err %v code %d", err, CloseCode(err))
		}
		if srv.authCalls.Load() != 1 { // only the accepted dial authenticated
			t.Errorf("auth calls %d", srv.authCalls.Load())
		}
	}
	// No policy at all: an unknown key is refused, never silently trusted.
	_, err := Dial(t.Context(), netDialer, srv.target("web-1", false), Auth{Signers: []ssh.Signer{key}}, nil, testOpts)
	if !errors.Is(err, ErrHostKeyRejected) {
		t.Errorf("nil policy: %v", err)
	}
}

func TestDialKeyboardInteractiveAndPassword(t *testing.T) {
	srv := startServer(t, serverOpts{password: "sesame", kbd: func(ch ssh.KeyboardInteractiveChallenge) bool {
		ans, err := ch("tester", "Two factors", []string{"Code: ", "PIN: "}, []bool{true, false})
		return err == nil && len(ans) == 2 && ans[0] == "123" && ans[1] == "9"
	}})
	p := &prompterFunc{answer: func(q Prompt) ([]string, error) {
		if len(q.Questions) == 2 {
			return []string{"123", "9"}, nil
		}
		return []string{"wrong"}, nil
	}}
	c, err := Dial(t.Context(), netDialer, srv.target("web-1", true), Auth{Prompter: p}, nil, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	q := p.prompts[0]
	if q.Name != "tester" || q.Instruction != "Two factors" || len(q.Questions) != 2 ||
		q.Questions[0] != (Question{"Code: ", true}) || q.Questions[1] != (Question{"PIN: ", false}) {
		t.Errorf("prompt %#v", q)
	}

	// Only a password server: the prompt names user and server.
	srv2 := startServer(t, serverOpts{password: "sesame"})
	p2 := &prompterFunc{answer: func(Prompt) ([]string, error) { return []string{"sesame"}, nil }}
	c, err = Dial(t.Context(), netDialer, srv2.target("web-2", true), Auth{Prompter: p2}, nil, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := p2.prompts[0].Questions[0]; got.Text != "tester@web-2's password: " || got.Echo {
		t.Errorf("password prompt %#v", got)
	}
}

func TestDialLockedKeyAskedOnlyWhenAccepted(t *testing.T) {
	good, other := newSigner(t), newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{good.PublicKey()}})
	unlocker := func(s ssh.Signer) func([]byte) (ssh.Signer, error) {
		return func(pw []byte) (ssh.Signer, error) {
			if string(pw) != "open" {
				return nil, errors.New("bad passphrase")
			}
			return s, nil
		}
	}
	tries := 0
	p := &prompterFunc{answer: func(Prompt) ([]string, error) {
		tries++
		if tries == 1 {
			return []string{"nope"}, nil
		}
		return []string{"open"}, nil
	}}
	auth := Auth{Prompter: p, Locked: []LockedKey{
		{Name: "other", PublicKey: other.PublicKey(), Unlock: unlocker(other)},
		{Name: "laptop", PublicKey: good.PublicKey(), Unlock: unlocker(good)},
	}}
	c, err := Dial(t.Context(), netDialer, srv.target("web-1", true), auth, nil, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if p.count() != 2 || !strings.Contains(p.prompts[0].Questions[0].Text, "'laptop'") ||
		p.prompts[1].Instruction == "" {
		t.Errorf("prompts %#v; want two for 'laptop' only, the second saying the first was wrong", p.prompts)
	}
}

func TestDialJumpHost(t *testing.T) {
	key := newSigner(t)
	jump := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	inner := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	tg := inner.target("web-1", true)
	tg.Jump = jump.target("bastion", true)
	auth := Auth{Signers: []ssh.Signer{key}}
	c, err := Dial(t.Context(), netDialer, tg, auth, nil, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("echo $((6*7))")
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("through jump: %q, %v", out, err)
	}
	c.Close()

	// Both hops are checked: a changed key at the inner hop is named, and
	// the inner server never sees credentials.
	tg.HostKeys = []ssh.PublicKey{newSigner(t).PublicKey()}
	_, err = Dial(t.Context(), netDialer, tg, auth, nil, testOpts)
	var hk *HostKeyError
	if !errors.As(err, &hk) || hk.Target != tg || !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("inner changed: %v", err)
	}
	if inner.authCalls.Load() != 1 {
		t.Errorf("inner auth calls %d, want 1 (the first dial)", inner.authCalls.Load())
	}
	tg.HostKeys = []ssh.PublicKey{inner.HostKey()}
	tg.Jump.HostKeys = []ssh.PublicKey{newSigner(t).PublicKey()}
	jumpCalls := jump.authCalls.Load()
	_, err = Dial(t.Context(), netDialer, tg, auth, nil, testOpts)
	if !errors.As(err, &hk) || hk.Target != tg.Jump {
		t.Fatalf("jump changed: %v", err)
	}
	if jump.authCalls.Load() != jumpCalls {
		t.Errorf("jump host saw credentials after a changed key")
	}
}

func TestDialKeepaliveClosesDeadConnection(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	// A proxy we can freeze: it stops forwarding without closing, like a
	// network that silently drops packets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frozen := make(chan struct{})
	var conns sync.WaitGroup
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			return
		}
		pipe := func(dst, src net.Conn) {
			defer conns.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				select {
				case <-frozen:
					<-time.After(5 * time.Second)
					dst.Close()
					src.Close()
					return
				default:
				}
				if err != nil {
					dst.Close()
					return
				}
				dst.Write(buf[:n])
			}
		}
		conns.Add(2)
		go pipe(up, c)
		go pipe(c, up)
	}()
	tg := srv.target("web-1", true)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	tg.Port, _ = strconv.Atoi(port)
	c, err := Dial(t.Context(), netDialer, tg, Auth{Signers: []ssh.Signer{key}}, nil,
		DialOptions{KeepaliveInterval: 50 * time.Millisecond, KeepaliveMaxMissed: 3})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // keepalives answered meanwhile
	close(frozen)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("client not closed after missed keepalives")
	}
	ln.Close()
}

func TestDialContextCancelDuringPrompt(t *testing.T) {
	srv := startServer(t, serverOpts{password: "pw"})
	ctx, cancel := context.WithCancel(t.Context())
	p := &prompterFunc{answer: func(Prompt) ([]string, error) {
		cancel()
		return nil, context.Canceled
	}}
	start := time.Now()
	_, err := Dial(ctx, netDialer, srv.target("web-1", true), Auth{Prompter: p}, nil, testOpts)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestDialErrorsClassified(t *testing.T) {
	key := newSigner(t)

	// Refused: a port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refusedAddr := ln.Addr().String()
	ln.Close()

	// Not SSH: a web server answering with HTTP.
	httpLn := serveRaw(t, func(c net.Conn) { c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")) })
	// Silent: accepts and says nothing.
	silentLn := serveRaw(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	// Old SSH server offering only a key exchange we do not accept.
	oldLn := serveSSH(t, &ssh.ServerConfig{NoClientAuth: true, Config: ssh.Config{KeyExchanges: []string{"diffie-hellman-group1-sha1"}}})
	// Auth refused.
	srv := startServer(t, serverOpts{password: "right"})

	target := func(addr string) *Target {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		return &Target{Name: "web-1", Host: host, Port: p, User: "deploy", HostKeys: []ssh.PublicKey{key.PublicKey()}}
	}
	wrong := &prompterFunc{answer: func(Prompt) ([]string, error) { return []string{"wrong"}, nil }}
	srvTarget := srv.target("web-1", true)
	srvTarget.User = "deploy"
	tests := []struct {
		name string
		t    *Target
		auth Auth
		is   error
		code int
		msg  string
	}{
		{"refused", target(refusedAddr), Auth{}, nil, CloseConnectFailed, "Connection to web-1 (" + refusedAddr + ") was refused."},
		{"not ssh", target(httpLn), Auth{}, ErrNotSSH, CloseConnectFailed, "web-1 (" + httpLn + ") is not an SSH server."},
		{"silent", target(silentLn), Auth{}, nil, CloseConnectFailed, "timed out while waiting for the SSH banner"},
		{"algorithms", target(oldLn), Auth{}, nil, CloseConnectFailed, "Unable to exchange encryption keys with web-1 (" + oldLn + "): no common key exchange algorithm. We offered: "},
		{"auth", srvTarget, Auth{Signers: []ssh.Signer{key}, Prompter: wrong}, ErrAuthFailed, CloseAuthFailed, "deploy@web-1: Permission denied (password,publickey). Tried: publickey, password."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOpts
			opts.HandshakeTimeout = 300 * time.Millisecond
			_, err := Dial(t.Context(), netDialer, tt.t, tt.auth, nil, opts)
			var de *DialError
			if !errors.As(err, &de) {
				t.Fatalf("err %v is not a DialError", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v is not %v", err, tt.is)
			}
			if got := CloseCode(err); got != tt.code {
				t.Errorf("CloseCode = %d, want %d (err %v)", got, tt.code, err)
			}
			if got := UserMessage(err); !strings.Contains(got, tt.msg) {
				t.Errorf("UserMessage = %q, want %q (err %v)", got, tt.msg, err)
			}
		})
	}
}

// serveRaw accepts TCP connections and hands each to f, then closes it.
func serveRaw(t *testing.T, f func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); f(c) })
		}
	})
	return ln.Addr().String()
}

func serveSSH(t *testing.T, cfg *ssh.ServerConfig) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hk, _ := ssh.NewSignerFromKey(priv)
	cfg.AddHostKey(hk)
	return serveRaw(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		ssh.NewServerConn(c, cfg)
	})
}
