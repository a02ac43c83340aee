package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

func withRecordings(dir string) func(*handlers.Config) {
	return func(c *handlers.Config) { c.RecordingsDir = dir }
}

// endEvent waits for the terminal.end event of a session.
func endEvent(t *testing.T, st store.Store) store.Event {
	t.Helper()
	for range 100 {
		events, _ := st.ListEvents(context.Background(), store.EventFilter{Kind: "terminal.end"})
		if len(events) > 0 {
			return events[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no terminal.end event")
	return store.Event{}
}

// runSession opens alice's terminal, runs a command, waits for its output and exits.
func runSession(t *testing.T, f *termFixture, cmd, want string) {
	t.Helper()
	ticket, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	tc := f.alice.openTerminal(f.server.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("not connected: %+v %d %q", tc.status, tc.code, tc.reason)
	}
	tc.send(cmd + "\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), want) }) {
		t.Fatalf("no %q in output:\n%s", want, tc.out.String())
	}
	tc.send("exit\n")
	tc.until(func() bool { return false })
}

// TestTerminalSessionIsRecorded: a session through the endpoint leaves an asciicast v2
// file (0600 under a 0700 tree) holding the command's output, linked from the audit
// entry, playable by its owner and by admins — and a 404 for another member.
func TestTerminalSessionIsRecorded(t *testing.T) {
	dir := t.TempDir()
	f := newTermFixture(t, withRecordings(dir))
	runSession(t, f, "echo recorded-$((6*7))", "recorded-42")
	end := endEvent(t, f.store)
	sid := end.Detail["session"]
	if end.Detail["recording"] != "yes" || sid == "" {
		t.Fatalf("terminal.end detail %+v", end.Detail)
	}
	rec, err := f.store.RecordingBySession(context.Background(), sid)
	if err != nil || rec.UserID != f.aliceID || rec.ServerID != f.server.ID || rec.Size == 0 || rec.EndedAt.IsZero() {
		t.Fatalf("recording row %+v %v", rec, err)
	}
	now := time.Now().UTC()
	wantRel := filepath.Join(now.Format("2006"), now.Format("01"), sid+".cast")
	if rec.Path != wantRel {
		t.Fatalf("path %q, want %q", rec.Path, wantRel)
	}
	fi, err := os.Stat(filepath.Join(dir, rec.Path))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v", fi, err)
	}
	if di, _ := os.Stat(filepath.Dir(filepath.Join(dir, rec.Path))); di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", di.Mode())
	}
	body, _ := os.ReadFile(filepath.Join(dir, rec.Path))
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	var h terminal.CastHeader
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil || h.Version != 2 || h.Width != 100 || h.Height != 30 {
		t.Fatalf("header %q: %v", lines[0], err)
	}
	var out strings.Builder
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev[1] == "o" {
			out.WriteString(ev[2].(string))
		}
		if ev[1] == "i" {
			t.Fatal("input recorded although the stack did not opt in")
		}
	}
	if !strings.Contains(out.String(), "recorded-42") {
		t.Fatalf("recording lacks the output:\n%s", out.String())
	}

	// The audit row links to the player; the player page and the file are served.
	_, doc := f.alice.get("/audit")
	if href := doc.Find(`[data-testid="recording-link"]`).AttrOr("href", ""); href != "/audit/recordings/"+sid {
		t.Fatalf("audit link %q", href)
	}
	resp, doc := f.alice.get("/audit/recordings/" + sid)
	if resp.StatusCode != http.StatusOK || doc.Find(`#player`).AttrOr("data-cast", "") == "" {
		t.Fatalf("player page %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "'wasm-unsafe-eval'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("player CSP %q", csp)
	}
	req, _ := http.NewRequest(http.MethodGet, f.env.srv.URL+"/audit/recordings/"+sid+"/cast", nil)
	cast := f.alice.do(req)
	got, _ := io.ReadAll(cast.Body)
	cast.Body.Close()
	if cast.StatusCode != http.StatusOK || !strings.Contains(string(got), "recorded-42") {
		t.Fatalf("cast %d", cast.StatusCode)
	}

	// Another member: neither the recording nor alice's audit entries.
	bob := f.env.browser()
	bob.signIn("bob", pw)
	for _, p := range []string{"/audit/recordings/" + sid, "/audit/recordings/" + sid + "/cast", "/audit/recordings/nonexistent"} {
		if resp, _ := bob.get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	_, doc = bob.get("/audit?user=alice&kind=terminal.")
	if n := doc.Find(`tr[data-event^="terminal."]`).Length(); n != 0 {
		t.Fatalf("bob sees %d of alice's terminal events", n)
	}
	// An admin may play it.
	f.env.addUser("root", pw, store.RoleAdmin)
	admin := f.env.browser()
	admin.signIn("root", pw)
	if resp, _ := admin.get("/audit/recordings/" + sid); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %d", resp.StatusCode)
	}
}

// TestRecordingOffAndInput: a stack that opts out records nothing; one that opts in
// to input records keystrokes as "i" events.
func TestRecordingOffAndInput(t *testing.T) {
	dir := t.TempDir()
	f := newTermFixture(t, withRecordings(dir))
	ctx := context.Background()
	f.store.SetStackRecording(ctx, f.stack.ID, store.RecordingSettings{Record: true, Input: true})
	runSession(t, f, "echo typed-$((2*3))", "typed-6")
	end := endEvent(t, f.store)
	rec, err := f.store.RecordingBySession(ctx, end.Detail["session"])
	if err != nil || !rec.HasInput {
		t.Fatalf("%+v %v", rec, err)
	}
	body, _ := os.ReadFile(filepath.Join(dir, rec.Path))
	if !strings.Contains(string(body), `"i", "e`) {
		t.Fatalf("no input events:\n%s", body)
	}

	f.store.SetStackRecording(ctx, f.stack.ID, store.RecordingSettings{Record: false})
	before, _ := f.store.ListEvents(ctx, store.EventFilter{Kind: "terminal.end"})
	runSession(t, f, "echo quiet-$((2*4))", "quiet-8")
	var events []store.Event
	for range 100 {
		events, _ = f.store.ListEvents(ctx, store.EventFilter{Kind: "terminal.end"})
		if len(events) > len(before) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if events[0].Detail["recording"] != "" {
		t.Fatalf("recorded although the stack opted out: %+v", events[0].Detail)
	}
	if _, err := f.store.RecordingBySession(ctx, events[0].Detail["session"]); err != store.ErrNotFound {
		t.Fatalf("row for an unrecorded session: %v", err)
	}
	// No stray temporary files.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && strings.HasPrefix(d.Name(), ".rec-") {
			t.Errorf("stray temp file %s", p)
		}
		return nil
	})
}

