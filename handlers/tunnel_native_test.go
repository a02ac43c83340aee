package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"
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
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/tunnel"
)

// tunnelEnv: shellgate on loopback with agent and tunnel endpoints, a stack with
// one server (a real sshd, host key pinned) and a member alice.
type tunnelEnv struct {
	*env
	sshd    *testsshd.SSHD
	sources *tunnel.SourceHub
	stackID int64
	server  *store.Server
	alice   *browser
	logs    *syncBuffer
	bin     string
}

func newTunnelEnv(t *testing.T) *tunnelEnv {
	t.Helper()
	sshd := testsshd.Start(t, testsshd.Options{})
	sshd.RequireThrowawayUser(t)
	bin := shellgateBinary(t)
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "test.db")
	st, err := store.OpenSQLite(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keyring, _ := secrets.LoadOrCreateMaster(t.TempDir())
	logs := &syncBuffer{}
	logger := newTestLogger(logs)
	hub := tunnel.NewHub(tunnel.HubConfig{Store: st, Logger: logger})
	t.Cleanup(hub.Close)
	router := &tunnel.Router{Direct: &net.Dialer{}, Hub: hub}
	sources := tunnel.NewSourceHub(tunnel.SourceConfig{Store: st, Dialer: router, Logger: logger, OnEvent: tunnel.AuditConnections(st)})
	t.Cleanup(sources.Close)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	gw, _ := ssh.NewSignerFromKey(priv)
	cfg := handlers.Config{
		SessionHashKey: randomKey(64), SessionBlockKey: randomKey(32), CSRFKey: randomKey(32), Secrets: keyring, Logger: logger,
		Stacks: handlers.StacksConfig{
			Gateway: &jobs.Identity{Signer: gw, AuthorizedLine: jobs.KeyLine(gw.PublicKey())},
			Dialer:  router, Agents: hub, Tunnels: sources, TunnelMinLifetime: time.Second,
		},
		Terminals:     terminal.NewManager(terminal.Config{Dialer: router, Logger: logger}),
		AgentEndpoint: hub, TunnelEndpoint: sources,
	}
	e, _, err := handlers.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	en := &env{t: t, srv: srv, store: st, dbPath: dbPath, keyring: keyring}
	alice := en.addUser("alice", pw, store.RoleMember)
	stack := &store.Stack{Name: "prod"}
	st.CreateStack(ctx, stack)
	sv := &store.Server{StackID: stack.ID, Name: "web-1", Host: sshd.Host, Port: sshd.Port, LoginUser: sshd.User,
		HostKeys: []string{jobs.KeyLine(sshd.HostKey)}}
	if err := st.CreateServer(ctx, sv); err != nil {
		t.Fatal(err)
	}
	st.AddStackMember(ctx, stack.ID, alice.ID, time.Now())
	b := en.browser()
	b.signIn("alice", pw)
	return &tunnelEnv{env: en, sshd: sshd, sources: sources, stackID: stack.ID, server: sv, alice: b, logs: logs, bin: bin}
}

// openTunnel posts the server row's form and returns the source token and the
// tunnel's id.
func (te *tunnelEnv) openTunnel(lifetime string) (string, int64) {
	te.t.Helper()
	te.alice.get("/stacks/" + id(te.stackID))
	resp := te.alice.post("/stacks/"+id(te.stackID)+"/servers/"+id(te.server.ID)+"/tunnels",
		url.Values{"description": {"debugging"}, "lifetime": {lifetime}})
	return te.tokenFrom(resp)
}

func (te *tunnelEnv) tokenFrom(resp *http.Response) (string, int64) {
	te.t.Helper()
	if resp.StatusCode != http.StatusOK {
		te.t.Fatalf("tunnel token page: %d %s", resp.StatusCode, body(te.t, resp))
	}
	doc := parse(te.t, resp)
	token, _ := doc.Find(`[data-testid="tunnel-token-value"]`).Attr("value")
	cmd := doc.Find(`[data-testid="tunnel-command"]`).Text()
	if !strings.HasPrefix(token, "sgd_") || strings.Contains(cmd, token) || !strings.Contains(cmd, "--token-file") {
		te.t.Fatalf("token %q command %q", token, cmd)
	}
	href, _ := doc.Find(`a[href^="/tunnels/"]`).Attr("href")
	tid, _ := strconv.ParseInt(strings.TrimPrefix(href, "/tunnels/"), 10, 64)
	return token, tid
}

// proxyProc is a running "shellgate proxy".
type proxyProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	port int
	done chan struct{}
	err  error
}

