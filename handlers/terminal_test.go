package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// termFixture: a stack "prod" with one server pointing at a real sshd (host key
// pinned), a member alice whose private key (the one sshd authorizes) was uploaded
// through the keys page and attached to the stack.
type termFixture struct {
	*env
	sshd    *testsshd.SSHD
	stack   *store.Stack
	server  *store.Server
	alice   *browser
	aliceID int64
}

func newTermFixture(t *testing.T, mutate ...func(*handlers.Config)) *termFixture {
	t.Helper()
	return newTermFixtureWith(t, testsshd.Options{}, mutate...)
}

// newTermFixtureWith is newTermFixture with web-1's sshd started with opts.
func newTermFixtureWith(t *testing.T, opts testsshd.Options, mutate ...func(*handlers.Config)) *termFixture {
	t.Helper()
	sshd := testsshd.Start(t, opts)
	e := newEnv(t, mutate...)
	ctx := context.Background()
	alice := e.addUser("alice", pw, store.RoleMember)
	e.addUser("bob", pw, store.RoleMember)
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
	b.get("/keys?add=upload")
	pem, err := os.ReadFile(sshd.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	resp := b.postMultipart("/keys/upload", url.Values{"name": {"laptop"}}, file{"private_key_file", "id_ed25519", pem})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload private key: %d", resp.StatusCode)
	}
	keys, _ := e.store.ListKeys(ctx, alice.ID)
	ref, err := e.store.KeyRefByID(ctx, keys[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.AttachKey(ctx, stack.ID, ref, alice.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	return &termFixture{env: e, sshd: sshd, stack: stack, server: sv, alice: b, aliceID: alice.ID}
}

// ticket asks for a terminal ticket the way the page does: JSON, CSRF header, Origin.
func (b *browser) ticket(stackID, serverID int64) (string, int) {
	b.t.Helper()
	if b.csrf == "" {
		b.get("/stacks")
	}
	body, _ := json.Marshal(map[string]string{"stack": id(stackID), "server": id(serverID)})
	req, _ := http.NewRequest(http.MethodPost, b.env.srv.URL+"/api/terminal/tickets", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", b.csrf)
	req.Header.Set("Origin", b.env.srv.URL)
	resp := b.do(req)
	defer resp.Body.Close()
	var out struct{ Ticket string }
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Ticket, resp.StatusCode
}

// socket dials the terminal WebSocket with the browser's cookies and an Origin.
func (b *browser) socket(origin string) (*websocket.Conn, *http.Response, error) {
	u, _ := url.Parse(b.env.srv.URL)
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	for _, c := range b.c.Jar.Cookies(u) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	return websocket.DefaultDialer.Dial("ws://"+u.Host+"/api/terminal/ws", h)
}

// termClient reads the socket: control messages, output, and the close.
type termClient struct {
	t      *testing.T
	ws     *websocket.Conn
	out    strings.Builder
	status []terminal.StatusMessage
	// prompts are the prompt messages received; onPrompt, if set, answers each one.
	prompts  []terminal.PromptMessage
	onPrompt func(p *terminal.PromptMessage)
	errors   []terminal.ErrorMessage // the message before a non-1000 close, in full
	code     int
	reason   string
}

func (b *browser) openTerminal(serverID int64, ticket string) *termClient {
	b.t.Helper()
	ws, resp, err := b.socket(b.env.srv.URL)
	if err != nil {
		b.t.Fatalf("dial terminal socket: %v (%v)", err, resp)
	}
	b.t.Cleanup(func() { ws.Close() })
	msg, _ := terminal.EncodeControl(terminal.OpenMessage{Server: id(serverID), Cols: 100, Rows: 30, Ticket: ticket})
	if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		b.t.Fatal(err)
	}
	return &termClient{t: b.t, ws: ws}
}

// until reads until cond holds or the socket closes; it reports whether cond held.
func (tc *termClient) until(cond func() bool) bool {
	tc.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !cond() {
		typ, data, err := tc.ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				tc.code, tc.reason = ce.Code, ce.Text
			}
			return cond()
		}
		if typ == websocket.BinaryMessage {
			tc.out.Write(data)
			ack, _ := terminal.EncodeControl(terminal.AckMessage{Offset: int64(tc.out.Len())})
			tc.ws.WriteMessage(websocket.TextMessage, ack)
			continue
		}
		m, err := terminal.DecodeServerControl(data)
		if err != nil {
			tc.t.Fatalf("bad control message %s: %v", data, err)
		}
		if s, ok := m.(*terminal.StatusMessage); ok {
			tc.status = append(tc.status, *s)
		}
		if e, ok := m.(*terminal.ErrorMessage); ok {
			tc.errors = append(tc.errors, *e)
		}
		if p, ok := m.(*terminal.PromptMessage); ok {
			tc.prompts = append(tc.prompts, *p)
			if tc.onPrompt != nil {
				tc.onPrompt(p)
			}
		}
	}
	return true
}

func (tc *termClient) connected() bool {
	return len(tc.status) > 0 && tc.status[len(tc.status)-1].State == terminal.StateConnected
}

func (tc *termClient) send(s string) {
	if err := tc.ws.WriteMessage(websocket.BinaryMessage, []byte(s)); err != nil {
		tc.t.Fatal(err)
	}
}

// TestTerminalThroughEndpointAgainstOpenSSH: the whole path a person takes — page,
// ticket, socket, the uploaded key — to a real OpenSSH sshd; the shell computes, the
// exit status comes back, the socket closes normally, and the audit log has the session.
func TestTerminalThroughEndpointAgainstOpenSSH(t *testing.T) {
	f := newTermFixture(t)
	resp, doc := f.alice.get("/stacks/" + id(f.stack.ID) + "/servers/" + id(f.server.ID) + "/terminal")
	if resp.StatusCode != http.StatusOK || doc.Find(`[data-terminal]`).AttrOr("data-server", "") != id(f.server.ID) {
		t.Fatalf("terminal page: %d", resp.StatusCode)
	}
	ticket, code := f.alice.ticket(f.stack.ID, f.server.ID)
	if code != http.StatusOK || ticket == "" {
		t.Fatalf("ticket: %d", code)
	}
	tc := f.alice.openTerminal(f.server.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("not connected: status %+v, close %d %q", tc.status, tc.code, tc.reason)
	}
	tc.send("echo $((6*7))\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), "42\r\n") }) {
		t.Fatalf("no 42 in output:\n%s", tc.out.String())
	}
	tc.send("exit 3\n")
	tc.until(func() bool { return false })
	last := tc.status[len(tc.status)-1]
	if tc.code != websocket.CloseNormalClosure || last.State != terminal.StateClosed || last.ExitStatus == nil || *last.ExitStatus != 3 {
		t.Fatalf("end: close %d, last status %+v", tc.code, last)
	}
	if !strings.Contains(last.Message, "Connection to web-1 closed.") {
		t.Fatalf("closed message %q", last.Message)
	}

	var events []store.Event
	for range 50 { // OnEnd writes the record as the session finishes
		events, _ = f.store.ListEvents(context.Background(), store.EventFilter{Kind: "terminal."})
		if len(events) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(events) != 2 || events[0].Kind != "terminal.end" || events[0].Detail["exit_status"] != "3" ||
		events[0].ServerID != f.server.ID || events[0].Detail["keys"] != ssh_fp(t, f) || events[1].Kind != "terminal.start" {
		t.Fatalf("audit events: %+v", events)
	}
}

func ssh_fp(t *testing.T, f *termFixture) string {
	keys, _ := f.store.ListKeys(context.Background(), f.aliceID)
	return keys[0].Fingerprint
}

// TestTerminalSocketRefusesForeignOrigins: a page on another site opens a WebSocket to
// shellgate; the browser attaches the victim's cookie (cross-site WebSocket
// hijacking). The upgrade is refused before anything else happens.
func TestTerminalSocketRefusesForeignOrigins(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	b := e.browser()
	b.signIn("alice", pw)
	lookalike := strings.Replace(e.srv.URL, "127.0.0.1", "127.0.0.1.evil.example", 1)
	for _, origin := range []string{"https://evil.example", "null", lookalike, e.srv.URL + ".evil.example", ""} {
		ws, resp, err := b.socket(origin)
		if err == nil {
			ws.Close()
			t.Errorf("origin %q: upgraded", origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v, want 403", origin, resp)
		}
	}
	// Without a session there is no socket either.
	anon := e.browser()
	if _, resp, err := anon.socket(e.srv.URL); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous socket: %v, want 401", resp)
	}
}

// TestTerminalTicketsAreSingleUseAndBound: a ticket that leaked (a proxy log, a shared
// screen) is worth nothing: missing, reused, expired, another user's and another
// browser session's tickets all close the socket with 4004 before any SSH dial.
func TestTerminalTicketsAreSingleUseAndBound(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	f := newTermFixture(t, func(c *handlers.Config) { c.Now = func() time.Time { return time.Unix(0, now.Load()) } })
	ctx := context.Background()
	bob, _ := f.store.UserByName(ctx, "bob")
	f.store.AddStackMember(ctx, f.stack.ID, bob.ID, time.Now())
	bobB := f.env.browser()
	bobB.signIn("bob", pw)
	aliceAgain := f.env.browser() // alice in a second browser
	aliceAgain.signIn("alice", pw)

	refused := func(name string, tc *termClient, want int) {
		t.Helper()
		tc.until(func() bool { return false })
		if tc.code != want {
			t.Errorf("%s: close %d %q, want %d", name, tc.code, tc.reason, want)
		}
	}
	// An open message without a ticket is malformed: refused as a protocol violation.
	refused("missing ticket", f.alice.openTerminal(f.server.ID, ""), terminal.ClosePolicy)

	used, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	first := f.alice.openTerminal(f.server.ID, used)
	if !first.until(first.connected) {
		t.Fatalf("the first use of a ticket did not connect: %+v %d", first.status, first.code)
	}
	refused("reused ticket", f.alice.openTerminal(f.server.ID, used), terminal.CloseTicketInvalid)

	bobs, code := bobB.ticket(f.stack.ID, f.server.ID)
	if code != http.StatusOK {
		t.Fatalf("bob's own ticket: %d", code)
	}
	refused("another user's ticket", f.alice.openTerminal(f.server.ID, bobs), terminal.CloseTicketInvalid)

	other, _ := aliceAgain.ticket(f.stack.ID, f.server.ID)
	refused("another browser session's ticket", f.alice.openTerminal(f.server.ID, other), terminal.CloseTicketInvalid)

	wrongServer, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	refused("ticket for another server", f.alice.openTerminal(f.server.ID+1, wrongServer), terminal.CloseTicketInvalid)

	expired, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	now.Add(int64(2 * time.Minute))
	refused("expired ticket", f.alice.openTerminal(f.server.ID, expired), terminal.CloseTicketInvalid)
}

// TestTerminalOnlyForStackMembers: someone outside the stack can neither load the page
// nor obtain a ticket for its servers, and cannot tell the server exists.
func TestTerminalOnlyForStackMembers(t *testing.T) {
	f := newTermFixture(t)
	outsider := f.env.browser()
	outsider.signIn("bob", pw)
	if resp, _ := outsider.get("/stacks/" + id(f.stack.ID) + "/servers/" + id(f.server.ID) + "/terminal"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("page for a non-member: %d, want 404", resp.StatusCode)
	}
	if _, code := outsider.ticket(f.stack.ID, f.server.ID); code != http.StatusNotFound {
		t.Fatalf("ticket for a non-member: %d, want 404", code)
	}
	// A ticket request without the CSRF header is refused (a foreign page cannot
	// mint tickets with the victim's cookie).
	if _, code := f.alice.ticketWithToken(f.stack.ID, f.server.ID, "forged"); code != http.StatusForbidden {
		t.Fatalf("ticket without a valid CSRF token: %d, want 403", code)
	}
}

func (b *browser) ticketWithToken(stackID, serverID int64, token string) (string, int) {
	saved := b.csrf
	b.csrf = token
	defer func() { b.csrf = saved }()
	return b.ticket(stackID, serverID)
}
