package handlers_test

import (
	"bytes"
	"context"
	"fmt"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/netnstest"
	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/tunnel"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// shellgateBinary builds cmd/shellgate once per test run: the agent runs as the
// real binary inside the namespace.
func shellgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shellgate-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "shellgate")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/shellgate/shellgate/cmd/shellgate")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build shellgate: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// agentEnv is shellgate listening on the test's end of a veth pair, with an agent
// hub, a deployment worker, and a hidden host (network namespace) running sshd.
type agentEnv struct {
	*env
	ns      *netnstest.NS
	sshd    *testsshd.SSHD
	hub     *tunnel.Hub
	worker  *jobs.Worker
	gateway *jobs.Identity
	logs    *syncBuffer
	bin     string
}

func newAgentEnv(t *testing.T, heartbeat time.Duration) *agentEnv {
	t.Helper()
	ns := netnstest.New(t)
	sshd := testsshd.Start(t, testsshd.Options{Netns: ns.Name})
	sshd.RequireThrowawayUser(t)
	bin := shellgateBinary(t)

	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "test.db")
	st, err := store.OpenSQLite(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keyring, err := secrets.LoadOrCreateMaster(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := newTestLogger(logs)
	hub := tunnel.NewHub(tunnel.HubConfig{Store: st, Logger: logger, Heartbeat: heartbeat, OnEvent: tunnel.Audit(st)})
	t.Cleanup(hub.Close)
	router := &tunnel.Router{Direct: &net.Dialer{}, Hub: hub}
	sources := tunnel.NewSourceHub(tunnel.SourceConfig{Store: st, Dialer: router, Logger: logger, OnEvent: tunnel.AuditConnections(st)})
	t.Cleanup(sources.Close)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	gwSigner, _ := ssh.NewSignerFromKey(priv)
	gateway := &jobs.Identity{Signer: gwSigner, AuthorizedLine: jobs.KeyLine(gwSigner.PublicKey()) + " " + jobs.IdentityComment}
	deployer := &terminal.Deployer{Dialer: router, Auth: terminal.Auth{Signers: []ssh.Signer{gwSigner}}}
	cfg := handlers.Config{
		SessionHashKey: randomKey(64), SessionBlockKey: randomKey(32), CSRFKey: randomKey(32), Secrets: keyring,
		Logger: logger,
		Stacks: handlers.StacksConfig{Gateway: gateway, Dialer: router, Scan: deployer.ScanHostKey, Agents: hub, Tunnels: sources},
		Terminals:      terminal.NewManager(terminal.Config{Dialer: router, Logger: logger}),
		AgentEndpoint:  hub,
		TunnelEndpoint: sources,
	}
	e, _, err := handlers.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	// The only non-loopback address of the test: our end of the veth pair.
	ln, err := net.Listen("tcp", net.JoinHostPort(ns.HostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	worker := jobs.NewWorker(st, deployer)
	return &agentEnv{
		env: &env{t: t, srv: srv, store: st, dbPath: dbPath, keyring: keyring},
		ns:  ns, sshd: sshd, hub: hub, worker: worker, gateway: gateway, logs: logs, bin: bin,
	}
}

// agentProc is a shellgate agent running inside the namespace.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

// startAgent runs "shellgate agent" in the namespace; tokenFile may be "".
func (a *agentEnv) startAgent(stateDir, tokenFile string) *agentProc {
	a.t.Helper()
	args := []string{"agent", "--url", a.srv.URL, "--state-dir", stateDir,
		"--allow", "127.0.0.1:" + strconv.Itoa(a.sshd.Port)}
	if tokenFile != "" {
		args = append(args, "--token-file", tokenFile)
	}
	p := &agentProc{stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = a.ns.Command(a.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	a.t.Cleanup(p.kill)
	return p
}

// kill ends the agent (by its PID) and waits for it.
func (p *agentProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// TestAgentNetnsEndToEnd is the hidden-host journey with real parts: an admin
// adds a server reached through an agent, the real agent binary inside a
// network namespace enrolls with the token and dials out over the veth pair;
// shellgate cannot dial that sshd itself, yet the host key is read and pinned,
// a key is deployed into the namespace's authorized_keys, and a member's
// terminal and file transfers work, all through the agent. Killing the agent
// ends the terminal with a plain message; restarted, it reconnects with its
// own credential; a new token revokes it at once.
func TestAgentNetnsEndToEnd(t *testing.T) {
	a := newAgentEnv(t, time.Second)
	ctx := context.Background()
	sshd := a.sshd

	// Proof the path cannot be direct: shellgate's own dial of that sshd, by its
	// loopback address or the namespace's veth address, fails.
	for _, addr := range []string{sshd.Addr, net.JoinHostPort(a.ns.NSIP, strconv.Itoa(sshd.Port))} {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		tg := &terminal.Target{Name: "direct", Host: host, Port: p, User: sshd.User, HostKeys: []ssh.PublicKey{sshd.HostKey}}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := terminal.Dial(dctx, &net.Dialer{}, tg, terminal.Auth{Signers: []ssh.Signer{sshd.ClientSigner}}, nil, terminal.DialOptions{KeepaliveInterval: -1})
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("direct dial to %s reached the hidden sshd", addr)
		}
	}

	a.addUser("root", pw, store.RoleAdmin)
	alice := a.addUser("alice", pw, store.RoleMember)
	root := a.browser()
	root.signIn("root", pw)
	root.get("/stacks")
	resp := root.post("/stacks", url.Values{"name": {"edge"}})
	stackPath := resp.Header.Get("Location")
	stackID, _ := strconv.ParseInt(strings.TrimPrefix(stackPath, "/stacks/"), 10, 64)
	root.get(stackPath)
	resp = root.post(stackPath+"/servers", url.Values{
		"name": {"nas"}, "host": {"127.0.0.1"}, "port": {strconv.Itoa(sshd.Port)}, "user": {sshd.User}, "via": {"agent"},
	})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("add server via agent: %d %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	page := parse(t, resp)
	token, _ := page.Find(`[data-testid="agent-token-value"]`).Attr("value")
	command := page.Find(`[data-testid="agent-command"]`).Text()
	if !strings.HasPrefix(token, "sgd_") || !strings.Contains(command, "--token-file") || strings.Contains(command, token) {
		t.Fatalf("token page: token %q, command %q", token, command)
	}
	svs, _ := a.store.ListServers(ctx, stackID)
	if len(svs) != 1 || !svs[0].ViaAgent {
		t.Fatalf("servers %+v", svs)
	}
	sv := svs[0]
	if svs[0].PresentedKey != "" {
		t.Fatalf("a server behind an agent was scanned directly: %q", svs[0].PresentedKey)
	}
	// The token is shown once: the stack page never shows it again.
	if _, doc := root.get(stackPath); strings.Contains(doc.Text(), token) {
		t.Fatal("the stack page shows the token again")
	}

	stateDir := filepath.Join(t.TempDir(), "agent-state")
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	agent := a.startAgent(stateDir, tokenFile)
	waitFor(t, "agent connected", func() bool { return a.hub.Connected(sv.ID) || agent.exited() })
	if agent.exited() {
		t.Fatalf("agent exited:\n%s", agent.stderr.String())
	}
	if _, doc := root.get(stackPath); !strings.Contains(doc.Find(`tr[data-server="nas"] [data-testid="agent-state"]`).Text(), "agent connected") {
		t.Fatal("stack page does not show the agent connected")
	}

	// Host key: read through the agent, then pinned by the admin.
	root.get(stackPath)
	resp = root.post(stackPath+"/servers/"+id(sv.ID)+"/scan", nil)
	resp.Body.Close()
	_, doc := root.get(stackPath + "/servers/" + id(sv.ID) + "/hostkey")
	shown := strings.TrimSpace(doc.Find(`[data-testid="presented-fingerprint"]`).Text())
	if shown != ssh.FingerprintSHA256(sshd.HostKey) {
		t.Fatalf("host key read through the agent: %q, want %s\n%s", shown, ssh.FingerprintSHA256(sshd.HostKey), a.logs.String())
	}
	if resp := root.post(stackPath+"/servers/"+id(sv.ID)+"/pin", url.Values{"fingerprint": {shown}, "confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pin: %d", resp.StatusCode)
	}

	// Deployment through the agent: the gateway key is installed by hand (the
	// one-line command), then an attached key lands in the namespace's sshd's
	// authorized_keys.
	ak, _ := os.ReadFile(sshd.AuthorizedKeysPath())
	os.WriteFile(sshd.AuthorizedKeysPath(), append(ak, []byte(a.gateway.AuthorizedLine+"\n")...), 0o600)
	_, dpriv, _ := ed25519.GenerateKey(rand.Reader)
	dsigner, _ := ssh.NewSignerFromKey(dpriv)
	deployLine := jobs.KeyLine(dsigner.PublicKey())
	ciKey := insertKey(t, a.store, alice.ID, "ci_key", deployLine, ssh.FingerprintSHA256(dsigner.PublicKey()))
	root.get(stackPath + "?tab=keys")
	if resp := root.post(stackPath+"/keys", url.Values{"key": {id(ciKey)}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("attach: %d", resp.StatusCode)
	}
	for range 5 {
		if ran, err := a.worker.RunOnce(ctx); err != nil {
			t.Fatal(err)
		} else if !ran {
			break
		}
	}
	if b, _ := os.ReadFile(sshd.AuthorizedKeysPath()); !bytes.Contains(b, []byte(deployLine)) {
		deps, _ := a.store.ListDeployments(ctx, stackID)
		t.Fatalf("deployed key not in the hidden host's authorized_keys:\n%s\ndeployments %+v", b, deps)
	}

	// A member's terminal and files, through the agent.
	a.store.AddStackMember(ctx, stackID, alice.ID, time.Now())
	ab := a.browser()
	ab.signIn("alice", pw)
	ab.get("/keys?add=upload")
	pemBytes, _ := os.ReadFile(sshd.ClientKeyPath)
	resp = ab.postMultipart("/keys/upload", url.Values{"name": {"laptop"}}, file{"private_key_file", "id_ed25519", pemBytes})
	resp.Body.Close()
	keys, _ := a.store.ListKeys(ctx, alice.ID)
	var laptop int64
	for _, k := range keys {
		if k.Name == "laptop" {
			laptop = k.ID
		}
	}
	ref, _ := a.store.KeyRefByID(ctx, laptop)
	if err := a.store.AttachKey(ctx, stackID, ref, alice.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	ticket, code := ab.ticket(stackID, sv.ID)
	if code != http.StatusOK {
		t.Fatalf("ticket: %d", code)
	}
	tc := ab.openTerminal(sv.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("terminal through the agent: status %+v close %d %q\n%s", tc.status, tc.code, tc.reason, a.logs.String())
	}
	// The shell runs inside the namespace: it sees the namespace's address.
	tc.send("ip -o -4 addr show; echo done-$((6*7))\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), "done-42") }) ||
		!strings.Contains(tc.out.String(), a.ns.NSIP) {
		t.Fatalf("terminal output:\n%s", tc.out.String())
	}

	f := &termFixture{env: a.env, sshd: sshd, stack: &store.Stack{ID: stackID}, server: &sv, alice: ab, aliceID: alice.ID}
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if code, msg := f.upload(ab, sshd.Home, "through-agent.bin", data, false); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, msg)
	}
	if onDisk, _ := os.ReadFile(filepath.Join(sshd.Home, "through-agent.bin")); !bytes.Equal(onDisk, data) {
		t.Fatalf("uploaded file differs on the hidden host (%d bytes)", len(onDisk))
	}
	resp = ab.call(http.MethodGet, f.filesURL("/download?path="+url.QueryEscape(filepath.Join(sshd.Home, "through-agent.bin"))), nil)
	got := body(t, resp)
	if resp.StatusCode != http.StatusOK || got != string(data) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(got))
	}

	// A tunnel for native clients reaches the hidden host through the agent:
	// the real ssh, through shellgate proxy, runs a command inside the namespace.
	te := &tunnelEnv{env: a.env, sshd: sshd, stackID: stackID, server: &sv, alice: ab, bin: a.bin}
	ptoken, _ := te.openTunnel("1h")
	proxy := te.startProxy(ptoken)
	waitFor(t, "proxy open", func() bool { return strings.Contains(proxy.out.String(), "Tunnel to nas open") || proxy.exited() })
	out, err := exec.Command("ssh", append(te.sshArgs(t, proxy.port, "-p"), sshd.User+"@127.0.0.1", "ip -o -4 addr show")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), a.ns.NSIP) {
		t.Fatalf("ssh through the proxy and the agent: %v\n%s\n%s", err, out, proxy.out.String())
	}
	proxy.cmd.Process.Kill()

	// Ten sessions through the agent at once (this one and nine more), for the
	// agent's memory figure below.
	var more []*termClient
	for range 9 {
		tk, _ := ab.ticket(stackID, sv.ID)
		c := ab.openTerminal(sv.ID, tk)
		if !c.until(c.connected) {
			t.Fatalf("extra terminal: %+v %d %q", c.status, c.code, c.reason)
		}
		c.send("echo extra-$((2+3))\n")
		if !c.until(func() bool { return strings.Contains(c.out.String(), "extra-5") }) {
			t.Fatalf("extra terminal output:\n%s", c.out.String())
		}
		more = append(more, c)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", agent.cmd.Process.Pid)); err == nil {
		for l := range strings.Lines(string(b)) {
			if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
				t.Logf("agent carrying 10 terminal sessions (after a 3 MiB upload and download): %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}

	for _, c := range more {
		c.ws.Close()
	}
	// Kill the agent mid-session: the terminal ends and says why, plainly.
	agent.kill()
	tc.until(func() bool { return false })
	last := tc.status[len(tc.status)-1]
	if last.State != terminal.StateClosed || !strings.Contains(strings.ToLower(last.Message+tc.reason), "agent") {
		t.Errorf("after the agent died: close %d %q, status %+v", tc.code, tc.reason, last)
	}
	waitFor(t, "link gone", func() bool { return !a.hub.Connected(sv.ID) })
	ticket, _ = ab.ticket(stackID, sv.ID)
	tc = ab.openTerminal(sv.ID, ticket)
	tc.until(func() bool { return false })
	if msg := strings.ToLower(agentLastMessage(tc)); !strings.Contains(msg, "agent") || !strings.Contains(msg, "not connected") {
		t.Errorf("terminal while the agent is down: %q (close %d %q)", agentLastMessage(tc), tc.code, tc.reason)
	}

	// Restarted without the token: it reconnects with its own credential.
	os.Remove(tokenFile)
	agent = a.startAgent(stateDir, "")
	waitFor(t, "agent reconnected", func() bool { return a.hub.Connected(sv.ID) || agent.exited() })
	if agent.exited() {
		t.Fatalf("agent exited:\n%s", agent.stderr.String())
	}
	// An agent that stops answering heartbeats (frozen) is marked disconnected
	// within three intervals (1 s here; 20 s by default, so within 60 s).
	agent.cmd.Process.Signal(syscall.SIGSTOP)
	frozeAt := time.Now()
	waitFor(t, "frozen agent marked disconnected", func() bool {
		ag, err := a.store.AgentOf(ctx, sv.ID)
		return err == nil && !ag.Connected && !a.hub.Connected(sv.ID)
	})
	if d := time.Since(frozeAt); d > 60*time.Second {
		t.Errorf("frozen agent marked disconnected after %v", d)
	}
	agent.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, "thawed agent reconnected", func() bool { return a.hub.Connected(sv.ID) })

	ticket, _ = ab.ticket(stackID, sv.ID)
	tc = ab.openTerminal(sv.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("terminal after the agent's restart: %+v %d %q", tc.status, tc.code, tc.reason)
	}

	// Generate new token: the enrolled agent is cut off at once and stops.
	root.get(stackPath)
	resp = root.post(stackPath+"/servers/"+id(sv.ID)+"/agent/token", nil)
	newToken, _ := parse(t, resp).Find(`[data-testid="agent-token-value"]`).Attr("value")
	if newToken == "" || newToken == token {
		t.Fatalf("new token %q", newToken)
	}
	waitFor(t, "revoked agent gone", func() bool { return agent.exited() && !a.hub.Connected(sv.ID) })
	if !strings.Contains(agent.stderr.String(), "revoked") {
		t.Errorf("agent's last words:\n%s", agent.stderr.String())
	}
	tc.until(func() bool { return false })

	// No token in any log, shellgate's or the agent's.
	for _, l := range []string{a.logs.String(), agent.stderr.String()} {
		if strings.Contains(l, token) || strings.Contains(l, newToken) {
			t.Fatal("a token appears in a log")
		}
	}
	events, _ := a.store.ListEvents(ctx, store.EventFilter{Kind: "agent."})
	kinds := map[string]bool{}
	for _, e := range events {
		kinds[e.Kind] = true
		for _, v := range e.Detail {
			if strings.Contains(v, token) {
				t.Fatal("a token in the audit log")
			}
		}
	}
	if !kinds["agent.token"] || !kinds["agent.enroll"] || !kinds["agent.connect"] || !kinds["agent.disconnect"] {
		t.Errorf("audit kinds %v", kinds)
	}
}

func agentLastMessage(tc *termClient) string {
	if len(tc.errors) > 0 {
		return tc.errors[len(tc.errors)-1].Message
	}
	if len(tc.status) > 0 {
		return tc.status[len(tc.status)-1].Message
	}
	return tc.reason
}
