package handlers_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
)

// TestSSHTabTiesLoginsToSessions: after alice's terminal session on the real sshd,
// refreshing the ssh tab reads sshd's own log (its -E file, set as the server's SSH
// log file) as the gateway key and lists her login as accepted, tied to her session.
// A second refresh adds nothing (lines are de-duplicated).
func TestSSHTabTiesLoginsToSessions(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	gwSigner, _ := ssh.NewSignerFromKey(priv)
	gateway := &jobs.Identity{Signer: gwSigner, AuthorizedLine: jobs.KeyLine(gwSigner.PublicKey()) + " " + jobs.IdentityComment}
	f := newTermFixture(t, func(c *handlers.Config) { c.Stacks.Gateway = gateway })
	ak, err := os.OpenFile(f.sshd.AuthorizedKeysPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ak.WriteString(gateway.AuthorizedLine + "\n")
	ak.Close()

	// sshd creates its -E file for root only; on a real server the login would be in
	// the adm group to read /var/log/auth.log.
	os.Chmod(f.sshd.LogFile, 0o644)
	runSession(t, f, "echo hi-$((1+1))", "hi-2")
	end := endEvent(t, f.store)
	sid := end.Detail["session"]

	ctx := context.Background()
	f.env.addUser("root", pw, store.RoleAdmin)
	admin := f.env.browser()
	admin.signIn("root", pw)
	admin.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=ssh")
	resp := admin.post("/stacks/"+id(f.stack.ID)+"/servers/"+id(f.server.ID)+"/sshlog", map[string][]string{"ssh_log_file": {f.sshd.LogFile}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("set ssh log file: %d", resp.StatusCode)
	}
	if p, _ := f.store.ServerSSHLogFile(ctx, f.server.ID); p != f.sshd.LogFile {
		t.Fatalf("override %q", p)
	}
	// A path with shell characters is refused.
	resp = admin.post("/stacks/"+id(f.stack.ID)+"/servers/"+id(f.server.ID)+"/sshlog", map[string][]string{"ssh_log_file": {"/tmp/x'; rm -rf /"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("shell characters: %d", resp.StatusCode)
	}

	// alice, a member, refreshes the tab herself.
	f.alice.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=ssh")
	resp = f.alice.post("/stacks/"+id(f.stack.ID)+"/sshlog/refresh", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("refresh: %d", resp.StatusCode)
	}
	_, doc := f.alice.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=ssh")
	text := doc.Find(`[data-testid="stack-log"]`).Text()
	want := "accepted publickey for " + f.sshd.User
	tied := "shellgate session " + sid + " by alice"
	found := false
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, want) && strings.Contains(line, tied) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no accepted login tied to %s in the ssh tab:\n%s\nsshd log:\n%s", sid, text, f.sshd.Log())
	}
	before, _ := f.store.ListStackLog(ctx, f.stack.ID, store.LogSSH, 1000)
	// Reading is limited to once a minute per stack: each read connects to every server.
	resp = f.alice.post("/stacks/"+id(f.stack.ID)+"/sshlog/refresh", nil)
	resp.Body.Close()
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("a second read within a minute was not limited")
	}
	if err := f.store.ClearThrottle(ctx, "sshlog:"+id(f.stack.ID)); err != nil {
		t.Fatal(err)
	}
	resp = f.alice.post("/stacks/"+id(f.stack.ID)+"/sshlog/refresh", nil)
	resp.Body.Close()
	after, _ := f.store.ListStackLog(ctx, f.stack.ID, store.LogSSH, 1000)
	// The second refresh's own login (the gateway) may add one line; nothing is doubled.
	seen := map[string]bool{}
	for _, l := range after {
		if seen[l.Line] {
			t.Fatalf("line doubled: %s", l.Line)
		}
		seen[l.Line] = true
	}
	if len(after) > len(before)+1 {
		t.Fatalf("second refresh added %d lines", len(after)-len(before))
	}
}

// TestSSHTabShowsMembersOnlyTheStacksLogins: issue 12 — any member could make shellgate
// read a server's sshd log with the gateway key and see every login on the host. Now
// a member sees the lines of the stack's login user and shellgate's own sessions; a
// login attempt by another user of the host appears to admins only. Reads are limited
// per stack.
func TestSSHTabShowsMembersOnlyTheStacksLogins(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	gwSigner, _ := ssh.NewSignerFromKey(priv)
	gateway := &jobs.Identity{Signer: gwSigner, AuthorizedLine: jobs.KeyLine(gwSigner.PublicKey()) + " " + jobs.IdentityComment}
	f := newTermFixture(t, func(c *handlers.Config) { c.Stacks.Gateway = gateway })
	ak, err := os.OpenFile(f.sshd.AuthorizedKeysPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ak.WriteString(gateway.AuthorizedLine + "\n")
	ak.Close()
	os.Chmod(f.sshd.LogFile, 0o644)
	ctx := context.Background()
	if err := f.store.SetServerSSHLogFile(ctx, f.server.ID, f.sshd.LogFile); err != nil {
		t.Fatal(err)
	}
	runSession(t, f, "echo hi-$((2+2))", "hi-4")

	// Someone else tries the host: another login name, a key it does not know.
	const stranger = "someoneelse"
	_, spriv, _ := ed25519.GenerateKey(rand.Reader)
	ssigner, _ := ssh.NewSignerFromKey(spriv)
	cfg := &ssh.ClientConfig{User: stranger, Auth: []ssh.AuthMethod{ssh.PublicKeys(ssigner)},
		HostKeyCallback: ssh.FixedHostKey(f.sshd.HostKey), Timeout: 10 * time.Second}
	if c, err := ssh.Dial("tcp", net.JoinHostPort(f.sshd.Host, strconv.Itoa(f.sshd.Port)), cfg); err == nil {
		c.Close()
		t.Fatal("the stranger got in")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.sshd.Log(), stranger) {
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not log the stranger:\n%s", f.sshd.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}

	f.alice.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=ssh")
	resp := f.alice.post("/stacks/"+id(f.stack.ID)+"/sshlog/refresh", nil)
	resp.Body.Close()
	_, doc := f.alice.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=ssh")
	member := doc.Find(`[data-testid="stack-log"]`).Text()
	if !strings.Contains(member, "accepted publickey for "+f.sshd.User) {
		t.Fatalf("the member does not see the stack's own login:\n%s", member)
	}
	if strings.Contains(member, stranger) {
		t.Fatalf("the member sees another user's login attempt on the host:\n%s", member)
	}

	f.env.addUser("root", pw, store.RoleAdmin)
	admin := f.env.browser()
	admin.signIn("root", pw)
	_, doc = admin.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=ssh")
	if all := doc.Find(`[data-testid="stack-log"]`).Text(); !strings.Contains(all, stranger) || !strings.Contains(all, "accepted publickey for "+f.sshd.User) {
		t.Fatalf("the admin does not see the host's whole login history:\n%s", all)
	}
}
