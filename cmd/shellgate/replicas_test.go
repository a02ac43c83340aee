package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// roundRobin is a reverse proxy written for the test: each request goes to the next
// replica in turn, with no stickiness, and it counts what each one served.
type roundRobin struct {
	mu       sync.Mutex
	backends []*url.URL
	hits     []int
	next     atomic.Int64
	// pin, when not 0, sends every request to replica pin-1 instead: for tests that
	// must act through one replica on purpose.
	pin atomic.Int64
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(rr.next.Add(1)) % len(rr.backends)
	if p := rr.pin.Load(); p != 0 {
		i = int(p - 1)
	}
	rr.mu.Lock()
	rr.hits[i]++
	rr.mu.Unlock()
	// The Host stays the proxy's, as a load balancer passes it: the replicas know it
	// as their public URL.
	httputil.NewSingleHostReverseProxy(rr.backends[i]).ServeHTTP(w, r)
}

// replicaSet is shellgate replicas on one PostgreSQL behind a round-robin proxy.
type replicaSet struct {
	dbURL  string
	public string // the proxy's URL, every replica's public URL
	rr     *roundRobin
	stops  []func()
}

// startReplicas starts n replicas sharing one database and one master key, behind a
// round-robin proxy; extra[i] are more flags for replica i.
func startReplicas(t *testing.T, n int, extra map[int][]string) *replicaSet {
	t.Helper()
	dbURL := testpg.Need(t).NewDatabase(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{dbURL: dbURL, public: "http://" + ln.Addr().String(), rr: &roundRobin{}}
	var key []byte
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": adminPassword, "SHELLGATE_DATABASE_URL": dbURL}
	for i := range n {
		dir := t.TempDir()
		if i == 0 {
			if _, err := secrets.LoadOrCreateMaster(dir); err != nil {
				t.Fatal(err)
			}
			if key, err = os.ReadFile(filepath.Join(dir, secrets.FileName)); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(dir, secrets.FileName), key, 0o600); err != nil {
			t.Fatal(err)
		}
		// The listening line names the public URL, so the replica's own address is
		// chosen here.
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := probe.Addr().String()
		probe.Close()
		args := append([]string{"--listen", addr, "--data-dir", dir, "--public-url", rs.public}, extra[i]...)
		_, _, stop := startServe(t, args, env)
		rs.rr.backends = append(rs.rr.backends, &url.URL{Scheme: "http", Host: addr})
		rs.stops = append(rs.stops, stop)
	}
	rs.rr.hits = make([]int, n)
	srv := &http.Server{Handler: rs.rr}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rs
}

const adminPassword = "correct horse battery staple 42"

// TestReplicasBehindRoundRobin: three shellgate processes on one PostgreSQL database,
// sharing one master key, behind a proxy that sends each request to the next one. A
// person's whole journey works whichever replica answers: signing in, making a stack,
// generating a key and downloading it (the key was sealed by one replica and opened
// by another), reading the audit log. Fifty concurrent downloads of the one-time key,
// spread over the replicas, hand it out exactly once. Signing out through one replica
// signs the browser out of all. Each replica is in the registry until it stops.
func TestReplicasBehindRoundRobin(t *testing.T) {
	rs := startReplicas(t, 3, nil)
	dbURL, public, rr, stops := rs.dbURL, rs.public, rs.rr, rs.stops
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": adminPassword}

	st, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rs, err := st.ListReplicas(context.Background(), time.Time{}); err != nil || len(rs) != 3 {
		t.Fatalf("registry: %+v %v, want three replicas", rs, err)
	}

	w := signIn(t, public, "admin", env["SHELLGATE_ADMIN_PASSWORD"])
	form := func(path string, v url.Values) *http.Response {
		v.Set("_csrf", w.csrf)
		resp := w.post(path, "application/x-www-form-urlencoded", v.Encode())
		resp.Body.Close()
		return resp
	}
	if resp := form("/stacks", url.Values{"name": {"made-behind-proxy"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create stack: %d", resp.StatusCode)
	}
	for range 3 { // each replica in turn lists it
		if page := w.get("/stacks"); !strings.Contains(page, "made-behind-proxy") {
			t.Fatalf("a replica does not list the stack, or does not know the session:\n%.600s", page)
		}
	}
	resp := form("/keys/generate", url.Values{"name": {"laptop"}, "kind": {"ed25519"}})
	m := regexp.MustCompile(`generated=(\d+)`).FindStringSubmatch(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		t.Fatalf("generate key: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	w.get("/keys") // a fresh CSRF token, from yet another replica

	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, public+"/keys/"+m[1]+"/download",
				strings.NewReader(url.Values{"_csrf": {w.csrf}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", public)
			req.Header.Set("X-CSRF-Token", w.csrf)
			resp, err := w.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body := make([]byte, 64)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusOK && !strings.Contains(string(body[:n]), "OPENSSH PRIVATE KEY") {
				t.Errorf("the download is not a private key: %q", body[:n])
			}
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 1 || codes[http.StatusGone] != 49 {
		t.Fatalf("50 concurrent downloads over 3 replicas: %v, want exactly one 200 and 49 × 410", codes)
	}
	// The audit log, read through yet other replicas, has what every replica wrote.
	if page := w.get("/audit?kind=key."); strings.Count(page, `data-event="key.download"`) != 50 ||
		strings.Count(page, "badge-ok") != 1 {
		t.Errorf("audit: %d key.download rows, %d ok, want 50 and 1",
			strings.Count(page, `data-event="key.download"`), strings.Count(page, "badge-ok"))
	}
	if page := w.get("/audit?kind=stack."); !strings.Contains(page, "made-behind-proxy") {
		t.Errorf("audit lacks the stack's creation")
	}
	rr.mu.Lock()
	for i, n := range rr.hits {
		if n < 10 {
			t.Errorf("replica %d served %d requests: the journey did not spread", i, n)
		}
	}
	rr.mu.Unlock()

	form("/logout", url.Values{})
	for range 3 {
		resp, err := w.c.Get(public + "/stacks")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("signed out through one replica, still signed in on another")
		}
	}

	stops[2]()
	if rs, _ := st.ListReplicas(context.Background(), time.Time{}); len(rs) != 2 {
		t.Fatalf("after one replica stopped the registry holds %d, want 2", len(rs))
	}
}

// TestTicketRedeemedOnceAcrossReplicas: a terminal ticket replayed on fifty sockets at
// once, which the proxy spreads over three replicas, opens exactly one terminal: every
// other socket is refused with 4004 (or earlier, by a replica's bound on sockets
// opening at once), whichever replica it reached. (An attacker who
// copied a ticket gains nothing by racing the rightful page through other replicas.)
func TestTicketRedeemedOnceAcrossReplicas(t *testing.T) {
	rs := startReplicas(t, 3, map[int][]string{0: {"--demo"}})
	w := signIn(t, rs.public, "admin", adminPassword)
	list := w.get("/stacks")
	ids := regexp.MustCompile(`href="/stacks/(\d+)"[^>]*>\s*demo\s*<`).FindStringSubmatch(list)
	if ids == nil {
		t.Fatalf("no demo stack:\n%.600s", list)
	}
	m := regexp.MustCompile(`/stacks/(\d+)/servers/(\d+)/terminal`).FindStringSubmatch(w.get("/stacks/" + ids[1]))
	if m == nil {
		t.Fatal("no terminal link on the demo stack page")
	}
	resp := w.post("/api/terminal/tickets", "application/json", `{"stack":"`+m[1]+`","server":"`+m[2]+`"}`)
	var tk struct{ Ticket string }
	json.NewDecoder(resp.Body).Decode(&tk)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tk.Ticket == "" {
		t.Fatalf("ticket: %d", resp.StatusCode)
	}
	u, _ := url.Parse(rs.public)
	h := http.Header{"Origin": {rs.public}}
	for _, c := range w.c.Jar.Cookies(u) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	open, _ := terminal.EncodeControl(terminal.OpenMessage{Server: m[2], Cols: 80, Rows: 24, Ticket: tk.Ticket})

	var refused, admitted atomic.Int32
	var mu sync.Mutex
	early := map[int]int{} // status → sockets refused at the handshake
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, resp, err := websocket.DefaultDialer.Dial("ws://"+u.Host+"/api/terminal/ws", h)
			if err != nil {
				// Refused before the ticket is even read (a replica's bound on sockets
				// opening at once): not admitted either.
				if resp == nil || resp.StatusCode < 400 {
					t.Error(err)
					return
				}
				mu.Lock()
				early[resp.StatusCode]++
				mu.Unlock()
				return
			}
			defer ws.Close()
			ws.WriteMessage(websocket.TextMessage, open)
			ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				typ, data, err := ws.ReadMessage()
				if ce, ok := err.(*websocket.CloseError); ok && ce.Code == terminal.CloseTicketInvalid {
					refused.Add(1)
					return
				} else if err != nil {
					admitted.Add(1) // closed for another reason: the ticket was accepted
					return
				}
				if typ == websocket.TextMessage {
					if msg, _ := terminal.DecodeServerControl(data); msg != nil {
						if st, ok := msg.(*terminal.StatusMessage); ok && st.State == terminal.StateConnected {
							admitted.Add(1) // a shell: past the ticket
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, c := range early {
		n += c
	}
	t.Logf("%d refused with 4004, %d at the handshake %v", refused.Load(), n, early)
	if admitted.Load() != 1 || int(refused.Load())+n != 49 || refused.Load() == 0 {
		t.Fatalf("50 sockets with one ticket over 3 replicas: %d admitted, %d refused with 4004, %d at the handshake; want 1 and 49 refused",
			admitted.Load(), refused.Load(), n)
	}
}

// TestTerminateSessionOnAnotherReplica: an administrator whose page is served by one
// replica sees the terminal another replica holds, and ends it: the hint reaches the
// owner, the person's terminal closes with 4007, and the session leaves every list.
func TestTerminateSessionOnAnotherReplica(t *testing.T) {
	rs := startReplicas(t, 2, map[int][]string{1: {"--demo"}})
	rs.rr.pin.Store(2) // the terminal lives on replica 1
	w := signIn(t, rs.public, "admin", adminPassword)
	ids := regexp.MustCompile(`href="/stacks/(\d+)"[^>]*>\s*demo\s*<`).FindStringSubmatch(w.get("/stacks"))
	if ids == nil {
		t.Fatal("no demo stack")
	}
	m := regexp.MustCompile(`/stacks/(\d+)/servers/(\d+)/terminal`).FindStringSubmatch(w.get("/stacks/" + ids[1]))
	if m == nil {
		t.Fatal("no terminal link on the demo stack page")
	}
	ws := w.openTerminalSocket(m[1], m[2])
	shellConnected(t, ws)

	rs.rr.pin.Store(1) // the administrator's pages come from replica 0
	var sid []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		page := w.get("/admin/live")
		if sid = regexp.MustCompile(`data-session="([^"]+)"`).FindStringSubmatch(page); sid != nil && strings.Contains(page, "on another replica") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica 0 does not list the session replica 1 holds:\n%.1500s", page)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp := w.post("/admin/live/"+sid[1]+"/terminate", "application/x-www-form-urlencoded", url.Values{"_csrf": {w.csrf}}.Encode())
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("terminate: %d", resp.StatusCode)
	}
	if _, code := readSocket(t, ws, func(string, *terminal.StatusMessage) bool { return false }); code != terminal.CloseTerminated {
		t.Fatalf("terminal closed with %d, want %d", code, terminal.CloseTerminated)
	}
	deadline = time.Now().Add(10 * time.Second)
	for strings.Contains(w.get("/admin/live"), sid[1]) {
		if time.Now().After(deadline) {
			t.Fatal("the ended session is still listed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shellConnected waits until the terminal reports its shell connected.
func shellConnected(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	readSocket(t, ws, func(_ string, st *terminal.StatusMessage) bool {
		return st != nil && st.State == terminal.StateConnected
	})
}

// TestSignOutOnOneReplicaEndsTerminalOnAnother: a person signs out (or is signed out)
// through one replica while their terminal lives on another; the terminal must end at
// once, not when its socket next happens to be checked, or a stolen laptop's shell
// outlives the sign-out that was meant to end it.
func TestSignOutOnOneReplicaEndsTerminalOnAnother(t *testing.T) {
	rs := startReplicas(t, 2, map[int][]string{1: {"--demo"}})
	rs.rr.pin.Store(2) // replica 1 (1-based: 0 means round robin)
	w := signIn(t, rs.public, "admin", adminPassword)
	list := w.get("/stacks")
	ids := regexp.MustCompile(`href="/stacks/(\d+)"[^>]*>\s*demo\s*<`).FindStringSubmatch(list)
	if ids == nil {
		t.Fatalf("no demo stack:\n%.600s", list)
	}
	m := regexp.MustCompile(`/stacks/(\d+)/servers/(\d+)/terminal`).FindStringSubmatch(w.get("/stacks/" + ids[1]))
	if m == nil {
		t.Fatal("no terminal link on the demo stack page")
	}
	ws := w.openTerminalSocket(m[1], m[2])
	shellConnected(t, ws)

	rs.rr.pin.Store(1) // replica 0 handles the sign-out
	w.get("/account")
	resp := w.post("/logout", "application/x-www-form-urlencoded", url.Values{"_csrf": {w.csrf}}.Encode())
	resp.Body.Close()
	signedOut := time.Now()
	_, code := readSocket(t, ws, func(string, *terminal.StatusMessage) bool { return false })
	t.Logf("terminal on replica 1 closed with %d, %v after the sign-out on replica 0", code, time.Since(signedOut))
	if code == 0 || code == websocket.CloseNormalClosure {
		t.Fatalf("terminal closed with %d, want a revocation", code)
	}
}

// TestReplicaWithoutTheMasterKeyRefusesToStart: a new replica started with an empty
// data dir must not make a master key of its own: it could open none of the keys the
// others sealed, and the cookies it signed would be refused by every other replica.
func TestReplicaWithoutTheMasterKeyRefusesToStart(t *testing.T) {
	rs := startReplicas(t, 1, nil)
	dir := t.TempDir()
	env := map[string]string{"SHELLGATE_DATABASE_URL": rs.dbURL}
	err := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--data-dir", dir, "--public-url", rs.public},
		func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "copy master.key from another replica") {
		t.Fatalf("start without the master key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, secrets.FileName)); !os.IsNotExist(err) {
		t.Fatalf("a master key was created anyway: %v", err)
	}
}
