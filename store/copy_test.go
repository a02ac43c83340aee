package store_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

// TestCopySQLiteToPostgres moves a store holding a row in every kind of table and
// checks that PostgreSQL then serves the same data: ids kept (a sealed key's additional
// data names its row), a server's jump server kept, counts equal, new rows numbered
// after the copied ones, and a second copy into the now non-empty target refused.
func TestCopySQLiteToPostgres(t *testing.T) {
	if store.CurrentTestEngine() != store.EnginePostgres {
		t.Skip("copies SQLite to PostgreSQL: runs once, in the postgres pass")
	}
	ctx := context.Background()
	src, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	now := time.Now().Truncate(time.Millisecond)

	// Make ids non-contiguous, so a copy that renumbers would be caught.
	for _, n := range []string{"gone1", "gone2"} {
		mustUser(t, src, n, store.RoleMember)
	}
	alice := mustUser(t, src, "alice", store.RoleAdmin)
	if _, err := src.DB().ExecContext(ctx, `DELETE FROM users WHERE username LIKE 'gone%'`); err != nil {
		t.Fatal(err)
	}
	src.CreateWebSession(ctx, &store.WebSession{ID: "ws", UserID: alice.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)})
	src.RecordLoginFailure(ctx, "bob", "192.0.2.1", now)
	src.AppendEvent(ctx, &store.Event{Kind: "login", ActorID: alice.ID, ActorName: "alice", OK: true, Detail: map[string]string{"a": "b"}})
	sealed := []byte{0, 1, 2, 0xff, 'x'}
	gen := &store.Key{UserID: alice.ID, Name: "gen", PublicKey: "ssh-ed25519 AAAAgen", Type: "ED25519", Bits: 256,
		Fingerprint: "SHA256:gen", PrivateSealed: sealed, PrivateOrigin: store.PrivateGenerated, DownloadUntil: now.Add(time.Hour)}
	if err := src.CreateKey(ctx, gen); err != nil {
		t.Fatal(err)
	}
	stack := &store.Stack{Name: "prod"}
	src.CreateStack(ctx, stack)
	src.AddStackMember(ctx, stack.ID, alice.ID, now)
	bastion := &store.Server{StackID: stack.ID, Name: "bastion", Host: "10.0.0.1", LoginUser: "u", HostKeys: []string{"ssh-ed25519 AAAAb"}, PinnedAt: now}
	if err := src.CreateServer(ctx, bastion); err != nil {
		t.Fatal(err)
	}
	web := &store.Server{StackID: stack.ID, Name: "web", Host: "10.0.0.2", LoginUser: "u", JumpServerID: bastion.ID}
	if err := src.CreateServer(ctx, web); err != nil {
		t.Fatal(err)
	}
	laptop := mustKey(t, src, alice.ID, "laptop")
	if err := src.AttachKey(ctx, stack.ID, laptop, alice.ID, now); err != nil {
		t.Fatal(err)
	}
	src.AppendStackLog(ctx, &store.StackLogLine{StackID: stack.ID, ServerID: web.ID, Line: "Adding user: laptop"})
	src.AppendStackLogOnce(ctx, &store.StackLogLine{StackID: stack.ID, Tab: "ssh", Line: "accepted"}, "d1")
	src.CreateTicket(ctx, &store.Ticket{ID: "tk", UserID: alice.ID, WebSessionID: "ws", StackID: stack.ID, ServerID: web.ID, CreatedAt: now, ExpiresAt: now.Add(time.Minute)})
	src.CreateRecording(ctx, &store.Recording{SessionID: "s1", UserID: alice.ID, Username: "alice", StackID: stack.ID, ServerID: web.ID, ServerName: "web", Login: "u", Path: "a.cast", StartedAt: now})
	if _, err := src.CreateGatewayIdentity(ctx, &store.GatewayIdentity{PublicKey: "ssh-ed25519 AAAAgw", PrivateSealed: []byte("gw")}); err != nil {
		t.Fatal(err)
	}

	if err := src.RegisterReplica(ctx, &store.Replica{ID: "r1", Hostname: "h", StartedAt: now, HeartbeatAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := src.AddLiveSession(ctx, &store.LiveSession{ID: "ls", ReplicaID: "r1", StartedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ReserveAttempt(ctx, "account:bob", store.ThrottlePolicy{Budget: 3, Base: time.Second, Max: time.Minute, Reset: time.Hour}, now); err != nil {
		t.Fatal(err)
	}
	if err := src.HeartbeatWorker(ctx, &store.WorkerRow{ID: "w1", Host: "h", PID: 1, StartedAt: now, HeartbeatAt: now}); err != nil {
		t.Fatal(err)
	}
	bob := mustUser(t, src, "bob", store.RoleMember)
	if err := src.EndUserSessions(ctx, bob.ID); err != nil { // bumps bob's access epoch
		t.Fatal(err)
	}
	if err := src.SetAgentToken(ctx, bastion.ID, "agent-token-hash", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	tn := &store.Tunnel{ServerID: web.ID, CreatedBy: alice.ID, Services: "ssh", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := src.CreateTunnel(ctx, tn, "tunnel-token-hash"); err != nil {
		t.Fatal(err)
	}

	url := testpg.Need(t).NewDatabase(t)
	dst, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	report, err := store.Copy(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range report.Tables {
		if tc.Source != tc.Target {
			t.Errorf("%s: %d copied, %d found", tc.Table, tc.Source, tc.Target)
		}
		if tc.Source == 0 {
			// A table this test leaves empty is a table whose copy is untested.
			t.Errorf("table %s had no row to copy: give it one above", tc.Table)
		}
	}

	got, err := dst.ClaimKeyDownload(ctx, alice.ID, gen.ID, now)
	if err != nil || !bytes.Equal(got.PrivateSealed, sealed) {
		t.Fatalf("generated key after the copy: %+v %v", got, err)
	}
	if u, err := dst.UserByName(ctx, "alice"); err != nil || u.ID != alice.ID || u.Role != store.RoleAdmin {
		t.Fatalf("alice after the copy: %+v %v", u, err)
	}
	if _, u, err := dst.WebSessionByID(ctx, "ws", now); err != nil || u.ID != alice.ID {
		t.Fatalf("web session after the copy: %v", err)
	}
	if sv, err := dst.ServerInStack(ctx, stack.ID, web.ID); err != nil || sv.JumpServerID != bastion.ID {
		t.Fatalf("jump server after the copy: %+v %v", sv, err)
	}
	if ev, err := dst.ListEvents(ctx, store.EventFilter{}); err != nil || len(ev) != 1 || ev[0].Detail["a"] != "b" {
		t.Fatalf("audit after the copy: %+v %v", ev, err)
	}
	if ds, err := dst.ListDeployments(ctx, stack.ID); err != nil || len(ds) != 2 {
		t.Fatalf("deployments after the copy: %+v %v", ds, err)
	}
	if g, err := dst.GatewayIdentity(ctx); err != nil || string(g.PrivateSealed) != "gw" {
		t.Fatalf("gateway identity after the copy: %+v %v", g, err)
	}
	if _, err := dst.ClaimTicket(ctx, "tk", alice.ID, "ws", web.ID, now); err != nil {
		t.Fatalf("ticket after the copy: %v", err)
	}
	if a, err := dst.AgentOf(ctx, bastion.ID); err != nil || a == nil {
		t.Fatalf("agent after the copy: %+v %v", a, err)
	}
	if got, err := dst.ClaimTunnelToken(ctx, "tunnel-token-hash", "proxy-key", now); err != nil || got.ID != tn.ID {
		t.Fatalf("tunnel after the copy: %+v %v", got, err)
	}
	if e, err := dst.AccessEpochs(ctx, []string{store.ScopeUser(bob.ID)}); err != nil || e[store.ScopeUser(bob.ID)].Epoch != 1 {
		t.Fatalf("access epochs after the copy: %+v %v", e, err)
	}
	// New rows are numbered after the copied ones.
	carol := mustUser(t, dst, "carol", store.RoleMember)
	if carol.ID <= alice.ID {
		t.Fatalf("new user got id %d, not after the copied %d", carol.ID, alice.ID)
	}
	if err := dst.CreateServer(ctx, &store.Server{StackID: stack.ID, Name: "web-2", Host: "h", LoginUser: "u"}); err != nil {
		t.Fatalf("new server after the copy: %v", err)
	}

	if _, err := store.Copy(ctx, src, dst); err == nil {
		t.Fatal("a second copy into a non-empty database was accepted")
	}
	if _, err := store.Copy(ctx, dst, src); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("copy from PostgreSQL to SQLite: %v, want a refusal", err)
	}
}
