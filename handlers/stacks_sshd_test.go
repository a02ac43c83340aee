package handlers_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// TestStackDeploymentAgainstOpenSSH walks the whole flow through the handlers and
// the worker against a real sshd: add a server, confirm its host key, attach a key
// (the OpenSSH client then logs in with it), detach it (refused again), and after
// the server's host key changes, a deployment is refused before authenticating,
// nothing is written and the server shows blocked until re-pinned.
func TestStackDeploymentAgainstOpenSSH(t *testing.T) {
	sshd := testsshd.Start(t, testsshd.Options{})
	sshd.RequireThrowawayUser(t)
	ctx := context.Background()

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	gwSigner, _ := ssh.NewSignerFromKey(priv)
	gateway := &jobs.Identity{Signer: gwSigner, AuthorizedLine: jobs.KeyLine(gwSigner.PublicKey()) + " " + jobs.IdentityComment}
	deployer := &terminal.Deployer{Dialer: &net.Dialer{}, Auth: terminal.Auth{Signers: []ssh.Signer{gwSigner}}}

	e := newEnv(t, func(c *handlers.Config) {
		c.Stacks = handlers.StacksConfig{Gateway: gateway, Scan: deployer.ScanHostKey}
	})
	e.addUser("root", pw, store.RoleAdmin)
	alice := e.addUser("alice", pw, store.RoleMember)
	worker := jobs.NewWorker(e.store, deployer)
	runAll := func() {
		t.Helper()
		for range 5 {
			ran, err := worker.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !ran {
				return
			}
		}
	}

	// The gateway key is installed by hand (the one-line command); the user's
	// client key is not authorized yet.
	if err := os.WriteFile(sshd.AuthorizedKeysPath(), []byte(gateway.AuthorizedLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := sshd.SSHCommand(t, "true").CombinedOutput(); err == nil {
		t.Fatalf("client key works before any deployment:\n%s", out)
	}

	root := e.browser()
	root.signIn("root", pw)
	root.get("/stacks")
	resp := root.post("/stacks", url.Values{"name": {"prod"}})
	stackPath := resp.Header.Get("Location")
	stackID, _ := strconv.ParseInt(strings.TrimPrefix(stackPath, "/stacks/"), 10, 64)
	root.get(stackPath)
	resp = root.post(stackPath+"/servers", url.Values{
		"name": {"web-1"}, "host": {sshd.Host}, "port": {strconv.Itoa(sshd.Port)}, "user": {sshd.User},
	})
	confirmPath := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(confirmPath, "/hostkey") {
		t.Fatalf("add server: %d %s", resp.StatusCode, confirmPath)
	}
	_, doc := root.get(confirmPath)
	shown := strings.TrimSpace(doc.Find(`[data-testid="presented-fingerprint"]`).Text())
	if shown != ssh.FingerprintSHA256(sshd.HostKey) {
		t.Fatalf("confirm page shows %q, want %s", shown, ssh.FingerprintSHA256(sshd.HostKey))
	}
	pinPath := strings.TrimSuffix(confirmPath, "/hostkey") + "/pin"
	if resp := root.post(pinPath, url.Values{"fingerprint": {shown}, "confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pin: %d", resp.StatusCode)
	}

	keyID := insertKey(t, e.store, alice.ID, "alice_laptop", jobs.KeyLine(sshd.ClientSigner.PublicKey()), ssh.FingerprintSHA256(sshd.ClientSigner.PublicKey()))
	root.get(stackPath + "?tab=keys")
	if resp := root.post(stackPath+"/keys", url.Values{"key": {strconv.FormatInt(keyID, 10)}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("attach: %d", resp.StatusCode)
	}
	runAll()
	if out, err := sshd.SSHCommand(t, "true").CombinedOutput(); err != nil {
		t.Fatalf("OpenSSH login with the attached key: %v\n%s", err, out)
	}
	_, doc = root.get(stackPath)
	if got := doc.Find(`tr[data-server="web-1"] [data-testid="deploy-state"]`).Text(); !strings.Contains(got, "1 deployed") {
		t.Fatalf("server state %q, want deployed", got)
	}
	_, doc = root.get(stackPath + "?tab=log")
	if log := doc.Find(`[data-testid="stack-log"]`).Text(); !strings.Contains(log, "Key alice_laptop deployed to web-1") {
		t.Fatalf("log:\n%s", log)
	}

	// Detach: exactly our line goes, the gateway line stays.
	root.get(stackPath + "?tab=keys")
	if resp := root.post(stackPath+"/keys/"+strconv.FormatInt(keyID, 10)+"/detach", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("detach: %d", resp.StatusCode)
	}
	runAll()
	if out, err := sshd.SSHCommand(t, "true").CombinedOutput(); err == nil {
		t.Fatalf("client key still works after detach:\n%s", out)
	}
	if b, _ := os.ReadFile(sshd.AuthorizedKeysPath()); !bytes.Contains(b, []byte(gateway.AuthorizedLine)) {
		t.Fatalf("gateway line lost:\n%s", b)
	}

	// The server's host key changes; a new attach must not authenticate to it.
	root.get(stackPath + "?tab=keys")
	root.post(stackPath+"/keys", url.Values{"key": {strconv.FormatInt(keyID, 10)}})
	sshd.Restart(t, true)
	before, _ := os.ReadFile(sshd.AuthorizedKeysPath())
	logBefore := len(sshd.Log())
	runAll()
	after, _ := os.ReadFile(sshd.AuthorizedKeysPath())
	if !bytes.Equal(before, after) {
		t.Fatalf("authorized_keys changed despite a changed host key:\n%s", after)
	}
	// Refused in the key exchange: sshd never saw an authentication attempt.
	if tail := sshd.Log()[logBefore:]; strings.Contains(tail, "publickey") || strings.Contains(tail, "Accepted") {
		t.Fatalf("an authentication reached the server with the changed key:\n%s", tail)
	}
	_, doc = root.get(stackPath)
	if got := doc.Find(`tr[data-server="web-1"]`).Text(); !strings.Contains(got, "blocked") {
		t.Fatalf("server row %q, want blocked", got)
	}
	_, doc = root.get(stackPath + "?tab=log")
	if log := doc.Find(`[data-testid="stack-log"]`).Text(); !strings.Contains(log, "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Fatalf("log lacks the host key warning:\n%s", log)
	}
	if ran, _ := worker.RunOnce(ctx); ran {
		t.Fatal("the worker retried a blocked server")
	}

	// Re-pin after comparing: the confirm page shows the new key; deployment resumes.
	_, doc = root.get(confirmPath)
	if !strings.Contains(doc.Text(), "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Fatal("confirm page does not warn about the changed key")
	}
	shown = strings.TrimSpace(doc.Find(`[data-testid="presented-fingerprint"]`).Text())
	if shown != ssh.FingerprintSHA256(sshd.HostKey) {
		t.Fatalf("new key shown as %q, want %s", shown, ssh.FingerprintSHA256(sshd.HostKey))
	}
	root.post(pinPath, url.Values{"fingerprint": {shown}, "confirm": {"yes"}})
	runAll()
	if out, err := sshd.SSHCommand(t, "true").CombinedOutput(); err != nil {
		t.Fatalf("login after re-pin: %v\n%s", err, out)
	}
	ds, _ := e.store.ListDeployments(ctx, stackID)
	if len(ds) != 1 || ds[0].State != store.DeployDeployed {
		t.Fatalf("deployments: %+v", ds)
	}
}

// TestInstallGatewayKeyWithPassword: the admin types the login password once; the
// gateway key lands in authorized_keys, and the password appears nowhere afterwards:
// not in the database (audit, log, any table), not in the page.
func TestInstallGatewayKeyWithPassword(t *testing.T) {
	sshd := testsshd.Start(t, testsshd.Options{Password: true})
	sshd.RequireThrowawayUser(t)
	ctx := context.Background()

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	gwSigner, _ := ssh.NewSignerFromKey(priv)
	gateway := &jobs.Identity{Signer: gwSigner, AuthorizedLine: jobs.KeyLine(gwSigner.PublicKey()) + " " + jobs.IdentityComment}
	dialer := &net.Dialer{}
	e := newEnv(t, func(c *handlers.Config) {
		c.Stacks = handlers.StacksConfig{
			Gateway: gateway,
			InstallWithPassword: func(ctx context.Context, tg *terminal.Target, password string, log func(string)) error {
				return jobs.InstallWithPassword(ctx, dialer, gateway, tg, password, log)
			},
		}
	})
	e.addUser("root", pw, store.RoleAdmin)
	stack := &store.Stack{Name: "prod"}
	e.store.CreateStack(ctx, stack)
	sv := &store.Server{StackID: stack.ID, Name: "web-1", Host: sshd.Host, Port: sshd.Port, LoginUser: sshd.User,
		HostKeys: []string{jobs.KeyLine(sshd.HostKey)}}
	e.store.CreateServer(ctx, sv)

	root := e.browser()
	root.signIn("root", pw)
	_, doc := root.get("/stacks/" + id(stack.ID))
	if doc.Find(`input[name="password"]`).Length() != 1 {
		t.Fatal("no password install form")
	}
	resp := root.post("/stacks/"+id(stack.ID)+"/install", url.Values{"server": {id(sv.ID)}, "password": {sshd.Password}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("install: %d", resp.StatusCode)
	}
	b, _ := os.ReadFile(sshd.AuthorizedKeysPath())
	if !bytes.Contains(b, []byte(jobs.KeyLine(gwSigner.PublicKey()))) {
		t.Fatalf("gateway key not installed:\n%s", b)
	}
	_, doc = root.get("/stacks/" + id(stack.ID))
	if strings.Contains(doc.Text(), sshd.Password) {
		t.Fatal("the page shows the password")
	}
	// No table holds the password, whatever its column.
	rows, err := e.store.DB().Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, tbl := range tables {
		r, err := e.store.DB().Query(`SELECT * FROM "` + tbl + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := r.Columns()
		for r.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			r.Scan(ptrs...)
			for _, v := range vals {
				var s string
				switch x := v.(type) {
				case string:
					s = x
				case []byte:
					s = string(x)
				}
				if strings.Contains(s, sshd.Password) {
					t.Fatalf("table %s stores the password", tbl)
				}
			}
		}
		r.Close()
	}
}
