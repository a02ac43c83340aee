package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/shellgate/shellgate/store"
)

// TestTerminalDebugTracePerStack: an admin turns on "Debug SSH connections" in the
// stack's settings; alice's next terminal writes its ssh -v style steps to the stack
// log, tab debug (shown on the stack page), and nothing secret. Off again, a new
// connection adds nothing.
func TestTerminalDebugTracePerStack(t *testing.T) {
	f := newTermFixture(t)
	ctx := context.Background()
	f.addUser("boss", pw, store.RoleAdmin)
	admin := f.env.browser()
	admin.signIn("boss", pw)
	settings := func(on bool) {
		t.Helper()
		form := url.Values{"name": {"prod"}, "description": {""}, "mode": {"login"}}
		if on {
			form.Set("debug_trace", "on")
		}
		admin.get("/stacks/" + id(f.stack.ID) + "?tab=settings")
		resp := admin.post("/stacks/"+id(f.stack.ID)+"/settings", form)
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("settings: %d", resp.StatusCode)
		}
	}
	connect := func() {
		t.Helper()
		tc := f.open(t)
		tc.shellComputes()
	}
	debugLines := func() []store.StackLogLine {
		lines, err := f.store.ListStackLog(ctx, f.stack.ID, store.LogDebug, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return lines
	}

	connect()
	if n := len(debugLines()); n != 0 {
		t.Fatalf("%d debug lines with debugging off", n)
	}

	settings(true)
	_, doc := admin.get("/stacks/" + id(f.stack.ID) + "?tab=settings")
	if _, on := doc.Find(`input[name="debug_trace"]`).Attr("checked"); !on {
		t.Fatal("the settings form does not show debugging on")
	}
	connect()
	var text strings.Builder
	for _, l := range debugLines() {
		if l.ServerID != f.server.ID {
			t.Errorf("line for server %d: %q", l.ServerID, l.Line)
		}
		text.WriteString(l.Line + "\n")
	}
	for _, want := range []string{"Connecting to web-1", "Offering public key: ssh-ed25519 SHA256:", "Authenticated to web-1"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("debug log lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "PRIVATE KEY") {
		t.Errorf("debug log carries key material:\n%s", text.String())
	}
	_, doc = f.alice.get("/stacks/" + id(f.stack.ID) + "?tab=log&log=debug")
	if !strings.Contains(doc.Find(`[data-testid="stack-log"]`).Text(), "Authenticated to web-1") {
		t.Errorf("the debug tab does not show the trace")
	}

	settings(false)
	before := len(debugLines())
	connect()
	if after := len(debugLines()); after != before {
		t.Fatalf("debugging off, yet %d new lines", after-before)
	}
}
