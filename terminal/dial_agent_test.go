package terminal

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// agentFake is an AgentDialer whose "agent" is a loopback dial recorded per
// server id, and whose direct dials always fail: a hop that is not routed
// through the agent cannot be reached, as on a host behind NAT.
type agentFake struct {
	mu     sync.Mutex
	agents []int64
	addrs  []string
}

func (a *agentFake) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("direct dial: network unreachable")
}

func (a *agentFake) DialAgent(ctx context.Context, id int64, addr string) (net.Conn, error) {
	a.mu.Lock()
	a.agents = append(a.agents, id)
	a.addrs = append(a.addrs, addr)
	a.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
}

func TestDialThroughAgentDialer(t *testing.T) {
	key := newSigner(t)
	srv := startServer(t, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})
	auth := Auth{Signers: []ssh.Signer{key}}

	t.Run("direct hop is not routed", func(t *testing.T) {
		fake := &agentFake{}
		_, err := Dial(t.Context(), fake, srv.target("web-1", true), auth, nil, testOpts)
		var de *DialError
		if !errors.As(err, &de) || de.Phase != PhaseConnect || len(fake.agents) != 0 {
			t.Fatalf("err = %v, agent dials %v; want a connect error and no agent dial", err, fake.agents)
		}
	})
	t.Run("agent hop", func(t *testing.T) {
		fake := &agentFake{}
		tg := srv.target("web-1", true)
		tg.Agent = 42
		c, err := Dial(t.Context(), fake, tg, auth, nil, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out, err := agentRun(c, "echo through-agent")
		if err != nil || out != "through-agent\n" {
			t.Fatalf("command: %q %v", out, err)
		}
		if len(fake.agents) != 1 || fake.agents[0] != 42 || fake.addrs[0] != srv.Addr() {
			t.Errorf("agent dials %v to %v; want one through agent 42 to %s", fake.agents, fake.addrs, srv.Addr())
		}
	})
	t.Run("agent hop at the end of a jump chain skips the jumps", func(t *testing.T) {
		fake := &agentFake{}
		tg := srv.target("web-1", true)
		tg.Agent = 7
		tg.Jump = &Target{Name: "bastion", Host: "192.0.2.1", Port: 22, User: "x"} // unreachable
		c, err := Dial(t.Context(), fake, tg, auth, nil, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if len(fake.agents) != 1 || fake.agents[0] != 7 {
			t.Errorf("agent dials %v, want [7]", fake.agents)
		}
	})
	t.Run("jump chain starting at an agent hop", func(t *testing.T) {
		fake := &agentFake{}
		jump := srv.target("bastion", true)
		jump.Agent = 9
		tg := srv.target("web-1", true)
		tg.Jump = jump
		c, err := Dial(t.Context(), fake, tg, auth, nil, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if len(fake.agents) != 1 || fake.agents[0] != 9 {
			t.Errorf("agent dials %v, want [9]", fake.agents)
		}
	})
	t.Run("scan through the agent", func(t *testing.T) {
		fake := &agentFake{}
		tg := srv.target("web-1", false)
		tg.Agent = 3
		k, err := ScanHostKey(t.Context(), fake, tg, testOpts)
		if err != nil || string(k.Marshal()) != string(srv.HostKey().Marshal()) || len(fake.agents) != 1 {
			t.Fatalf("scan: %v %v, agent dials %v", k, err, fake.agents)
		}
	})
	t.Run("plain dialer cannot reach an agent hop", func(t *testing.T) {
		tg := srv.target("web-1", true)
		tg.Agent = 1
		_, err := Dial(t.Context(), netDialer, tg, auth, nil, testOpts)
		if !errors.Is(err, ErrNoAgentRoute) {
			t.Fatalf("err = %v, want ErrNoAgentRoute", err)
		}
	})
}

func agentRun(c *ssh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(cmd)
	return string(out), err
}