func (te *tunnelEnv) startProxy(token string) *proxyProc {
	te.t.Helper()
	tf := filepath.Join(te.t.TempDir(), "token")
	os.WriteFile(tf, []byte(token+"\n"), 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := &proxyProc{out: &syncBuffer{}, port: port, done: make(chan struct{})}
	p.cmd = exec.Command(te.bin, "proxy", "--url", te.srv.URL, "--token-file", tf, "-s", strconv.Itoa(port))
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		te.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	te.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proxyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proxyProc) waitOpen(t *testing.T) {
	t.Helper()
	waitFor(t, "proxy open", func() bool { return strings.Contains(p.out.String(), "open: ") || p.exited() })
	if p.exited() {
		t.Fatalf("proxy exited: %v\n%s", p.err, p.out.String())
	}
}

// sshArgs are OpenSSH client options for the server through the proxy: batch
// mode, the authorized key, the real host key pinned for [127.0.0.1]:port.
func (te *tunnelEnv) sshArgs(t *testing.T, port int, portFlag string) []string {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(te.sshd.HostKey))), 0o644)
	return []string{"-F", "none", "-i", te.sshd.ClientKeyPath, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", portFlag, strconv.Itoa(port)}
}

// bannerConn opens a raw connection through the proxy and reads the server's
// SSH banner: a live connection through the tunnel.
func bannerConn(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
		t.Fatalf("banner through the tunnel: %q %v", line, err)
	}
	return c
}

// cutWithin asserts that c is closed by the far side within d.
func cutWithin(t *testing.T, what string, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("%s: the live connection was not cut within %v", what, d)
	}
}

// TestTunnelNativeClients: the real OpenSSH ssh and sftp through "shellgate
// proxy": a command, a 100 MiB file both ways byte-exact, 20 parallel
// connections; the tunnel page shows the traffic; the audit log has every
// proxied connection.
func TestTunnelNativeClients(t *testing.T) {
	te := newTunnelEnv(t)
	token, tid := te.openTunnel("1h")
	p := te.startProxy(token)
	p.waitOpen(t)
	if !strings.Contains(p.out.String(), "59m") && !strings.Contains(p.out.String(), "1h0m0s") {
		t.Errorf("proxy does not print the time left:\n%s", p.out.String())
	}

	out, err := exec.Command("ssh", append(te.sshArgs(t, p.port, "-p"), te.sshd.User+"@127.0.0.1", "echo hello-$((6*7))")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello-42") {
		t.Fatalf("ssh through the proxy: %v\n%s", err, out)
	}

	// 20 parallel connections through one proxy.
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command("ssh", append(te.sshArgs(t, p.port, "-p"), te.sshd.User+"@127.0.0.1", fmt.Sprintf("echo par-%d", i))...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), fmt.Sprintf("par-%d", i)) {
				errs <- fmt.Sprintf("%d: %v %s", i, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error("parallel ssh", e)
	}

	// sftp: 100 MiB up and down, byte-exact.
	dir := t.TempDir()
	local := filepath.Join(dir, "big.bin")
	f, _ := os.Create(local)
	r := mrand.NewChaCha8([32]byte{1, 2, 3})
	h := sha256.New()
	io.CopyN(io.MultiWriter(f, h), r, 100<<20)
	f.Close()
	want := h.Sum(nil)
	back := filepath.Join(dir, "back.bin")
	batch := filepath.Join(dir, "batch")
	os.WriteFile(batch, []byte("put "+local+" big.bin\nget big.bin "+back+"\n"), 0o644)
	args := append(te.sshArgs(t, p.port, "-P"), "-b", batch, te.sshd.User+"@127.0.0.1")
	start := time.Now()
	if out, err := exec.Command("sftp", args...).CombinedOutput(); err != nil {
		t.Fatalf("sftp through the proxy: %v\n%s", err, out)
	}
	viaProxy := time.Since(start)
	// The same transfer straight to sshd, in the same run, for comparison.
	batchDirect := filepath.Join(dir, "batch-direct")
	os.WriteFile(batchDirect, []byte("put "+local+" big-direct.bin\nget big-direct.bin "+back+".direct\n"), 0o644)
	start = time.Now()
	if out, err := exec.Command("sftp", append(te.sshArgs(t, te.sshd.Port, "-P"), "-b", batchDirect, te.sshd.User+"@127.0.0.1")...).CombinedOutput(); err != nil {
		t.Fatalf("direct sftp: %v\n%s", err, out)
	}
	direct := time.Since(start)
	t.Logf("sftp 100 MiB up + 100 MiB down: through the proxy %v, direct %v (proxy at %.0f%% of direct)",
		viaProxy.Round(time.Millisecond), direct.Round(time.Millisecond), 100*direct.Seconds()/viaProxy.Seconds())
	for _, path := range []string{filepath.Join(te.sshd.Home, "big.bin"), back} {
		if sum := fileSum(t, path); !bytes.Equal(sum, want) {
			t.Fatalf("%s differs from what was sent", path)
		}
	}

	// The tunnel page: connected, traffic counted.
	waitFor(t, "traffic recorded", func() bool {
		tn, _ := te.store.TunnelByID(context.Background(), tid)
		return tn.BytesUp > 100<<20 && tn.BytesDown > 100<<20 && tn.Connections >= 22
	})
	_, doc := te.alice.get(fmt.Sprintf("/tunnels/%d", tid))
	if s := doc.Find(`[data-testid="tunnel-state"]`).Text(); !strings.Contains(s, "connected") {
		t.Errorf("tunnel state %q", s)
	}
	if b := doc.Find(`[data-testid="tunnel-bytes"]`).Text(); !strings.Contains(b, "MiB") {
		t.Errorf("tunnel bytes %q", b)
	}
	if strings.Contains(doc.Text(), token) {
		t.Error("the tunnel page shows the token")
	}
	events, _ := te.store.ListEvents(context.Background(), store.EventFilter{Kind: "tunnel.", Limit: 100})
	conns := 0
	for _, e := range events {
		if e.Kind == "tunnel.connection" && e.ActorName == "alice" && e.Detail["service"] == "ssh" && e.Detail["duration_ms"] != "" {
			conns++
		}
	}
	if conns < 22 {
		t.Errorf("%d proxied connections audited, want ≥ 22", conns)
	}
	for _, l := range []string{te.logs.String(), p.out.String()} {
		if strings.Contains(l, token) {
			t.Fatal("the token appears in a log")
		}
	}
}

