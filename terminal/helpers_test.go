package terminal

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/sshserver"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testServer is an in-process SSH server that counts authentication
// attempts, so tests can prove that nothing was sent.
type testServer struct {
	*sshserver.Server
	authCalls atomic.Int64
}

type serverOpts struct {
	password string                                      // accepted password; "" = method off
	keys     []ssh.PublicKey                             // accepted keys
	kbd      func(ssh.KeyboardInteractiveChallenge) bool // nil = method off
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	ts := &testServer{}
	cfg := sshserver.Config{
		Shell: []string{"/bin/sh"},
		Env:   []string{"PS1=$ "},
		Dir:   t.TempDir(),
		PublicKey: func(_ string, key ssh.PublicKey) bool {
			ts.authCalls.Add(1)
			for _, k := range o.keys {
				if string(k.Marshal()) == string(key.Marshal()) {
					return true
				}
			}
			return false
		},
	}
	if o.password != "" {
		cfg.Password = func(_, pw string) bool {
			ts.authCalls.Add(1)
			return pw == o.password
		}
	}
	if o.kbd != nil {
		cfg.KeyboardInteractive = func(_ string, ch ssh.KeyboardInteractiveChallenge) bool {
			ts.authCalls.Add(1)
			return o.kbd(ch)
		}
	}
	srv, err := sshserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ts.Server = srv
	return ts
}

func (ts *testServer) target(name string, pinned bool) *Target {
	host, port, _ := net.SplitHostPort(ts.Addr())
	p, _ := strconv.Atoi(port)
	tg := &Target{Name: name, Host: host, Port: p, User: "tester"}
	if pinned {
		tg.HostKeys = []ssh.PublicKey{ts.HostKey()}
	}
	return tg
}

// policyFunc adapts a function to HostKeyPolicy.
type policyFunc func(ctx context.Context, t *Target, key ssh.PublicKey) (bool, error)

func (f policyFunc) Unknown(ctx context.Context, t *Target, key ssh.PublicKey) (bool, error) {
	return f(ctx, t, key)
}

// prompterFunc adapts a function to Prompter and records the prompts.
type prompterFunc struct {
	mu      sync.Mutex
	prompts []Prompt
	answer  func(Prompt) ([]string, error)
}

func (p *prompterFunc) Prompt(_ context.Context, q Prompt) ([]string, error) {
	p.mu.Lock()
	p.prompts = append(p.prompts, q)
	p.mu.Unlock()
	return p.answer(q)
}

func (p *prompterFunc) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.prompts)
}
