package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

func mustUser(t *testing.T, st *store.SQLite, name string, role store.Role) *store.User {
	t.Helper()
	u := &store.User{Username: name, PasswordHash: "x", Role: role}
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// mustKey inserts an ssh_keys row directly: the keys branch owns its queries.
func mustKey(t *testing.T, st *store.SQLite, userID int64, name string) *store.KeyRef {
	t.Helper()
	var id int64
	err := st.DB().QueryRow(`INSERT INTO ssh_keys (user_id, name, public_key, key_type, bits, fingerprint, created_at)
		VALUES (?, ?, ?, 'ED25519', 256, ?, 0) RETURNING id`, userID, name, "ssh-ed25519 AAAA"+name, "SHA256:"+name).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.KeyRefByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStackVisibility(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	admin := mustUser(t, st, "root", store.RoleAdmin)
	alice := mustUser(t, st, "alice", store.RoleMember)
	bob := mustUser(t, st, "bob", store.RoleMember)
	prod := &store.Stack{Name: "prod"}
	if err := st.CreateStack(ctx, prod); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateStack(ctx, &store.Stack{Name: "prod"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate name: %v, want ErrConflict", err)
	}
	if err := st.AddStackMember(ctx, prod.ID, alice.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StackForUser(ctx, prod.ID, alice.ID, false); err != nil {
		t.Fatalf("member: %v", err)
	}
	if _, err := st.StackForUser(ctx, prod.ID, bob.ID, false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("non-member: %v, want ErrNotFound", err)
	}
	if _, err := st.StackForUser(ctx, prod.ID, admin.ID, true); err != nil {
		t.Fatalf("admin: %v", err)
	}
	if l, _ := st.ListStacksForUser(ctx, bob.ID, false); len(l) != 0 {
		t.Fatalf("bob sees %v", l)
	}
	if l, _ := st.ListStacksForUser(ctx, alice.ID, false); len(l) != 1 {
		t.Fatalf("alice sees %v", l)
	}
}

func TestServersAndHostKeys(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	a, b := &store.Stack{Name: "a"}, &store.Stack{Name: "b"}
	st.CreateStack(ctx, a)
	st.CreateStack(ctx, b)
	bastion := &store.Server{StackID: a.ID, Name: "bastion", Host: "203.0.113.1", LoginUser: "jump"}
	if err := st.CreateServer(ctx, bastion); err != nil {
		t.Fatal(err)
	}
	web := &store.Server{StackID: a.ID, Name: "web-1", Host: "10.0.0.5", Port: 2222, LoginUser: "deploy", JumpServerID: bastion.ID}
	if err := st.CreateServer(ctx, web); err != nil {
		t.Fatal(err)
	}
	// A jump server from another stack is refused.
	other := &store.Server{StackID: b.ID, Name: "x", Host: "h", LoginUser: "u", JumpServerID: bastion.ID}
	if err := st.CreateServer(ctx, other); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cross-stack jump: %v", err)
	}
	if _, err := st.ServerInStack(ctx, b.ID, web.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("server via another stack: %v", err)
	}
	if err := st.DeleteServer(ctx, a.ID, bastion.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete a jump server in use: %v", err)
	}

	sv, _ := st.ServerInStack(ctx, a.ID, web.ID)
	if sv.HostKeyState() != store.HostKeyUnconfirmed || sv.Port != 2222 || sv.JumpServerID != bastion.ID {
		t.Fatalf("new server: %+v", sv)
	}
	st.SetPresentedKey(ctx, web.ID, "ssh-ed25519 AAAAfirst", time.Now())
	if err := st.PinPresentedKey(ctx, a.ID, web.ID, "ssh-ed25519 AAAAother", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pin of a key no longer presented: %v", err)
	}
	if err := st.PinPresentedKey(ctx, a.ID, web.ID, "ssh-ed25519 AAAAfirst", time.Now()); err != nil {
		t.Fatal(err)
	}
	sv, _ = st.ServerInStack(ctx, a.ID, web.ID)
	if sv.HostKeyState() != store.HostKeyPinned || sv.HostKeys[0] != "ssh-ed25519 AAAAfirst" {
		t.Fatalf("pinned: %+v", sv)
	}
	st.SetPresentedKey(ctx, web.ID, "ssh-ed25519 AAAAchanged", time.Now())
	sv, _ = st.ServerInStack(ctx, a.ID, web.ID)
	if sv.HostKeyState() != store.HostKeyChanged {
		t.Fatalf("changed: %+v", sv)
	}
	if err := st.PinHostKeys(ctx, a.ID, web.ID, []string{"ssh-rsa AAAA"}, time.Now()); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("import over a pinned key: %v", err)
	}
	if err := st.PinHostKeys(ctx, a.ID, bastion.ID, []string{"ssh-rsa AAAA1", "ssh-ed25519 AAAA2"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	sv, _ = st.ServerInStack(ctx, a.ID, bastion.ID)
	if len(sv.HostKeys) != 2 {
		t.Fatalf("imported keys: %v", sv.HostKeys)
	}
}

func TestDeploymentQueue(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	alice := mustUser(t, st, "alice", store.RoleMember)
	key := mustKey(t, st, alice.ID, "laptop")
	stack := &store.Stack{Name: "prod"}
	st.CreateStack(ctx, stack)
	web := &store.Server{StackID: stack.ID, Name: "web-1", Host: "10.0.0.5", LoginUser: "deploy"}
	st.CreateServer(ctx, web)
	now := time.Now()

	if err := st.AttachKey(ctx, stack.ID, key, alice.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := st.AttachKey(ctx, stack.ID, key, alice.ID, now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("attach twice: %v", err)
	}
	// Not claimable while the host key is not pinned.
	if _, err := st.ClaimDeployment(ctx, now, time.Minute, 5, "w1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim before pin: %v", err)
	}
	st.SetPresentedKey(ctx, web.ID, "ssh-ed25519 AAAAhost", now)
	st.PinPresentedKey(ctx, stack.ID, web.ID, "ssh-ed25519 AAAAhost", now)

	// A server added later receives the attached key.
	web2 := &store.Server{StackID: stack.ID, Name: "web-2", Host: "10.0.0.6", LoginUser: "deploy", HostKeys: []string{"ssh-ed25519 AAAAh2"}, PinnedAt: now}
	st.CreateServer(ctx, web2)
	ds, _ := st.ListDeployments(ctx, stack.ID)
	if len(ds) != 2 {
		t.Fatalf("deployments: %+v", ds)
	}

	// Two workers race for the jobs: each job is claimed once.
	var mu sync.Mutex
	claimed := map[int64]string{}
	var wg sync.WaitGroup
	for _, tok := range []string{"w1", "w2", "w3", "w4"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := st.ClaimDeployment(ctx, now, time.Minute, 5, tok)
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, ok := claimed[d.ID]; ok {
					t.Errorf("job %d claimed by %s and %s", d.ID, prev, tok)
				}
				claimed[d.ID] = tok
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claimed) != 2 {
		t.Fatalf("claimed %v", claimed)
	}

	// After the lease, a failed job is retried at its time.
	later := now.Add(2 * time.Minute)
	d, err := st.ClaimDeployment(ctx, later, time.Minute, 5, "w5")
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 2 || d.KeyName != "laptop" || d.ClaimToken != "w5" {
		t.Fatalf("reclaimed: %+v", d)
	}
	if err := st.FinishDeployment(ctx, d, errors.New("connection refused"), later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimDeployment(ctx, later.Add(30*time.Second), time.Minute, 5, "w6"); err == nil {
		// the other job (lease expired too) may be claimed; finish it as deployed
	}

	// Detach while a deploy runs: the deploy's outcome is dropped and removal follows.
	d2, err := st.ClaimDeployment(ctx, later.Add(2*time.Minute), time.Minute, 5, "w7")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DetachKey(ctx, stack.ID, key.ID, later); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishDeployment(ctx, d2, nil, time.Time{}, later); err != nil {
		t.Fatal(err)
	}
	ds, _ = st.ListDeployments(ctx, stack.ID)
	for _, d := range ds {
		if d.State != store.DeployRemoving {
			t.Fatalf("after detach: %+v", d)
		}
	}
	// Removal jobs run and delete their rows.
	for i := 0; i < 2; i++ {
		r, err := st.ClaimDeployment(ctx, later.Add(10*time.Minute), time.Minute, 5, "w8")
		if err != nil {
			t.Fatal(err)
		}
		if r.State != store.DeployRemoving {
			t.Fatalf("claimed %+v", r)
		}
		if err := st.FinishDeployment(ctx, r, nil, time.Time{}, later); err != nil {
			t.Fatal(err)
		}
	}
	if ds, _ = st.ListDeployments(ctx, stack.ID); len(ds) != 0 {
		t.Fatalf("left: %+v", ds)
	}
}

// TestDeletingAKeyQueuesRemoval: a key deleted by any path (the keys page, a user
// deleted with their keys) must still be removed from every server it was deployed to.
func TestDeletingAKeyQueuesRemoval(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	alice := mustUser(t, st, "alice", store.RoleMember)
	key := mustKey(t, st, alice.ID, "laptop")
	stack := &store.Stack{Name: "prod"}
	st.CreateStack(ctx, stack)
	web := &store.Server{StackID: stack.ID, Name: "web-1", Host: "h", LoginUser: "u", HostKeys: []string{"ssh-ed25519 AAAA"}, PinnedAt: time.Now()}
	st.CreateServer(ctx, web)
	st.AttachKey(ctx, stack.ID, key, alice.ID, time.Now())
	d, _ := st.ClaimDeployment(ctx, time.Now(), time.Minute, 5, "w")
	st.FinishDeployment(ctx, d, nil, time.Time{}, time.Now())

	if stacks, _ := st.KeyStacks(ctx, key.ID); len(stacks) != 1 {
		t.Fatalf("key stacks: %v", stacks)
	}
	if _, err := st.DB().Exec(`DELETE FROM ssh_keys WHERE id = ?`, key.ID); err != nil {
		t.Fatal(err)
	}
	ds, _ := st.ListDeployments(ctx, stack.ID)
	if len(ds) != 1 || ds[0].State != store.DeployRemoving || ds[0].KeyName != "laptop" {
		t.Fatalf("after delete: %+v", ds)
	}
	if ak, _ := st.ListAttachedKeys(ctx, stack.ID); len(ak) != 0 {
		t.Fatalf("still attached: %v", ak)
	}
}

func TestStackLogAndGatewayIdentity(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	stack := &store.Stack{Name: "prod"}
	st.CreateStack(ctx, stack)
	base := time.Now()
	for i, line := range []string{"first", "second", "third"} {
		st.AppendStackLog(ctx, &store.StackLogLine{StackID: stack.ID, At: base.Add(time.Duration(i) * time.Second), Line: line})
	}
	st.AppendStackLog(ctx, &store.StackLogLine{StackID: stack.ID, Tab: store.LogSSH, Line: "other tab"})
	lines, _ := st.ListStackLog(ctx, stack.ID, store.LogDeploy, 10)
	if len(lines) != 3 || lines[0].Line != "third" {
		t.Fatalf("log: %+v", lines)
	}

	if _, err := st.GatewayIdentity(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no identity yet: %v", err)
	}
	g1, err := st.CreateGatewayIdentity(ctx, &store.GatewayIdentity{PublicKey: "one", PrivateSealed: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := st.CreateGatewayIdentity(ctx, &store.GatewayIdentity{PublicKey: "two", PrivateSealed: []byte{2}})
	if err != nil || g1.PublicKey != "one" || g2.PublicKey != "one" {
		t.Fatalf("second create must return the first: %v %v %v", g1, g2, err)
	}
}
