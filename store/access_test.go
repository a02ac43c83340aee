package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// TestAccessEpochsMoveWithTheChange: every change that ends access bumps its scope in
// the same transaction, with the reason, and hints after the commit; a change that
// fails (nothing to remove) bumps nothing. A live session relies on this to end when
// its person's access does.
func TestAccessEpochsMoveWithTheChange(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	var mu sync.Mutex
	var hinted []string
	var lastSeq int64
	st.OnAccessChange(func(seq int64, scopes []string) {
		mu.Lock()
		defer mu.Unlock()
		hinted = append(hinted, scopes...)
		lastSeq = seq
	})
	u := &store.User{Username: "alice", PasswordHash: "h", Role: store.RoleAdmin}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ws := &store.WebSession{ID: "w1", UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateWebSession(ctx, ws); err != nil {
		t.Fatal(err)
	}
	stack := &store.Stack{Name: "prod"}
	if err := st.CreateStack(ctx, stack); err != nil {
		t.Fatal(err)
	}
	if err := st.AddStackMember(ctx, stack.ID, u.ID, now); err != nil {
		t.Fatal(err)
	}
	sv := &store.Server{StackID: stack.ID, Name: "web-1", Host: "h", Port: 22, LoginUser: "x"}
	if err := st.CreateServer(ctx, sv); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name   string
		change func() error
		scope  string
		reason string
	}{
		{"sign-out", func() error { return st.DeleteWebSession(ctx, "w1") }, store.ScopeWebSession("w1"), store.ReasonSignedOut},
		{"password", func() error { return st.SetPassword(ctx, u.ID, "h2") }, store.ScopeUser(u.ID), store.ReasonPasswordChanged},
		{"disable", func() error { return st.SetDisabled(ctx, u.ID, true) }, store.ScopeUser(u.ID), store.ReasonDisabled},
		{"demotion", func() error { return st.SetRole(ctx, u.ID, store.RoleMember) }, store.ScopeUser(u.ID), store.ReasonRoleChanged},
		{"end all", func() error { return st.EndUserSessions(ctx, u.ID) }, store.ScopeUser(u.ID), store.ReasonEndedByAdmin},
		{"member removed", func() error { return st.RemoveStackMember(ctx, stack.ID, u.ID) }, store.ScopeMember(stack.ID, u.ID), store.ReasonMemberRemoved},
		{"server deleted", func() error { return st.DeleteServer(ctx, stack.ID, sv.ID) }, store.ScopeServer(sv.ID), store.ReasonServerDeleted},
	}
	for i, s := range steps {
		before, _ := st.AccessEpochs(ctx, []string{s.scope})
		if err := s.change(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		after, err := st.AccessEpochs(ctx, []string{s.scope})
		if err != nil {
			t.Fatal(err)
		}
		if after[s.scope].Epoch != before[s.scope].Epoch+1 || after[s.scope].Reason != s.reason {
			t.Errorf("%s: %s went %v → %v", s.name, s.scope, before[s.scope], after[s.scope])
		}
		mu.Lock()
		if !slices.Contains(hinted, s.scope) {
			t.Errorf("%s: no hint for %s (%v)", s.name, s.scope, hinted)
		}
		if lastSeq != int64(i+1) {
			t.Errorf("%s: hint seq %d, want %d", s.name, lastSeq, i+1)
		}
		hinted = nil
		mu.Unlock()
		if seq, _ := st.AccessSeq(ctx); seq != int64(i+1) {
			t.Errorf("%s: AccessSeq %d, want %d", s.name, seq, i+1)
		}
	}
	// The sessions went with the password change and the end-all.
	if _, _, err := st.WebSessionByID(ctx, "w1", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("web session still there: %v", err)
	}
	// A change that does nothing bumps nothing and hints nothing.
	if err := st.RemoveStackMember(ctx, stack.ID, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second removal: %v", err)
	}
	if err := st.SetDisabled(ctx, u.ID, false); err != nil { // enabling ends nothing
		t.Fatal(err)
	}
	if err := st.SetRole(ctx, u.ID, store.RoleAdmin); err != nil { // a promotion ends nothing
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hinted) != 0 {
		t.Errorf("hints for changes that ended nothing: %v", hinted)
	}
	if seq, _ := st.AccessSeq(ctx); seq != int64(len(steps)) {
		t.Errorf("AccessSeq %d after no-op changes, want %d", seq, len(steps))
	}
}
