package terminal

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// The same journeys as the in-process tests, against a real OpenSSH sshd:
// that is what users connect to.

func opensshHooks(d *testsshd.SSHD, pinned ssh.PublicKey, auth Auth) func() Hooks {
	return func() Hooks {
		return Hooks{
			UserID: "alice",
			Open: func(context.Context, OpenMessage) (*Target, Auth, error) {
				return &Target{Name: "real-1", Host: d.Host, Port: d.Port, User: d.User, HostKeys: []ssh.PublicKey{pinned}}, auth, nil
			},
		}
	}
}

func TestOpenSSHShell(t *testing.T) {
	d := testsshd.Start(t, testsshd.Options{})
	r := newRig(t, Config{}, opensshHooks(d, d.HostKey, Auth{Signers: []ssh.Signer{d.ClientSigner}}))
	c := r.dial()
	c.open("real-1")
	c.type_("echo $((6*7))\r")
	c.waitOutput("42")
	c.type_("stty size\r")
	c.waitOutput("24 80")
	c.send(ResizeMessage{Cols: 132, Rows: 43})
	c.type_("sleep 0.2; stty size\r")
	c.waitOutput("43 132")
	c.type_("exit 3\r")
	st := c.waitStatus(StateClosed)
	if st.ExitStatus == nil || *st.ExitStatus != 3 {
		t.Errorf("closed status %#v", st)
	}
	if code := c.waitClosed(); code != CloseNormal {
		t.Errorf("close %d", code)
	}
}

func TestOpenSSHKeyboardInteractiveRounds(t *testing.T) {
	d := testsshd.Start(t, testsshd.Options{KbdInteractiveTwice: true})
	r := newRig(t, Config{}, opensshHooks(d, d.HostKey, Auth{}))
	c := r.dial()
	c.send(OpenMessage{Server: "real-1", Cols: 80, Rows: 24, Ticket: "t"})
	for round := range 2 {
		p := expect[PromptMessage](c, TypeStatus)
		if len(p.Questions) != 1 || p.Questions[0].Echo || !strings.Contains(p.Questions[0].Text, "assword") {
			t.Fatalf("round %d prompt %#v", round, p)
		}
		c.send(AnswerMessage{Answers: []string{d.Password}})
	}
	expect[SessionMessage](c, TypeStatus)
	c.waitStatus(StateConnected)
	c.type_("echo $((6*7))\r")
	c.waitOutput("42")
}

// TestOpenSSHChangedHostKeyNoAuth: against real sshd, a changed key ends
// the connection before any userauth request; sshd's verbose log shows no
// authentication attempt at all.
func TestOpenSSHChangedHostKeyNoAuth(t *testing.T) {
	d := testsshd.Start(t, testsshd.Options{Password: true})
	p := &prompterFunc{answer: func(Prompt) ([]string, error) { return []string{d.Password}, nil }}
	tg := &Target{Name: "real-1", Host: d.Host, Port: d.Port, User: d.User, HostKeys: []ssh.PublicKey{newSigner(t).PublicKey()}}
	_, err := Dial(t.Context(), netDialer, tg, Auth{Signers: []ssh.Signer{d.ClientSigner}, Prompter: p}, nil, testOpts)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("err %v", err)
	}
	if p.count() != 0 {
		t.Error("password asked for an impostor")
	}
	log := d.Log()
	for _, s := range []string{"Accepted", "Failed", "Postponed", "userauth"} {
		if strings.Contains(log, s) {
			t.Errorf("sshd log mentions %q: an authentication attempt reached the server:\n%s", s, log)
		}
	}
}

func TestOpenSSHAuthFailedMessage(t *testing.T) {
	d := testsshd.Start(t, testsshd.Options{})
	_, err := Dial(t.Context(), netDialer,
		&Target{Name: "real-1", Host: d.Host, Port: d.Port, User: d.User, HostKeys: []ssh.PublicKey{d.HostKey}},
		Auth{Signers: []ssh.Signer{newSigner(t)}}, nil, testOpts)
	if !errors.Is(err, ErrAuthFailed) || CloseCode(err) != CloseAuthFailed {
		t.Fatalf("err %v code %d", err, CloseCode(err))
	}
	if want := d.User + "@real-1: Permission denied (publickey). Tried: publickey."; UserMessage(err) != want {
		t.Errorf("UserMessage = %q, want %q", UserMessage(err), want)
	}
}