func fileSum(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return h.Sum(nil)
}

// TestTunnelTokensAndCuts: a source token is single use; rotating, closing,
// deleting or expiry each cut the live connections within 1 s and stop the
// proxy with a clear message; a closed tunnel refuses for good; rotation never
// extends the lifetime. An attacker holding an old token or a copy of the
// proxy's link gets nothing after any of these.
func TestTunnelTokensAndCuts(t *testing.T) {
	te := newTunnelEnv(t)
	ctx := context.Background()
	token, tid := te.openTunnel("1h")
	p := te.startProxy(token)
	p.waitOpen(t)

	// Reuse of a spent token is refused.
	p2 := te.startProxy(token)
	waitFor(t, "second proxy refused", p2.exited)
	if !strings.Contains(p2.out.String(), "not authorized") {
		t.Errorf("second proxy:\n%s", p2.out.String())
	}

	// Rotate: the live connection is cut, the proxy stops, the lifetime stays.
	before, _ := te.store.TunnelByID(ctx, tid)
	c := bannerConn(t, p.port)
	te.alice.get(fmt.Sprintf("/tunnels/%d", tid))
	token2, _ := te.tokenFrom(te.alice.post(fmt.Sprintf("/tunnels/%d/rotate", tid), nil))
	cutWithin(t, "rotate", c, time.Second)
	waitFor(t, "proxy stopped after rotation", p.exited)
	if !strings.Contains(p.out.String(), "revoked") {
		t.Errorf("proxy after rotation:\n%s", p.out.String())
	}
	after, _ := te.store.TunnelByID(ctx, tid)
	if !after.ExpiresAt.Equal(before.ExpiresAt) {
		t.Errorf("rotation moved the end from %v to %v", before.ExpiresAt, after.ExpiresAt)
	}
	old := te.startProxy(token)
	waitFor(t, "old token refused", old.exited)

	// The new token works; close cuts and is final.
	p = te.startProxy(token2)
	p.waitOpen(t)
	c = bannerConn(t, p.port)
	te.alice.get(fmt.Sprintf("/tunnels/%d", tid))
	te.alice.post(fmt.Sprintf("/tunnels/%d/close", tid), nil).Body.Close()
	cutWithin(t, "close", c, time.Second)
	waitFor(t, "proxy stopped after close", p.exited)
	if !strings.Contains(p.out.String(), "closed") {
		t.Errorf("proxy after close:\n%s", p.out.String())
	}
	te.alice.get(fmt.Sprintf("/tunnels/%d", tid))
	if resp := te.alice.post(fmt.Sprintf("/tunnels/%d/rotate", tid), nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("rotating a closed tunnel: %d", resp.StatusCode)
	}

	// Duplicate: same settings, new token; delete cuts.
	te.alice.get(fmt.Sprintf("/tunnels/%d", tid))
	token3, tid3 := te.tokenFrom(te.alice.post(fmt.Sprintf("/tunnels/%d/duplicate", tid), nil))
	if tid3 == tid || token3 == token2 {
		t.Fatal("duplicate reused the tunnel or token")
	}
	p = te.startProxy(token3)
	p.waitOpen(t)
	c = bannerConn(t, p.port)
	te.alice.get(fmt.Sprintf("/tunnels/%d", tid3))
	te.alice.post(fmt.Sprintf("/tunnels/%d/delete", tid3), nil).Body.Close()
	cutWithin(t, "delete", c, time.Second)
	waitFor(t, "proxy stopped after delete", p.exited)
	if _, err := te.store.TunnelByID(ctx, tid3); err == nil {
		t.Error("deleted tunnel still there")
	}

	// Expiry: a 3 s tunnel; its live connection is cut within 1 s of its end.
	token4, tid4 := te.openTunnel("3s")
	p = te.startProxy(token4)
	p.waitOpen(t)
	c = bannerConn(t, p.port)
	tn, _ := te.store.TunnelByID(ctx, tid4)
	c.SetReadDeadline(tn.ExpiresAt.Add(time.Second))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("expired tunnel: the live connection was not cut within 1 s of the end")
	}
	waitFor(t, "proxy stopped after expiry", p.exited)
	if !strings.Contains(p.out.String(), "expired") {
		t.Errorf("proxy after expiry:\n%s", p.out.String())
	}
	tn, _ = te.store.TunnelByID(ctx, tid4)
	if tn.CloseReason != "expired" {
		t.Errorf("close reason %q", tn.CloseReason)
	}

	for _, l := range []string{te.logs.String()} {
		for _, tok := range []string{token, token2, token3, token4} {
			if strings.Contains(l, tok) {
				t.Fatal("a token appears in shellgate's log")
			}
		}
	}
}

