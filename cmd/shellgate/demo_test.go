package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/terminal"
)

// syncBuffer collects stderr while the server writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs the whole program with args and returns its base URL and a stop
// function (also called at the end of the test); run must return nil.
func startServe(t *testing.T, args []string, env map[string]string) (string, *syncBuffer, func()) {
	t.Helper()
	base, _, stderr, stop := startServeAll(t, args, env)
	return base, stderr, stop
}

// startServeOut is startServe that also returns what the server printed so far.
func startServeOut(t *testing.T, args []string, env map[string]string) (string, func() string, func()) {
	t.Helper()
	base, stdout, _, stop := startServeAll(t, args, env)
	return base, stdout.String, stop
}

func startServeAll(t *testing.T, args []string, env map[string]string) (string, *syncBuffer, *syncBuffer, func()) {
	t.Helper()
	stdout := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), pw, stderr)
		pw.Close()
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			stdout.Write([]byte(sc.Text() + "\n"))
			if rest, ok := strings.CutPrefix(sc.Text(), "shellgate is listening on "); ok {
				found <- rest
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case u := <-found:
		return u, stdout, stderr, stop
	case err := <-done:
		t.Fatalf("run returned before listening: %v\n%s", err, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line\n%s", stderr)
	}
	return "", nil, nil, nil
}

// webClient is just enough of a browser: cookies, the CSRF token, Origin.
type webClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

var csrfRE = regexp.MustCompile(`name="(?:_csrf|csrf-token)" (?:value|content)="([^"]+)"`)

func (w *webClient) get(path string) string {
	w.t.Helper()
	resp, err := w.c.Get(w.base + path)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(b); m != nil {
		w.csrf = string(m[1])
	}
	return string(b)
}

func (w *webClient) post(path, contentType, body string) *http.Response {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Origin", w.base)
	req.Header.Set("X-CSRF-Token", w.csrf)
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	return resp
}

func signIn(t *testing.T, base, user, password string) *webClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	w := &webClient{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	w.get("/login")
	resp := w.post("/login", "application/x-www-form-urlencoded",
		url.Values{"username": {user}, "password": {password}, "_csrf": {w.csrf}}.Encode())
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	w.get("/account")
	return w
}

// openTerminalSocket gets a ticket and opens the terminal socket with it.
func (w *webClient) openTerminalSocket(stackID, serverID string) *websocket.Conn {
	t := w.t
	t.Helper()
	resp := w.post("/api/terminal/tickets", "application/json", `{"stack":"`+stackID+`","server":"`+serverID+`"}`)
	var tk struct{ Ticket string }
	json.NewDecoder(resp.Body).Decode(&tk)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tk.Ticket == "" {
		t.Fatalf("ticket: %d", resp.StatusCode)
	}
	u, _ := url.Parse(w.base)
	h := http.Header{"Origin": {w.base}}
	for _, c := range w.c.Jar.Cookies(u) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+u.Host+"/api/terminal/ws", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	open, _ := terminal.EncodeControl(terminal.OpenMessage{Server: serverID, Cols: 80, Rows: 24, Ticket: tk.Ticket})
	ws.WriteMessage(websocket.TextMessage, open)
	return ws
}

// readSocket reads (acking output) until done says stop; it returns the output and the
// close code (0 while open).
func readSocket(t *testing.T, ws *websocket.Conn, done func(out string, st *terminal.StatusMessage) bool) (string, int) {
	t.Helper()
	var out strings.Builder
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return out.String(), ce.Code
			}
			t.Fatalf("socket: %v; output so far:\n%s", err, out.String())
		}
		var st *terminal.StatusMessage
		if typ == websocket.BinaryMessage {
			out.Write(data)
			ack, _ := terminal.EncodeControl(terminal.AckMessage{Offset: int64(out.Len())})
			ws.WriteMessage(websocket.TextMessage, ack)
		} else {
			m, _ := terminal.DecodeServerControl(data)
			st, _ = m.(*terminal.StatusMessage)
		}
		if done(out.String(), st) {
			return out.String(), 0
		}
	}
}

// runInTerminal opens a terminal to a server through the real endpoint, types cmd once
// connected and returns once want appears in the output.
func (w *webClient) runInTerminal(stackID, serverID, cmd, want string) {
	w.t.Helper()
	ws := w.openTerminalSocket(stackID, serverID)
	defer ws.Close()
	_, code := readSocket(w.t, ws, func(out string, st *terminal.StatusMessage) bool {
		if st != nil && st.State == terminal.StateConnected {
			ws.WriteMessage(websocket.BinaryMessage, []byte(cmd+"\n"))
		}
		return strings.Contains(out, want)
	})
	if code != 0 {
		w.t.Fatalf("closed with %d before %q", code, want)
	}
}

// TestDemoMode: one command gives a newcomer the whole product. --demo starts the
// in-process SSH server, creates the stack "demo" with its server (host key pinned),
// and the admin's terminal to it runs a shell; a second start re-uses the stack and
// re-points the server at the new port and host key.
func TestDemoMode(t *testing.T) {
	// The demo shell is a login shell of the user running the tests; a home of its own
	// keeps that user's profile (on CI machines: slow or lock-taking start-up scripts)
	// out of a test about shellgate.
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": "correct horse battery staple 42"}
	args := []string{"--demo", "--listen", "127.0.0.1:0", "--data-dir", dir}
	stackRE := regexp.MustCompile(`/stacks/(\d+)/servers/(\d+)/terminal`)
	for round := range 2 {
		base, stderr, stop := startServe(t, args, env)
		if !strings.Contains(stderr.String(), "demo mode:") || !strings.Contains(stderr.String(), "level=WARN") {
			t.Fatalf("round %d: no demo warning in the log:\n%s", round, stderr)
		}
		w := signIn(t, base, "admin", env["SHELLGATE_ADMIN_PASSWORD"])
		list := w.get("/stacks")
		ids := regexp.MustCompile(`href="/stacks/(\d+)"[^>]*>\s*demo\s*<`).FindAllStringSubmatch(list, -1)
		if len(ids) != 1 {
			t.Fatalf("round %d: want one demo stack link, got %v in\n%s", round, ids, list)
		}
		page := w.get("/stacks/" + ids[0][1])
		m := stackRE.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("round %d: no terminal link on the demo stack page", round)
		}
		w.runInTerminal(m[1], m[2], "echo $((6*7))", "42\r\n")
		stop()
	}
}

// TestDemoKeyOnlyForDemoServer: the demo key must not become a skeleton key. A member
// who opens a terminal to any other server must not have shellgate offer the demo
// key there, and the demo server accepts no key but its own.
func TestDemoKeyOnlyForDemoServer(t *testing.T) {
	d := &demo{serverID: 7, signer: nil}
	if got := d.auth(8); got != nil {
		t.Fatalf("demo key offered to server 8: %v", got)
	}
	if got := d.auth(7); len(got) != 1 {
		t.Fatalf("demo key not offered to the demo server: %v", got)
	}
	var none *demo
	if none.auth(7) != nil {
		t.Fatal("no demo: keys offered")
	}
}
