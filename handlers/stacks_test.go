package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/store"
)

// stackFixture: an admin, a member of stack A, a member of nothing, and two stacks
// with a server each.
type stackFixture struct {
	e        *env
	a, b     *store.Stack
	srvA     *store.Server
	srvB     *store.Server
	alice    *store.User // member of A
	bob      *store.User // member of nothing
	aliceKey int64
	bobKey   int64
}

func insertKey(t *testing.T, st *store.SQLite, userID int64, name, publicKey, fp string) int64 {
	t.Helper()
	var id int64
	err := st.DB().QueryRow(`INSERT INTO ssh_keys (user_id, name, public_key, key_type, bits, fingerprint, created_at)
		VALUES (?, ?, ?, 'ED25519', 256, ?, 0) RETURNING id`, userID, name, publicKey, fp).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newStackFixture(t *testing.T, mutate ...func(*handlers.Config)) *stackFixture {
	t.Helper()
	ctx := context.Background()
	f := &stackFixture{e: newEnv(t, mutate...)}
	f.e.addUser("root", pw, store.RoleAdmin)
	f.alice = f.e.addUser("alice", pw, store.RoleMember)
	f.bob = f.e.addUser("bob", pw, store.RoleMember)
	st := f.e.store
	f.a, f.b = &store.Stack{Name: "alpha"}, &store.Stack{Name: "bravo"}
	for _, s := range []*store.Stack{f.a, f.b} {
		if err := st.CreateStack(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	st.AddStackMember(ctx, f.a.ID, f.alice.ID, time.Now())
	f.srvA = &store.Server{StackID: f.a.ID, Name: "web-1", Host: "203.0.113.7", Port: 2222, LoginUser: "deploy"}
	f.srvB = &store.Server{StackID: f.b.ID, Name: "db-1", Host: "203.0.113.9", LoginUser: "postgres"}
	for _, s := range []*store.Server{f.srvA, f.srvB} {
		if err := st.CreateServer(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	f.aliceKey = insertKey(t, st, f.alice.ID, "alice_laptop", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "SHA256:alice")
	f.bobKey = insertKey(t, st, f.bob.ID, "bob_laptop", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ6lq1Dq2EA3mH3+u1/kxJBo6mE6v6oVpNnkbIpa3r4", "SHA256:bob")
	return f
}

func (f *stackFixture) as(name string) *browser {
	b := f.e.browser()
	b.signIn(name, pw)
	b.get("/stacks") // picks up a CSRF token for posts
	return b
}

func id(n int64) string { return strconv.FormatInt(n, 10) }

// TestStackOfOthersIsNotFound: a member who guesses another stack's id, or pairs
// their stack's id with another stack's server id, learns nothing: 404, no data.
func TestStackOfOthersIsNotFound(t *testing.T) {
	f := newStackFixture(t)
	bob := f.as("bob")
	for _, path := range []string{
		"/stacks/" + id(f.a.ID),
		"/stacks/" + id(f.a.ID) + "?tab=keys",
		"/stacks/" + id(f.a.ID) + "/known_hosts",
		"/stacks/999999",
	} {
		resp, doc := bob.get(path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob GET %s: %d, want 404", path, resp.StatusCode)
		}
		if strings.Contains(doc.Text(), "alpha") || strings.Contains(doc.Text(), "203.0.113.7") {
			t.Errorf("bob GET %s leaks stack data", path)
		}
	}
	// The list shows nothing of alpha either, and the member empty state.
	_, doc := bob.get("/stacks")
	if strings.Contains(doc.Text(), "alpha") || !strings.Contains(doc.Text(), "No stacks yet — ask an administrator") {
		t.Errorf("bob's stack list: %q", doc.Find("main").Text())
	}

	alice := f.as("alice")
	resp, doc := alice.get("/stacks/" + id(f.a.ID))
	if resp.StatusCode != http.StatusOK || !strings.Contains(doc.Text(), "ssh -p 2222 deploy@203.0.113.7") {
		t.Fatalf("alice on her stack: %d", resp.StatusCode)
	}
	if resp, _ := alice.get("/stacks/" + id(f.b.ID)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice on bravo: %d, want 404", resp.StatusCode)
	}
	// Attaching to a stack she is not in.
	alice.get("/stacks/" + id(f.a.ID))
	if resp := alice.post("/stacks/"+id(f.b.ID)+"/keys", url.Values{"key": {id(f.aliceKey)}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice attach to bravo: %d, want 404", resp.StatusCode)
	}
	// Attaching someone else's key to her own stack.
	if resp := alice.post("/stacks/"+id(f.a.ID)+"/keys", url.Values{"key": {id(f.bobKey)}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice attach bob's key: %d, want 404", resp.StatusCode)
	}
	// Admin pages of a stack are for admins.
	if resp := alice.post("/stacks/"+id(f.a.ID)+"/servers", url.Values{"name": {"x"}, "host": {"h"}, "user": {"u"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice add server: %d, want 403", resp.StatusCode)
	}
}

// TestServerOfAnotherStackIsNotFound: server ids are only valid with their own
// stack's id, even for admins, so a crafted URL cannot act on the wrong server.
func TestServerOfAnotherStackIsNotFound(t *testing.T) {
	f := newStackFixture(t)
	root := f.as("root")
	wrong := "/stacks/" + id(f.a.ID) + "/servers/" + id(f.srvB.ID)
	if resp, doc := root.get(wrong + "/hostkey"); resp.StatusCode != http.StatusNotFound || strings.Contains(doc.Text(), "db-1") {
		t.Errorf("GET %s/hostkey: %d, want 404 without data", wrong, resp.StatusCode)
	}
	for _, action := range []string{"/pin", "/scan", "/delete"} {
		if resp := root.post(wrong+action, url.Values{"fingerprint": {"x"}, "confirm": {"yes"}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s%s: %d, want 404", wrong, action, resp.StatusCode)
		}
	}
	if resp := root.post("/stacks/"+id(f.a.ID)+"/servers", url.Values{
		"name": {"web-2"}, "host": {"10.0.0.6"}, "user": {"deploy"}, "jump": {id(f.srvB.ID)},
	}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("jump server from another stack: %d, want 422", resp.StatusCode)
	}
	if resp := root.post("/stacks/"+id(f.a.ID)+"/keys/"+id(f.aliceKey)+"/detach", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("detach a key that is not attached: %d, want 404", resp.StatusCode)
	}
}

func TestMemberAttachesAndDetachesOwnKey(t *testing.T) {
	f := newStackFixture(t)
	alice := f.as("alice")
	_, doc := alice.get("/stacks/" + id(f.a.ID) + "?tab=keys")
	if doc.Find(`select[name="key"] option`).Length() != 1 {
		t.Fatalf("alice may attach exactly her own key; options: %q", doc.Find(`select[name="key"]`).Text())
	}
	resp := alice.post("/stacks/"+id(f.a.ID)+"/keys", url.Values{"key": {id(f.aliceKey)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("attach: %d", resp.StatusCode)
	}
	ds, _ := f.e.store.ListDeployments(context.Background(), f.a.ID)
	if len(ds) != 1 || ds[0].State != store.DeployPending {
		t.Fatalf("deployments after attach: %+v", ds)
	}
	_, doc = alice.get("/stacks/" + id(f.a.ID) + "?tab=keys")
	if doc.Find(`tr[data-key="alice_laptop"]`).Length() != 1 {
		t.Fatal("attached key not listed")
	}
	resp = alice.post("/stacks/"+id(f.a.ID)+"/keys/"+id(f.aliceKey)+"/detach", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("detach: %d", resp.StatusCode)
	}
	ds, _ = f.e.store.ListDeployments(context.Background(), f.a.ID)
	if len(ds) != 1 || ds[0].State != store.DeployRemoving {
		t.Fatalf("deployments after detach: %+v", ds)
	}

	// An admin attached bob's key to alpha; alice may not detach it.
	root := f.as("root")
	root.get("/stacks/" + id(f.a.ID) + "?tab=keys")
	if resp := root.post("/stacks/"+id(f.a.ID)+"/keys", url.Values{"key": {id(f.bobKey)}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("admin attaches bob's key: %d", resp.StatusCode)
	}
	if resp := alice.post("/stacks/"+id(f.a.ID)+"/keys/"+id(f.bobKey)+"/detach", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice detaches bob's key: %d, want 404", resp.StatusCode)
	}
}

func TestAdminEmptyStateAndCreateStack(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	root := e.browser()
	root.signIn("root", pw)
	_, doc := root.get("/stacks")
	if !strings.Contains(doc.Find(".empty-state h2").Text(), "Create a stack") {
		t.Fatalf("admin empty state: %q", doc.Find("main").Text())
	}
	resp := root.post("/stacks", url.Values{"name": {"production"}, "description": {"The shop"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/stacks/") {
		t.Fatalf("create: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := root.post("/stacks", url.Values{"name": {"production"}}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("duplicate: %d", resp.StatusCode)
	}
	_, doc = root.get("/stacks")
	if doc.Find(`[data-stack="production"]`).Length() != 1 {
		t.Fatal("new stack not listed")
	}
}

func TestNativeCommand(t *testing.T) {
	servers := []store.Server{
		{ID: 1, Name: "bastion", Host: "198.51.100.1", Port: 22, LoginUser: "jump"},
		{ID: 2, Name: "inner", Host: "10.0.0.2", Port: 2200, LoginUser: "ops", JumpServerID: 1},
		{ID: 3, Name: "web-1", Host: "10.0.0.5", Port: 22, LoginUser: "deploy", JumpServerID: 2},
		{ID: 4, Name: "v6", Host: "2001:db8::1", Port: 2222, LoginUser: "deploy"},
	}
	for _, c := range []struct {
		id    int64
		login string
		want  string
	}{
		{1, "jump", "ssh jump@198.51.100.1"},
		{3, "deploy", "ssh -J jump@198.51.100.1,ops@10.0.0.2:2200 deploy@10.0.0.5"},
		{3, "My_office_Laptop", "ssh -J jump@198.51.100.1,ops@10.0.0.2:2200 My_office_Laptop@10.0.0.5"},
		{4, "deploy", "ssh -p 2222 deploy@2001:db8::1"},
	} {
		if got := handlers.NativeCommand(servers, c.id, c.login); got != c.want {
			t.Errorf("NativeCommand(%d, %s) = %q, want %q", c.id, c.login, got, c.want)
		}
	}
}

func TestImportSSHConfig(t *testing.T) {
	f := newStackFixture(t)
	root := f.as("root")
	root.get("/stacks/" + id(f.a.ID) + "/import")
	cfg := `Host bastion
    HostName 198.51.100.1
    User jump
Host web-2
    HostName 10.0.0.6
    User deploy
    Port 2200
    ProxyJump bastion
    IdentityFile ~/.ssh/id_work
Host *.internal
    User nobody
Match host foo
    User bar
`
	resp := root.post("/stacks/"+id(f.a.ID)+"/import", url.Values{"config": {cfg}, "default_user": {"root"}})
	text := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("import: %d\n%s", resp.StatusCode, text)
	}
	servers, _ := f.e.store.ListServers(context.Background(), f.a.ID)
	byName := map[string]store.Server{}
	for _, s := range servers {
		byName[s.Name] = s
	}
	web2, bastion := byName["web-2"], byName["bastion"]
	if web2.Host != "10.0.0.6" || web2.Port != 2200 || web2.LoginUser != "deploy" || web2.JumpServerID != bastion.ID || bastion.ID == 0 {
		t.Fatalf("imported: %+v", byName)
	}
	if web2.IdentityFile == "" || web2.HostKeyState() != store.HostKeyUnconfirmed {
		t.Fatalf("web-2: %+v", web2)
	}
	if _, ok := byName["*.internal"]; ok {
		t.Fatal("wildcard host imported")
	}
	if !strings.Contains(strings.ToLower(text), "match") && !strings.Contains(strings.ToLower(text), "wildcard") {
		t.Errorf("no warning about skipped blocks:\n%s", text)
	}
}

func TestKnownHostsImportAndExport(t *testing.T) {
	f := newStackFixture(t)
	root := f.as("root")
	root.get("/stacks/" + id(f.a.ID) + "?tab=settings")
	hostKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	resp := root.post("/stacks/"+id(f.a.ID)+"/known_hosts", url.Values{"known_hosts": {
		"[203.0.113.7]:2222 " + hostKey + "\n203.0.113.9 " + hostKey + "\n",
	}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("import: %d", resp.StatusCode)
	}
	sv, _ := f.e.store.ServerInStack(context.Background(), f.a.ID, f.srvA.ID)
	if sv.HostKeyState() != store.HostKeyPinned {
		t.Fatalf("web-1 not pinned: %+v", sv)
	}
	// db-1 of another stack was listed too, and is untouched.
	other, _ := f.e.store.ServerInStack(context.Background(), f.b.ID, f.srvB.ID)
	if other.HostKeyState() != store.HostKeyUnconfirmed {
		t.Fatal("import pinned a server of another stack")
	}
	resp, _ = root.get("/stacks/" + id(f.a.ID) + "/known_hosts")
	req, _ := http.NewRequest(http.MethodGet, f.e.srv.URL+"/stacks/"+id(f.a.ID)+"/known_hosts", nil)
	resp = root.do(req)
	if got := body(t, resp); !strings.Contains(got, "[203.0.113.7]:2222 "+hostKey) {
		t.Fatalf("export:\n%s", got)
	}
}
