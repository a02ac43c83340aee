package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// openTest opens a fresh store on the engine of the current pass (see TestMain).
func openTest(t *testing.T) *store.SQLite {
	t.Helper()
	return store.OpenTest(t)
}

func TestMigrationsAreIdempotent(t *testing.T) {
	url := store.FreshURL(t)
	for i := range 2 {
		st, err := store.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		if n := store.MigrationsApplied(st); (i == 0) != (n > 0) {
			t.Errorf("open %d applied %d migrations", i+1, n)
		}
		st.Close()
	}
}

func TestUsersAndConflicts(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	u := &store.User{Username: "Alice", PasswordHash: "h", Role: store.RoleMember}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, &store.User{Username: "alice", PasswordHash: "h", Role: store.RoleAdmin}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate username: %v, want ErrConflict", err)
	}
	got, err := st.UserByName(ctx, "ALICE")
	if err != nil || got.ID != u.ID || got.Username != "alice" {
		t.Fatalf("UserByName: %+v %v", got, err)
	}
	if _, err := st.UserByID(ctx, 999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing user: %v", err)
	}
	if err := st.SetDisabled(ctx, 999, true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("disable missing user: %v", err)
	}
}

// TestAuditEventsAreAppendOnly: someone with a path to the store (a bug, an injected
// query) cannot rewrite or erase the record.
func TestAuditEventsAreAppendOnly(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	e := &store.Event{Kind: "login", ActorName: "alice", OK: true, Detail: map[string]string{"k": "v"}}
	if err := st.AppendEvent(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `UPDATE audit_events SET ok = 0`); err == nil {
		t.Fatal("an audit event was updated")
	}
	if _, err := st.DB().ExecContext(ctx, `DELETE FROM audit_events`); err == nil {
		t.Fatal("an audit event was deleted")
	}
	events, err := st.ListEvents(ctx, store.EventFilter{})
	if err != nil || len(events) != 1 || events[0].Detail["k"] != "v" || !events[0].OK {
		t.Fatalf("events: %+v %v", events, err)
	}
}

func TestWebSessionExpiry(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	st.CreateUser(ctx, u)
	now := time.Now()
	ws := &store.WebSession{ID: "s1", UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateWebSession(ctx, ws); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.WebSessionByID(ctx, "s1", now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.WebSessionByID(ctx, "s1", now.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session found: %v", err)
	}
}

// TestTicketClaimedOnce: a ticket replayed (a second tab, an attacker who saw it in
// transit, a racing retry) opens nothing; exactly one of many concurrent claims wins.
func TestTicketClaimedOnce(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	st.CreateUser(ctx, u)
	now := time.Now()
	tk := &store.Ticket{ID: "t1", UserID: u.ID, WebSessionID: "ws", StackID: 3, ServerID: 7, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := st.CreateTicket(ctx, tk); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.ClaimTicket(ctx, "t1", u.ID, "ws", 7, now); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want exactly 1", wins.Load())
	}
}

func TestTicketBindings(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	st.CreateUser(ctx, u)
	now := time.Now()
	st.CreateTicket(ctx, &store.Ticket{ID: "t", UserID: u.ID, WebSessionID: "ws", StackID: 3, ServerID: 7, CreatedAt: now, ExpiresAt: now.Add(time.Minute)})
	for name, claim := range map[string]func() (*store.Ticket, error){
		"other user":    func() (*store.Ticket, error) { return st.ClaimTicket(ctx, "t", u.ID+1, "ws", 7, now) },
		"other session": func() (*store.Ticket, error) { return st.ClaimTicket(ctx, "t", u.ID, "other", 7, now) },
		"other server":  func() (*store.Ticket, error) { return st.ClaimTicket(ctx, "t", u.ID, "ws", 8, now) },
		"expired":       func() (*store.Ticket, error) { return st.ClaimTicket(ctx, "t", u.ID, "ws", 7, now.Add(2*time.Minute)) },
		"unknown":       func() (*store.Ticket, error) { return st.ClaimTicket(ctx, "nope", u.ID, "ws", 7, now) },
	} {
		if _, err := claim(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	got, err := st.ClaimTicket(ctx, "t", u.ID, "ws", 7, now)
	if err != nil || got.StackID != 3 {
		t.Fatalf("the rightful claim failed after refused ones: %+v %v", got, err)
	}
}

// TestPasswordAndDisableEndSessions: whichever path changes a password or disables an
// account (dashboard, admin reset, `shellgate user`), a session cookie issued before it
// stops working; enabling an account or a failed update ends nothing.
func TestPasswordAndDisableEndSessions(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	st.CreateUser(ctx, u)
	now := time.Now()
	live := func(id string) bool {
		_, _, err := st.WebSessionByID(ctx, id, now)
		return err == nil
	}
	newSession := func(id string) {
		if err := st.CreateWebSession(ctx, &store.WebSession{ID: id, UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	newSession("s1")
	if err := st.SetDisabled(ctx, u.ID, false); err != nil || !live("s1") {
		t.Fatalf("enabling ended the session: %v", err)
	}
	if err := st.SetPassword(ctx, u.ID+99, "x"); !errors.Is(err, store.ErrNotFound) || !live("s1") {
		t.Fatalf("a password change of nobody: %v, session live %v", err, live("s1"))
	}
	if err := st.SetPassword(ctx, u.ID, "h2"); err != nil || live("s1") {
		t.Fatalf("password change: %v, old session still live: %v", err, live("s1"))
	}
	newSession("s2")
	if err := st.SetDisabled(ctx, u.ID, true); err != nil || live("s2") {
		t.Fatalf("disable: %v, session still live: %v", err, live("s2"))
	}
}
