package handlers_test

import (
	"bufio"
	"crypto/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/metrics"
	"github.com/shellgate/shellgate/terminal"
)

const testMetricsToken = "metrics-token-for-tests-0123456789"

// withMetrics wires a fresh registry the way main does: hooks in the handlers, dial
// observation in the terminal manager, live sessions read at scrape time.
func withMetrics(m *metrics.Metrics, token string) func(*handlers.Config) {
	return func(cfg *handlers.Config) {
		cfg.Ops.Metrics, cfg.Ops.MetricsToken = m, token
		mgr := terminal.NewManager(terminal.Config{DialOptions: terminal.DialOptions{Observe: m.ObserveDial}})
		m.WatchTerminals(mgr.Sessions)
		cfg.Terminals = mgr
	}
}

// scrape fetches /metrics from the main port with the token and returns every
// sample, keyed as exposed: `name{label="v",…}`.
func scrape(t *testing.T, base, token string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d", resp.StatusCode)
	}
	samples := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// TestMetricsMoveDuringTerminalAndFileTransfer scrapes /metrics while a person uses a
// real OpenSSH server through the real endpoints: the live session gauge, terminal
// bytes and the dial histogram move during the session, the file transfer counters
// by exactly the bytes moved, and the session's end is counted with its reason.
func TestMetricsMoveDuringTerminalAndFileTransfer(t *testing.T) {
	m := metrics.New(metrics.Build{Version: "test", Commit: "abc", GoVersion: "go"})
	f := newTermFixture(t, withMetrics(m, testMetricsToken))
	f.sshd.RequireThrowawayUser(t)
	base := f.env.srv.URL
	before := scrape(t, base, testMetricsToken)
	if before[`shellgate_signins_total{result="success"}`] != 1 {
		t.Fatalf("the fixture's sign-in was not counted: %v", before[`shellgate_signins_total{result="success"}`])
	}
	if before[`shellgate_terminal_sessions{state="attached"}`] != 0 || before[`shellgate_ssh_dial_duration_seconds_count`] != 0 {
		t.Fatal("metrics not at zero before any session")
	}

	ticket, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	tc := f.alice.openTerminal(f.server.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("not connected: %+v %d %q", tc.status, tc.code, tc.reason)
	}
	tc.send("echo metrics-$((40+2))\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), "metrics-42") }) {
		t.Fatalf("no output: %s", tc.out.String())
	}
	during := scrape(t, base, testMetricsToken)
	for name, want := range map[string]float64{
		`shellgate_terminal_sessions{state="attached"}`:   1,
		`shellgate_terminal_sessions{state="detached"}`:   0,
		`shellgate_terminal_sessions_opened_total`:        1,
		`shellgate_ssh_dial_duration_seconds_count`:       1,
		`shellgate_ssh_dial_failures_total{cause="auth"}`: 0,
	} {
		if during[name] != want {
			t.Errorf("during the session %s = %v, want %v", name, during[name], want)
		}
	}
	if in := during[`shellgate_terminal_bytes_total{direction="in"}`]; in < float64(len("echo metrics-$((40+2))\n")) {
		t.Errorf("terminal bytes in = %v during the session", in)
	}
	if out := during[`shellgate_terminal_bytes_total{direction="out"}`]; out < float64(len("metrics-42")) {
		t.Errorf("terminal bytes out = %v during the session", out)
	}

	// A file transfer while the terminal is open (it borrows the session's connection).
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	if code, msg := f.upload(f.alice, f.sshd.Home, "metrics.bin", data, false); code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, msg)
	}
	resp := f.alice.call(http.MethodGet, f.filesURL("/download?path="+url.QueryEscape(f.sshd.Home+"/metrics.bin")), nil)
	n, _ := readAllCount(resp)
	if resp.StatusCode != http.StatusOK || n != int64(len(data)) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, n)
	}
	files := scrape(t, base, testMetricsToken)
	for name, want := range map[string]float64{
		`shellgate_file_transfer_bytes_total{direction="upload"}`:            float64(len(data)),
		`shellgate_file_transfer_bytes_total{direction="download"}`:          float64(len(data)),
		`shellgate_file_transfers_total{direction="upload",result="ok"}`:     1,
		`shellgate_file_transfers_total{direction="download",result="ok"}`:   1,
		`shellgate_file_transfer_duration_seconds_count{direction="upload"}`: 1,
		`shellgate_terminal_sessions{state="attached"}`:                      1,
	} {
		if files[name] != want {
			t.Errorf("after the transfer %s = %v, want %v", name, files[name], want)
		}
	}

	tc.send("exit\n")
	tc.until(func() bool { return false })
	var after map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for { // the session's end is counted as it finishes, just before the socket closes
		after = scrape(t, base, testMetricsToken)
		if after[`shellgate_terminal_sessions_ended_total{reason="exit"}`] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after[`shellgate_terminal_sessions_ended_total{reason="exit"}`] != 1 || after[`shellgate_terminal_sessions{state="attached"}`] != 0 {
		t.Fatalf("after exit: ended %v, attached %v", after[`shellgate_terminal_sessions_ended_total{reason="exit"}`],
			after[`shellgate_terminal_sessions{state="attached"}`])
	}
	for _, dir := range []string{"in", "out"} {
		k := `shellgate_terminal_bytes_total{direction="` + dir + `"}`
		if after[k] < during[k] {
			t.Errorf("%s went back from %v to %v", k, during[k], after[k])
		}
	}
	if after[`go_goroutines`] == 0 || after[`process_open_fds`] == 0 {
		t.Error("Go runtime or process collector missing")
	}

	// Refusals and failures are counted by cause: a socket from another site, a wrong
	// password, and a dial to a server that is down.
	if ws, _, err := f.alice.socket("https://evil.example"); err == nil {
		ws.Close()
		t.Fatal("foreign origin upgraded")
	}
	wrong := f.env.browser()
	wrong.get("/login")
	wrong.post("/login", url.Values{"username": {"alice"}, "password": {"not it"}}).Body.Close()
	f.sshd.Stop()
	ticket, _ = f.alice.ticket(f.stack.ID, f.server.ID)
	tc = f.alice.openTerminal(f.server.ID, ticket)
	tc.until(func() bool { return false })
	final := scrape(t, base, testMetricsToken)
	for name, want := range map[string]float64{
		`shellgate_websocket_upgrades_refused_total{reason="origin"}`: 1,
		`shellgate_signins_total{result="failure"}`:                   1,
		`shellgate_ssh_dial_failures_total{cause="refused"}`:          1,
		`shellgate_ssh_dial_duration_seconds_count`:                   2,
		`shellgate_terminal_sessions_opened_total`:                    1,
	} {
		if final[name] != want {
			t.Errorf("after the refusals %s = %v, want %v", name, final[name], want)
		}
	}
}

