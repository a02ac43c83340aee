package jobs_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

type fakeDeployer struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeDeployer) Deploy(_ context.Context, t *terminal.Target, keys []terminal.DeployKey, mode terminal.DeployMode, log func(string)) error {
	return f.call("deploy", t, keys, mode, log)
}

func (f *fakeDeployer) Remove(_ context.Context, t *terminal.Target, keys []terminal.DeployKey, mode terminal.DeployMode, log func(string)) error {
	return f.call("remove", t, keys, mode, log)
}

func (f *fakeDeployer) call(op string, t *terminal.Target, keys []terminal.DeployKey, mode terminal.DeployMode, log func(string)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op+" "+keys[0].Name+" "+mode.String()+" "+t.Name)
	if f.err == nil {
		log("Key " + keys[0].Name + " done on " + t.Name)
	}
	return f.err
}

type fixture struct {
	st     *store.SQLite
	stack  *store.Stack
	server *store.Server
	key    *store.KeyRef
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u := &store.User{Username: "alice", PasswordHash: "x", Role: store.RoleMember}
	st.CreateUser(ctx, u)
	var keyID int64
	st.DB().QueryRow(`INSERT INTO ssh_keys (user_id, name, public_key, key_type, bits, fingerprint, created_at)
		VALUES (?, 'laptop', 'ssh-ed25519 AAAA', 'ED25519', 256, 'SHA256:x', 0) RETURNING id`, u.ID).Scan(&keyID)
	f := &fixture{st: st, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f.key, _ = st.KeyRefByID(ctx, keyID)
	f.stack = &store.Stack{Name: "prod"}
	st.CreateStack(ctx, f.stack)
	f.server = &store.Server{StackID: f.stack.ID, Name: "web-1", Host: "10.0.0.5", LoginUser: "deploy",
		HostKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}, PinnedAt: f.now}
	if err := st.CreateServer(ctx, f.server); err != nil {
		t.Fatal(err)
	}
	if err := st.AttachKey(ctx, f.stack.ID, f.key, u.ID, f.now); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) worker(d jobs.Deployer) *jobs.Worker {
	w := jobs.NewWorker(f.st, d)
	w.Now = func() time.Time { return f.now }
	return w
}

func TestWorkerDeploysAndRemoves(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	d := &fakeDeployer{}
	w := f.worker(d)
	if ran, err := w.RunOnce(ctx); !ran || err != nil {
		t.Fatalf("RunOnce: %v %v", ran, err)
	}
	ds, _ := f.st.ListDeployments(ctx, f.stack.ID)
	if ds[0].State != store.DeployDeployed {
		t.Fatalf("state %s", ds[0].State)
	}
	f.st.DetachKey(ctx, f.stack.ID, f.key.ID, f.now)
	w.RunOnce(ctx)
	if ds, _ = f.st.ListDeployments(ctx, f.stack.ID); len(ds) != 0 {
		t.Fatalf("left after removal: %+v", ds)
	}
	if strings.Join(d.calls, "|") != "deploy laptop login web-1|remove laptop login web-1" {
		t.Fatalf("calls: %v", d.calls)
	}
	lines, _ := f.st.ListStackLog(ctx, f.stack.ID, store.LogDeploy, 10)
	if len(lines) != 2 || lines[0].ServerID != f.server.ID {
		t.Fatalf("log: %+v", lines)
	}
}

func TestWorkerBacksOffAndGivesUp(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	d := &fakeDeployer{err: errors.New("connection refused")}
	w := f.worker(d)
	w.MaxAttempts = 3
	var delays []time.Duration
	for i := 0; i < 5; i++ {
		ran, err := w.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ran {
			break
		}
		ds, _ := f.st.ListDeployments(ctx, f.stack.ID)
		if ds[0].State != store.DeployFailed || ds[0].LastError == "" {
			t.Fatalf("after failure: %+v", ds[0])
		}
		delays = append(delays, ds[0].NextAttemptAt.Sub(f.now))
		if w.RunOnce(ctx); len(d.calls) != i+1 {
			t.Fatal("retried before its time")
		}
		f.now = ds[0].NextAttemptAt
	}
	if len(delays) != 3 {
		t.Fatalf("attempts: %d, want 3 (then it waits for Retry)", len(delays))
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		if delays[i] < want*8/10 || delays[i] > want*12/10 {
			t.Errorf("delay %d = %s, want about %s", i, delays[i], want)
		}
	}
	lines, _ := f.st.ListStackLog(ctx, f.stack.ID, store.LogDeploy, 1)
	if !strings.Contains(lines[0].Line, "Gave up") {
		t.Errorf("last log line %q", lines[0].Line)
	}
	// An admin presses Retry: it runs again.
	f.st.RetryDeployments(ctx, f.stack.ID, f.now)
	if ran, _ := w.RunOnce(ctx); !ran {
		t.Fatal("Retry did not make the job due")
	}
}

