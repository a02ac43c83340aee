package handlers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// keylessFixture: a stack "prod" with a server "web-1" pointing at a real sshd started
// with opts (host key pinned) and a member alice who has no key attached, so the only
// way in is what the person types.
func keylessFixture(t *testing.T, opts testsshd.Options) *termFixture {
	t.Helper()
	sshd := testsshd.Start(t, opts)
	sshd.RequireThrowawayUser(t) // password and PAM logins need the throwaway user
	e := newEnv(t)
	ctx := context.Background()
	alice := e.addUser("alice", pw, store.RoleMember)
	stack := &store.Stack{Name: "prod"}
	if err := e.store.CreateStack(ctx, stack); err != nil {
		t.Fatal(err)
	}
	sv := &store.Server{StackID: stack.ID, Name: "web-1", Host: sshd.Host, Port: sshd.Port, LoginUser: sshd.User,
		HostKeys: []string{jobs.KeyLine(sshd.HostKey)}}
	if err := e.store.CreateServer(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddStackMember(ctx, stack.ID, alice.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn("alice", pw)
	return &termFixture{env: e, sshd: sshd, stack: stack, server: sv, alice: b, aliceID: alice.ID}
}

// answer replies to the current prompt with the same answer for every question.
func (tc *termClient) answer(a string) {
	p := tc.prompts[len(tc.prompts)-1]
	answers := make([]string, len(p.Questions))
	for i := range answers {
		answers[i] = a
	}
	msg, _ := terminal.EncodeControl(terminal.AnswerMessage{Answers: answers})
	if err := tc.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		tc.t.Fatal(err)
	}
}

func (f *termFixture) open(t *testing.T) *termClient {
	t.Helper()
	ticket, code := f.alice.ticket(f.stack.ID, f.server.ID)
	if code != 200 {
		t.Fatalf("ticket: %d", code)
	}
	return f.alice.openTerminal(f.server.ID, ticket)
}

func (tc *termClient) shellComputes() {
	tc.t.Helper()
	if !tc.until(tc.connected) {
		tc.t.Fatalf("not connected: status %+v, close %d %q", tc.status, tc.code, tc.reason)
	}
	tc.send("echo $((6*7))\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), "42\r\n") }) {
		tc.t.Fatalf("no 42 in output:\n%s", tc.out.String())
	}
	tc.send("exit\n") // end the session before the test's store closes
	tc.until(func() bool { return false })
}

func hidden(p terminal.PromptMessage) bool {
	for _, q := range p.Questions {
		if q.Echo {
			return false
		}
	}
	return len(p.Questions) > 0
}

// TestTerminalPasswordPromptAgainstOpenSSH: with no key attached, OpenSSH's password
// login reaches the browser as a prompt with hidden typing; the right password opens
// the shell, a wrong one ends with 4001 and OpenSSH's "Permission denied".
func TestTerminalPasswordPromptAgainstOpenSSH(t *testing.T) {
	f := keylessFixture(t, testsshd.Options{Password: true})

	tc := f.open(t)
	tc.onPrompt = func(p *terminal.PromptMessage) { tc.answer(f.sshd.Password) }
	tc.shellComputes()
	if len(tc.prompts) != 1 || !hidden(tc.prompts[0]) || !strings.Contains(tc.prompts[0].Questions[0].Text, "password") {
		t.Fatalf("prompts: %+v", tc.prompts)
	}

	bad := f.open(t)
	bad.onPrompt = func(p *terminal.PromptMessage) { bad.answer("not the password") }
	if bad.until(bad.connected) {
		t.Fatal("a wrong password connected")
	}
	if bad.code != terminal.CloseAuthFailed || !strings.Contains(bad.reason, "Permission denied") {
		t.Fatalf("wrong password: close %d %q, want %d Permission denied", bad.code, bad.reason, terminal.CloseAuthFailed)
	}
	if len(bad.prompts) == 0 || len(bad.prompts) > 3 {
		t.Fatalf("wrong password: %d prompts, want 1..3 (bounded retries)", len(bad.prompts))
	}
}

// TestTerminalKeyboardInteractiveTwiceAgainstOpenSSH: sshd requiring two
// keyboard-interactive rounds (AuthenticationMethods keyboard-interactive,
// keyboard-interactive, through PAM) asks twice; both arrive as hidden prompts and the
// shell opens after the second. A wrong answer ends with 4001.
func TestTerminalKeyboardInteractiveTwiceAgainstOpenSSH(t *testing.T) {
	f := keylessFixture(t, testsshd.Options{KbdInteractiveTwice: true})

	tc := f.open(t)
	tc.onPrompt = func(p *terminal.PromptMessage) { tc.answer(f.sshd.Password) }
	tc.shellComputes()
	if len(tc.prompts) != 2 || !hidden(tc.prompts[0]) || !hidden(tc.prompts[1]) {
		t.Fatalf("prompts: %+v, want two hidden rounds", tc.prompts)
	}

	bad := f.open(t)
	bad.onPrompt = func(p *terminal.PromptMessage) { bad.answer("wrong") }
	if bad.until(bad.connected) {
		t.Fatal("a wrong answer connected")
	}
	if bad.code != terminal.CloseAuthFailed || !strings.Contains(bad.reason, "Permission denied") {
		t.Fatalf("wrong answer: close %d %q, want %d Permission denied", bad.code, bad.reason, terminal.CloseAuthFailed)
	}
}