// TestAdminTerminatesLiveSession: the live page lists alice's session; the admin's
// Terminate closes her socket with 4007 and the administrator message, and it is
// audited. Members cannot reach the page.
func TestAdminTerminatesLiveSession(t *testing.T) {
	f := newTermFixture(t)
	if resp, _ := f.alice.get("/admin/live"); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("member on /admin/live: %d", resp.StatusCode)
	}
	ticket, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	tc := f.alice.openTerminal(f.server.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("not connected: %+v", tc.status)
	}
	f.env.addUser("root", pw, store.RoleAdmin)
	admin := f.env.browser()
	admin.signIn("root", pw)
	_, doc := admin.get("/admin/live")
	row := doc.Find(`tr[data-user="alice"]`)
	sid := row.AttrOr("data-session", "")
	if sid == "" || !strings.Contains(row.Text(), "web-1") || !strings.Contains(row.Text(), "prod") {
		t.Fatalf("live row missing: %q", doc.Find("main").Text())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tc.until(func() bool { return false })
	}()
	resp := admin.post("/admin/live/"+sid+"/terminate", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("terminate: %d", resp.StatusCode)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("socket not closed")
	}
	if tc.code != terminal.CloseTerminated || !strings.Contains(tc.reason+lastMessage(tc), "closed by an administrator") {
		t.Fatalf("close %d %q, status %+v", tc.code, tc.reason, tc.status)
	}
	events, _ := f.store.ListEvents(context.Background(), store.EventFilter{Kind: "terminal.terminate"})
	if len(events) != 1 || events[0].Detail["session"] != sid || events[0].Detail["user"] != "alice" || events[0].ActorName != "root" {
		t.Fatalf("terminate audit %+v", events)
	}
	_, doc = admin.get("/admin/live")
	if doc.Find(`tr[data-user="alice"]`).Length() != 0 {
		t.Fatal("terminated session still listed")
	}
}