// TestTunnelAuthorization: only members of the server's stack may open or see
// a tunnel (others get a 404 and learn nothing), only whoever opened it or an
// admin may rotate, close or delete it, every change needs CSRF, a lifetime
// past the maximum is refused, and the proxies' endpoint is not reachable
// from a browser page (Origin refused; cookies count for nothing).
func TestTunnelAuthorization(t *testing.T) {
	te := newTunnelEnv(t)
	ctx := context.Background()
	_, tid := te.openTunnel("1h")

	te.addUser("bob", pw, store.RoleMember) // not in the stack
	bob := te.browser()
	bob.signIn("bob", pw)
	bob.get("/stacks")
	if resp := bob.post("/stacks/"+id(te.stackID)+"/servers/"+id(te.server.ID)+"/tunnels", url.Values{"lifetime": {"1h"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("outsider opens a tunnel: %d", resp.StatusCode)
	}
	if resp, _ := bob.get(fmt.Sprintf("/tunnels/%d", tid)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("outsider sees the tunnel page: %d", resp.StatusCode)
	}
	if resp := bob.post(fmt.Sprintf("/tunnels/%d/close", tid), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("outsider closes the tunnel: %d", resp.StatusCode)
	}

	carol := te.addUser("carol", pw, store.RoleMember) // in the stack, not the opener
	te.store.AddStackMember(ctx, te.stackID, carol.ID, time.Now())
	cb := te.browser()
	cb.signIn("carol", pw)
	if resp, _ := cb.get(fmt.Sprintf("/tunnels/%d", tid)); resp.StatusCode != http.StatusOK {
		t.Errorf("stack member sees the tunnel page: %d", resp.StatusCode)
	}
	for _, action := range []string{"rotate", "close", "delete", "duplicate"} {
		if resp := cb.post(fmt.Sprintf("/tunnels/%d/%s", tid, action), nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("another member may %s: %d", action, resp.StatusCode)
		}
	}

	te.alice.get(fmt.Sprintf("/tunnels/%d", tid))
	if resp := te.alice.post(fmt.Sprintf("/tunnels/%d/close", tid), url.Values{"_csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("close without CSRF: %d", resp.StatusCode)
	}
	te.alice.get("/stacks/" + id(te.stackID))
	if resp := te.alice.post("/stacks/"+id(te.stackID)+"/servers/"+id(te.server.ID)+"/tunnels", url.Values{"lifetime": {"13h"}}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("13 h tunnel: %d", resp.StatusCode)
	}
	if tn, _ := te.store.TunnelByID(ctx, tid); !tn.Open(time.Now()) {
		t.Error("the tunnel was closed by a refused request")
	}

	u, _ := url.Parse(te.srv.URL)
	for _, path := range []string{handlers.TunnelPath, handlers.AgentPath} {
		h := http.Header{"Origin": {te.srv.URL}}
		for _, c := range te.alice.c.Jar.Cookies(u) {
			h.Add("Cookie", c.Name+"="+c.Value)
		}
		_, resp, err := websocketDial("ws://"+u.Host+path, h)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s from a signed-in browser page: %v %v, want 403", path, err, resp)
		}
	}
}

func websocketDial(u string, h http.Header) (*websocket.Conn, *http.Response, error) {
	return websocket.DefaultDialer.Dial(u, h)
}