func TestWorkerRunStopsOnCancel(t *testing.T) {
	f := newFixture(t)
	d := &fakeDeployer{}
	w := f.worker(d)
	w.PollInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		n := len(d.calls)
		d.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not deploy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

func TestTargetChains(t *testing.T) {
	pinned := []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}
	servers := []store.Server{
		{ID: 1, Name: "bastion", Host: "b", Port: 22, LoginUser: "j", HostKeys: pinned},
		{ID: 2, Name: "web", Host: "w", Port: 2222, LoginUser: "d", JumpServerID: 1, HostKeys: pinned},
		{ID: 3, Name: "loop-a", Host: "a", Port: 22, LoginUser: "u", JumpServerID: 4, HostKeys: pinned},
		{ID: 4, Name: "loop-b", Host: "b", Port: 22, LoginUser: "u", JumpServerID: 3, HostKeys: pinned},
		{ID: 5, Name: "unpinned-jump", Host: "c", Port: 22, LoginUser: "u"},
		{ID: 6, Name: "behind", Host: "d", Port: 22, LoginUser: "u", JumpServerID: 5},
	}
	tg, err := jobs.Target(servers, 2)
	if err != nil || tg.Jump == nil || tg.Jump.Name != "bastion" || tg.Port != 2222 || len(tg.HostKeys) != 1 {
		t.Fatalf("chain: %+v %v", tg, err)
	}
	if _, err := jobs.Target(servers, 3); !errors.Is(err, jobs.ErrJumpLoop) {
		t.Fatalf("loop: %v", err)
	}
	if _, err := jobs.Target(servers, 6); !errors.Is(err, jobs.ErrNotPinned) {
		t.Fatalf("unpinned jump: %v", err)
	}
}

func TestKnownHosts(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	salt := []byte("0123456789abcdef0123")
	m := hmac.New(sha1.New, salt)
	m.Write([]byte("[10.0.0.6]:2200"))
	hashed := "|1|" + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	servers := []store.Server{
		{ID: 1, Name: "web-1", Host: "10.0.0.5", Port: 22},
		{ID: 2, Name: "web-2", Host: "10.0.0.6", Port: 2200},
		{ID: 3, Name: "web-3", Host: "10.0.0.7", Port: 22},
	}
	file := "# comment\n10.0.0.5,web-1.example " + key + "\n" + hashed + " " + key + "\n" +
		"@revoked 10.0.0.7 " + key + "\n*.example " + key + "\nnot a line\n"
	found, warnings, err := jobs.MatchKnownHosts([]byte(file), servers)
	if err != nil {
		t.Fatal(err)
	}
	if len(found[1]) != 1 || len(found[2]) != 1 || len(found[3]) != 0 {
		t.Fatalf("found %v", found)
	}
	if len(warnings) != 2 {
		t.Fatalf("warnings %v", warnings)
	}
	servers[1].HostKeys = found[2]
	out := string(jobs.KnownHostsFile("prod", servers))
	if !strings.Contains(out, "[10.0.0.6]:2200 "+key+" web-2\n") {
		t.Fatalf("export:\n%s", out)
	}
	// The export parses back to the same key for the same host.
	again, _, _ := jobs.MatchKnownHosts([]byte(out), servers)
	if len(again[2]) != 1 {
		t.Fatal("export does not round-trip")
	}
}

func TestGatewayIdentityPersistsSealed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kr, err := secrets.LoadOrCreateMaster(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := jobs.LoadOrCreateIdentity(ctx, st, kr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jobs.LoadOrCreateIdentity(ctx, st, kr)
	if err != nil || a.Fingerprint() != b.Fingerprint() {
		t.Fatalf("second start: %v %v", b, err)
	}
	if !strings.HasSuffix(a.AuthorizedLine, " shellgate-gateway") || a.Signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("identity: %s", a.AuthorizedLine)
	}
	g, _ := st.GatewayIdentity(ctx)
	if strings.Contains(string(g.PrivateSealed), "PRIVATE") || len(g.PrivateSealed) < 32 {
		t.Fatal("private key not sealed")
	}
	// Sealed for this row: another master key cannot open it.
	other, _ := secrets.LoadOrCreateMaster(t.TempDir())
	if _, err := jobs.LoadOrCreateIdentity(ctx, st, other); err == nil {
		t.Fatal("opened with the wrong master key")
	}
	if !strings.Contains(a.InstallCommand(), "echo '"+a.AuthorizedLine+"' >> ~/.ssh/authorized_keys") {
		t.Fatalf("install command: %s", a.InstallCommand())
	}
}