func lastMessage(tc *termClient) string {
	if len(tc.status) == 0 {
		return ""
	}
	return tc.status[len(tc.status)-1].Message
}

// TestRecordingRetention: recordings older than the retention go, file and row.
func TestRecordingRetention(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, withRecordings(dir), func(c *handlers.Config) { c.RecordingRetention = 24 * time.Hour })
	ctx := context.Background()
	for _, r := range []struct {
		id  string
		age time.Duration
	}{{"OLD", 48 * time.Hour}, {"NEW", time.Hour}} {
		rel := filepath.Join("2026", "01", r.id+".cast")
		os.MkdirAll(filepath.Join(dir, "2026", "01"), 0o700)
		os.WriteFile(filepath.Join(dir, rel), []byte("{}\n"), 0o600)
		e.store.CreateRecording(ctx, &store.Recording{SessionID: r.id, Username: "a", ServerName: "s", Path: rel, StartedAt: time.Now().Add(-r.age)})
	}
	_, srv, _ := handlers.New(handlers.Config{SessionHashKey: randomKey(64), SessionBlockKey: randomKey(32), CSRFKey: randomKey(32),
		Secrets: e.keyring, RecordingsDir: dir, RecordingRetention: 24 * time.Hour}, e.store)
	n, err := srv.CleanupRecordings(ctx)
	if err != nil || n != 1 {
		t.Fatalf("cleanup %d %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2026", "01", "OLD.cast")); !os.IsNotExist(err) {
		t.Fatal("old file kept")
	}
	if _, err := e.store.RecordingBySession(ctx, "NEW"); err != nil {
		t.Fatal("new recording deleted")
	}
}

// TestStackRecordingSettings: recording is on and input off by default; an admin
// changes both on the settings tab (input only together with recording); a member
// cannot.
func TestStackRecordingSettings(t *testing.T) {
	f := newTermFixture(t)
	ctx := context.Background()
	f.env.addUser("root", pw, store.RoleAdmin)
	admin := f.env.browser()
	admin.signIn("root", pw)
	_, doc := admin.get("/stacks/" + id(f.stack.ID) + "?tab=settings")
	if _, on := doc.Find(`input[name="record"]`).Attr("checked"); !on {
		t.Fatal("recording not on by default")
	}
	if _, on := doc.Find(`input[name="record_input"]`).Attr("checked"); on {
		t.Fatal("input recording on by default")
	}
	resp := admin.post("/stacks/"+id(f.stack.ID)+"/recording", map[string][]string{"record_input": {"on"}})
	resp.Body.Close()
	if rs, _ := f.store.StackRecording(ctx, f.stack.ID); resp.StatusCode != http.StatusSeeOther || rs.Record || rs.Input {
		t.Fatalf("input without recording: %d %+v", resp.StatusCode, rs)
	}
	resp = admin.post("/stacks/"+id(f.stack.ID)+"/recording", map[string][]string{"record": {"on"}, "record_input": {"on"}})
	resp.Body.Close()
	if rs, _ := f.store.StackRecording(ctx, f.stack.ID); !rs.Record || !rs.Input {
		t.Fatalf("after save %+v", rs)
	}
	f.alice.get("/stacks/" + id(f.stack.ID))
	resp = f.alice.post("/stacks/"+id(f.stack.ID)+"/recording", map[string][]string{})
	resp.Body.Close()
	if rs, _ := f.store.StackRecording(ctx, f.stack.ID); resp.StatusCode < 400 || !rs.Record {
		t.Fatalf("member changed recording: %d %+v", resp.StatusCode, rs)
	}
}