func readAllCount(resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

// TestMetricsNotOnMainPortWithoutToken: metrics tell an outsider who is connected, how
// busy the site is and which version runs (what to attack, and when). On the main
// port, which faces the internet, /metrics must answer only a request bearing the
// configured token: not an anonymous scraper, not a wrong or partial token, not a
// signed-in person's cookie; and with no token configured the route does not exist.
// pprof is never on the main port.
func TestMetricsNotOnMainPortWithoutToken(t *testing.T) {
	get := func(base, path, auth string, b *browser) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		c := http.DefaultClient
		if b != nil {
			c = b.c
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	off := newEnv(t, func(cfg *handlers.Config) { cfg.Ops.Metrics = metrics.New(metrics.Build{}) })
	for _, auth := range []string{"", "Bearer anything-at-all-long-enough"} {
		if code := get(off.srv.URL, "/metrics", auth, nil); code != http.StatusNotFound {
			t.Errorf("no token configured, Authorization %q: %d, want 404", auth, code)
		}
	}

	m := metrics.New(metrics.Build{})
	on := newEnv(t, withMetrics(m, testMetricsToken))
	for _, auth := range []string{
		"",
		"Bearer wrong-token-of-the-same-len-0123",
		"Bearer " + testMetricsToken[:len(testMetricsToken)-1],
		"Bearer " + testMetricsToken + "x",
		"Basic " + testMetricsToken,
		testMetricsToken,
	} {
		if code := get(on.srv.URL, "/metrics", auth, nil); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, code)
		}
	}
	on.addUser("root", pw, "admin")
	admin := on.browser()
	admin.signIn("root", pw)
	if code := get(on.srv.URL, "/metrics", "", admin); code != http.StatusUnauthorized {
		t.Errorf("signed-in admin without the token: %d, want 401", code)
	}
	if code := get(on.srv.URL, "/metrics", "Bearer "+testMetricsToken, nil); code != http.StatusOK {
		t.Errorf("with the token: %d, want 200", code)
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap"} {
		if code := get(on.srv.URL, p, "Bearer "+testMetricsToken, admin); code != http.StatusNotFound {
			t.Errorf("%s on the main port: %d, want 404", p, code)
		}
	}
}

// TestSignInMetrics counts sign-ins by result, throttled ones apart: a burst of
// failures (someone guessing passwords) shows as failures, then throttles.
func TestSignInMetrics(t *testing.T) {
	m := metrics.New(metrics.Build{})
	e := newEnv(t, withMetrics(m, testMetricsToken))
	e.addUser("mia", pw, "member")
	b := e.browser()
	b.get("/login")
	for range 11 { // the per-account limit is 10 failures in 15 minutes
		b.post("/login", url.Values{"username": {"mia"}, "password": {"guess"}}).Body.Close()
	}
	// The right password is refused too while throttled, and counted as a throttle.
	resp := b.post("/login", url.Values{"username": {"mia"}, "password": {pw}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled: %d", resp.StatusCode)
	}
	got := scrape(t, e.srv.URL, testMetricsToken)
	for name, want := range map[string]float64{
		`shellgate_signins_total{result="failure"}`:   10,
		`shellgate_signins_total{result="throttled"}`: 2,
		`shellgate_signins_total{result="success"}`:   0,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
