package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// jumpFixture: the term fixture's web-1 (sshd A, logging at DEBUG1 so its log names
// every forwarded channel) is the jump host of app-1 (sshd B). alice holds the key
// each sshd authorizes, both attached to the stack; both host keys are pinned.
func jumpFixture(t *testing.T, jumpConfig ...string) (*termFixture, *testsshd.SSHD, *store.Server) {
	t.Helper()
	// sshd keeps the first value it reads for a keyword: this wins over VERBOSE.
	f := newTermFixtureWith(t, testsshd.Options{ExtraConfig: append([]string{"LogLevel DEBUG1"}, jumpConfig...)})
	b := testsshd.Start(t, testsshd.Options{})
	ctx := context.Background()
	pem, err := os.ReadFile(b.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	f.alice.get("/keys?add=upload")
	resp := f.alice.postMultipart("/keys/upload", url.Values{"name": {"laptop_b"}}, file{"private_key_file", "id_b", pem})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload B's key: %d", resp.StatusCode)
	}
	keys, _ := f.store.ListKeys(ctx, f.aliceID)
	attached := false
	for _, k := range keys {
		if k.Name == "laptop_b" {
			ref, _ := f.store.KeyRefByID(ctx, k.ID)
			if err := f.store.AttachKey(ctx, f.stack.ID, ref, f.aliceID, time.Now()); err != nil {
				t.Fatal(err)
			}
			attached = true
		}
	}
	if !attached {
		t.Fatal("B's key was not uploaded")
	}
	app := &store.Server{StackID: f.stack.ID, Name: "app-1", Host: b.Host, Port: b.Port, LoginUser: b.User,
		JumpServerID: f.server.ID, HostKeys: []string{jobs.KeyLine(b.HostKey)}}
	if err := f.store.CreateServer(ctx, app); err != nil {
		t.Fatal(err)
	}
	return f, b, app
}

func (f *termFixture) openServer(t *testing.T, sv *store.Server) *termClient {
	t.Helper()
	ticket, code := f.alice.ticket(f.stack.ID, sv.ID)
	if code != http.StatusOK {
		t.Fatalf("ticket for %s: %d", sv.Name, code)
	}
	return f.alice.openTerminal(sv.ID, ticket)
}

// TestTerminalThroughJumpHostAgainstOpenSSH: app-1 is configured behind web-1; the
// terminal reaches it through web-1 (web-1's sshd logs the direct-tcpip channel to
// app-1's port) and the shell is app-1's (its login user).
func TestTerminalThroughJumpHostAgainstOpenSSH(t *testing.T) {
	f, b, app := jumpFixture(t)
	tc := f.openServer(t, app)
	if !tc.until(tc.connected) {
		t.Fatalf("not connected: status %+v, errors %+v, close %d", tc.status, tc.errors, tc.code)
	}
	tc.send("echo $((6*7)) $(id -un)\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), "42 "+b.User+"\r\n") }) {
		t.Fatalf("no '42 %s' in output:\n%s", b.User, tc.out.String())
	}
	tc.send("exit\n")
	tc.until(func() bool { return false })

	// Both ends are on loopback, so B's log cannot tell; A's can: it opened the
	// forwarded channel to B's port for alice.
	fwd := regexp.MustCompile(`direct[-_]tcpip.*127\.0\.0\.1 port ` + strconv.Itoa(b.Port) + `\b`)
	if !strings.Contains(f.sshd.Log(), "userauth-request") {
		t.Fatal("the jump host's log has no DEBUG1 lines: the checks on it would prove nothing")
	}
	if !fwd.MatchString(f.sshd.Log()) {
		t.Fatalf("the jump host's log shows no forward to port %d:\n%s", b.Port, f.sshd.Log())
	}
}

// TestTerminalJumpHostKeyChangedIsRefusedBeforeAuth: someone takes over the jump
// host's address (here: it restarts with a new host key). Connecting to app-1 through
// it stops at the jump hop's key exchange with the host-key message naming the jump
// server, before any key is offered to the impostor.
func TestTerminalJumpHostKeyChangedIsRefusedBeforeAuth(t *testing.T) {
	f, _, app := jumpFixture(t)
	f.sshd.Restart(t, true)
	logBefore := len(f.sshd.Log())

	tc := f.openServer(t, app)
	if tc.until(tc.connected) {
		t.Fatal("connected through a jump host whose key changed")
	}
	if tc.code != terminal.CloseHostKeyChanged || len(tc.errors) == 0 {
		t.Fatalf("close %d %q, errors %+v; want %d", tc.code, tc.reason, tc.errors, terminal.CloseHostKeyChanged)
	}
	msg := tc.errors[len(tc.errors)-1].Message
	if !strings.Contains(msg, "REMOTE HOST IDENTIFICATION HAS CHANGED") || !strings.Contains(msg, "web-1") || strings.Contains(msg, "app-1") {
		t.Fatalf("message %q: want the host-key warning naming the jump server web-1", msg)
	}
	// The impostor never saw an authentication attempt.
	after := f.sshd.Log()
	if len(after) >= logBefore {
		after = after[logBefore:]
	}
	for _, w := range []string{"userauth-request", "Failed publickey", "Accepted publickey", "Postponed publickey"} {
		if strings.Contains(after, w) {
			t.Fatalf("the jump host saw %q after its key changed:\n%s", w, after)
		}
	}
}

// TestTerminalJumpHostWithoutForwardingCannotReachTarget proves the negative: when the
// jump host refuses forwarding (AllowTcpForwarding no), app-1 — although its port is
// reachable directly on loopback — cannot be opened, so the path really is through
// web-1. The person gets a plain connection-failure message, not a shell.
func TestTerminalJumpHostWithoutForwardingCannotReachTarget(t *testing.T) {
	f, _, app := jumpFixture(t, "AllowTcpForwarding no")
	tc := f.openServer(t, app)
	if tc.until(tc.connected) {
		t.Fatal("connected to app-1 although its jump host forwards nothing")
	}
	if tc.code != terminal.CloseConnectFailed || len(tc.errors) == 0 {
		t.Fatalf("close %d %q, errors %+v; want %d", tc.code, tc.reason, tc.errors, terminal.CloseConnectFailed)
	}
	t.Logf("message: %s", tc.errors[len(tc.errors)-1].Message)
}
