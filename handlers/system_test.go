package handlers_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/logring"
	"github.com/shellgate/shellgate/store"
)

// TestSystemPageForAdminsOnly: the system page shows an administrator the version,
// the database, the master key id (never the key), the live sessions, the queue, this
// replica and the recent warnings of the log; a member gets a 403 and sees none of it
// (the log lines may name users and servers).
func TestSystemPageForAdminsOnly(t *testing.T) {
	ring := logring.New(10)
	log := slog.New(ring.Handler(slog.DiscardHandler, slog.LevelWarn))
	e := newEnv(t, func(cfg *handlers.Config) {
		cfg.Ops.Started = time.Now().Add(-90 * time.Minute)
		cfg.Ops.Listen = "https://shell.example.com"
		cfg.Ops.MasterKeyID = 0xbeef
		cfg.Ops.MasterKeyFile = "/var/lib/shellgate/master.key"
		cfg.Ops.Log = ring
	})
	log.Error("deployment queue", "err", "claim: database is locked")
	log.Info("not kept")
	e.addUser("root", pw, store.RoleAdmin)
	e.addUser("mia", pw, store.RoleMember)

	admin := e.browser()
	admin.signIn("root", pw)
	resp, doc := admin.get("/admin/system")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %d", resp.StatusCode)
	}
	text := doc.Find("main").Text()
	for _, want := range []string{"SQLite 3.", "1 h 30 min", "/var/lib/shellgate/master.key", "https://shell.example.com",
		"claim: database is locked", "0 pending", "0 sessions"} {
		if !strings.Contains(text, want) {
			t.Errorf("system page lacks %q", want)
		}
	}
	if got := doc.Find(`[data-testid="master-key-id"]`).Text(); got != "0000beef" {
		t.Errorf("master key id %q", got)
	}
	if doc.Find(`[data-testid="version"]`).Text() == "" || doc.Find(`[data-testid="replicas"] tbody tr`).Length() != 1 {
		t.Error("version or the replica row missing")
	}
	if strings.Contains(text, "not kept") {
		t.Error("an info line reached the recent errors")
	}

	member := e.browser()
	member.signIn("mia", pw)
	resp, doc = member.get("/admin/system")
	if resp.StatusCode != http.StatusForbidden || strings.Contains(doc.Text(), "database is locked") {
		t.Fatalf("member: %d", resp.StatusCode)
	}
}
