package terminal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// Tests of key deployment against a real OpenSSH sshd (internal/testsshd):
// what matters is that OpenSSH, not our own server, accepts the result.

// deployKeyFile makes a DeployKey with a fresh ed25519 key and writes its
// private key (0600) for the OpenSSH client.
func deployKeyFile(t *testing.T, id int64, name string) (DeployKey, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return DeployKey{ID: id, Name: name, AuthorizedLine: line}, path
}

func sshdTarget(s *testsshd.SSHD) *Target {
	return &Target{Name: "web-1", Host: s.Host, Port: s.Port, User: s.User, HostKeys: []ssh.PublicKey{s.HostKey}}
}

// recordingDialer dials TCP and remembers the connections, so a test can
// cut them.
type recordingDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (r *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
	}
	return c, err
}

func (r *recordingDialer) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

func gatewayDeployer(s *testsshd.SSHD) *Deployer {
	return &Deployer{
		Dialer:  &recordingDialer{},
		Auth:    Auth{Signers: []ssh.Signer{s.ClientSigner}},
		Options: DialOptions{KeepaliveInterval: -1},
	}
}

// logLines collects log lines safely.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logLines) want(t *testing.T, parts ...string) {
	t.Helper()
	all := l.String()
	for _, p := range parts {
		if !strings.Contains(all, p) {
			t.Errorf("log lacks %q:\n%s", p, all)
		}
	}
}

// sshLogin runs the OpenSSH client as user with keyPath and reports whether
// it logged in and ran a command.
func sshLogin(t *testing.T, s *testsshd.SSHD, user, keyPath string) error {
	t.Helper()
	cmd := s.SSHCommand(t, "echo", "logged-in")
	for i := 0; i+1 < len(cmd.Args); i++ {
		switch cmd.Args[i] {
		case "-i":
			cmd.Args[i+1] = keyPath
		case "-l":
			cmd.Args[i+1] = user
		}
	}
	out, err := cmd.CombinedOutput()
	if err == nil && !strings.Contains(string(out), "logged-in") {
		return errors.New("no output: " + string(out))
	}
	if err != nil {
		return errors.New(err.Error() + ": " + string(out))
	}
	return nil
}

// gatewayLogin checks that the gateway identity still logs in. The client
// is closed at once: a connection left open keeps an sshd child (and the
// harness's stderr pipe) alive past the test.
func gatewayLogin(t *testing.T, tg *Target, d *Deployer) {
	t.Helper()
	c, err := Dial(t.Context(), &net.Dialer{}, tg, d.Auth, nil, d.Options)
	if err != nil {
		t.Fatalf("gateway login: %v", err)
	}
	c.Close()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeOwned(t *testing.T, s *testsshd.SSHD, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	st := statOf(t, filepath.Dir(path))
	if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
}

func statOf(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestDeployThenRemoveWithOpenSSH(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	key, keyPath := deployKeyFile(t, 42, "My_office_Laptop")
	d := gatewayDeployer(s)
	tg := sshdTarget(s)

	if err := sshLogin(t, s, s.User, keyPath); err == nil {
		t.Fatal("key logs in before deployment")
	}
	var log logLines
	if err := d.Deploy(t.Context(), tg, []DeployKey{key}, DeployToLogin, log.add); err != nil {
		t.Fatalf("Deploy: %v\n%s", err, log.String())
	}
	log.want(t, "Connecting to web-1 ("+s.Addr+")", "Key My_office_Laptop deployed to web-1 (127.0.0.1)")
	if err := sshLogin(t, s, s.User, keyPath); err != nil {
		t.Fatalf("login with the deployed key: %v", err)
	}
	if fi, _ := os.Stat(s.AuthorizedKeysPath()); fi.Mode().Perm() != 0o600 {
		t.Errorf("authorized_keys mode %v, want 0600", fi.Mode().Perm())
	}

	log = logLines{}
	if err := d.Remove(t.Context(), tg, []DeployKey{key}, DeployToLogin, log.add); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	log.want(t, "Key My_office_Laptop removed from web-1")
	if err := sshLogin(t, s, s.User, keyPath); err == nil {
		t.Fatal("key still logs in after Remove")
	}
	// The gateway itself still gets in: its own line was not touched.
	gatewayLogin(t, tg, d)
}

// TestDeployPreservesForeignBytes: an administrator's authorized_keys with
// options, comments, CRLF, a blank line and no final newline must come back
// byte for byte after Deploy+Remove, and keep working throughout.
func TestDeployPreservesForeignBytes(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	gw := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey())))
	original := []byte("# managed by hand\r\n" +
		`from="127.0.0.1",no-pty ` + gw + " gateway@test\r\n" +
		"\r\n" +
		`command="echo hi" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl someone` +
		"\r\n# last line, no newline")
	writeOwned(t, s, s.AuthorizedKeysPath(), original, 0o600)

	key, keyPath := deployKeyFile(t, 1, "Laptop")
	d := gatewayDeployer(s)
	tg := sshdTarget(s)
	if err := d.Deploy(t.Context(), tg, []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	got := readFile(t, s.AuthorizedKeysPath())
	if !bytes.HasPrefix(got, original) || !bytes.Contains(got, []byte("\r\n"+key.AuthorizedLine+" shellgate:key=1 Laptop")) {
		t.Fatalf("after Deploy:\n%q", got)
	}
	if err := sshLogin(t, s, s.User, keyPath); err != nil {
		t.Fatalf("login with the deployed key: %v", err)
	}
	if err := d.Remove(t.Context(), tg, []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := readFile(t, s.AuthorizedKeysPath()); !bytes.Equal(got, original) {
		t.Fatalf("after Deploy+Remove:\n got %q\nwant %q", got, original)
	}
	// The from= line still admits the gateway (the Remove above proved it
	// too, since it had to log in).
	gatewayLogin(t, tg, d)
}

func TestDeployIdempotentAndPerKey(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	k1, path1 := deployKeyFile(t, 1, "alice")
	k2, path2 := deployKeyFile(t, 2, "bob")
	d := gatewayDeployer(s)
	tg := sshdTarget(s)
	ak := s.AuthorizedKeysPath()

	if err := d.Deploy(t.Context(), tg, []DeployKey{k1}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	after1 := readFile(t, ak)
	st1 := statOf(t, ak)
	var log logLines
	if err := d.Deploy(t.Context(), tg, []DeployKey{k1}, DeployToLogin, log.add); err != nil {
		t.Fatal(err)
	}
	log.want(t, "Key alice already present on web-1")
	if got := readFile(t, ak); !bytes.Equal(got, after1) {
		t.Errorf("second Deploy changed the file:\n%q\n%q", after1, got)
	}
	if st := statOf(t, ak); st.Ino != st1.Ino || st.Mtim != st1.Mtim {
		t.Error("second Deploy rewrote the file although nothing changed")
	}
	if n := bytes.Count(after1, []byte("shellgate:key=1 ")); n != 1 {
		t.Errorf("%d lines for key 1, want 1", n)
	}

	if err := d.Deploy(t.Context(), tg, []DeployKey{k1, k2}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	both := readFile(t, ak)
	if bytes.Count(both, []byte("shellgate:key=1 ")) != 1 || bytes.Count(both, []byte("shellgate:key=2 ")) != 1 {
		t.Fatalf("want one line per key:\n%s", both)
	}
	if err := d.Remove(t.Context(), tg, []DeployKey{k1}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	if err := sshLogin(t, s, s.User, path1); err == nil {
		t.Error("removed key still logs in")
	}
	if err := sshLogin(t, s, s.User, path2); err != nil {
		t.Errorf("the other key no longer logs in: %v", err)
	}
	log = logLines{}
	if err := d.Remove(t.Context(), tg, []DeployKey{k1}, DeployToLogin, log.add); err != nil {
		t.Fatal(err)
	}
	log.want(t, "Key alice was not on web-1")
}

// TestDeployCreatesSSHDir: a login without ~/.ssh gets one, 0700, and a
// 0600 authorized_keys, both owned by the login. The gateway's own key is
// read from a second AuthorizedKeysFile so it can log in meanwhile.
func TestDeployCreatesSSHDir(t *testing.T) {
	gwDir := t.TempDir()
	s := testsshd.Start(t, testsshd.Options{ExtraConfig: []string{
		"AuthorizedKeysFile .ssh/authorized_keys " + filepath.Join(gwDir, "gateway_keys"),
	}})
	s.RequireThrowawayUser(t)
	os.Chmod(gwDir, 0o755)
	if err := os.WriteFile(filepath.Join(gwDir, "gateway_keys"), ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join(s.Home, ".ssh")
	if err := os.RemoveAll(sshDir); err != nil {
		t.Fatal(err)
	}
	key, keyPath := deployKeyFile(t, 3, "carol")
	d := gatewayDeployer(s)
	if err := d.Deploy(t.Context(), sshdTarget(s), []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	home := statOf(t, s.Home)
	for p, mode := range map[string]os.FileMode{sshDir: 0o700, filepath.Join(sshDir, "authorized_keys"): 0o600} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != mode || st.Uid != home.Uid || st.Gid != home.Gid {
			t.Errorf("%s: mode %v uid %d gid %d, want %v %d %d", p, fi.Mode().Perm(), st.Uid, st.Gid, mode, home.Uid, home.Gid)
		}
	}
	if got, want := string(readFile(t, filepath.Join(sshDir, "authorized_keys"))), key.AuthorizedLine+" shellgate:key=3 carol\n"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
	if err := sshLogin(t, s, s.User, keyPath); err != nil {
		t.Fatal(err)
	}
	// Removing from a login that has nothing creates nothing.
	os.RemoveAll(sshDir)
	if err := d.Remove(t.Context(), sshdTarget(s), []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sshDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove created %s", sshDir)
	}
}

// TestDeployCutOffLeavesOldFile: the connection dies after the temp file
// is written and before the rename, as when the gateway is killed or the
// network drops. authorized_keys must be untouched; the next run succeeds
// and removes the stale temp file.
func TestDeployCutOffLeavesOldFile(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	ak := s.AuthorizedKeysPath()
	before := readFile(t, ak)
	key, keyPath := deployKeyFile(t, 5, "dave")
	d := gatewayDeployer(s)
	rd := d.Dialer.(*recordingDialer)
	d.beforeRename = rd.cut
	var log logLines
	err := d.Deploy(t.Context(), sshdTarget(s), []DeployKey{key}, DeployToLogin, log.add)
	if err == nil {
		t.Fatal("Deploy succeeded although its connection was cut before the rename")
	}
	log.want(t, "Failed on web-1: The connection was lost")
	if got := readFile(t, ak); !bytes.Equal(got, before) {
		t.Fatalf("authorized_keys changed by a cut-off deployment:\n%q", got)
	}
	stale := tempFiles(t, filepath.Dir(ak))
	if len(stale) != 1 {
		t.Fatalf("temp files after the cut: %v, want exactly one", stale)
	}
	if b := readFile(t, filepath.Join(filepath.Dir(ak), stale[0])); !bytes.Contains(b, []byte("shellgate:key=5")) {
		t.Errorf("temp file holds %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(filepath.Dir(ak), stale[0])); fi.Mode().Perm() != 0o600 {
		t.Errorf("temp file mode %v, want 0600", fi.Mode().Perm())
	}

	// A fresh temp file of a deployment that might still be running is
	// kept...
	d.beforeRename = nil
	k2, _ := deployKeyFile(t, 6, "erin")
	if err := d.Deploy(t.Context(), sshdTarget(s), []DeployKey{k2}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	if got := tempFiles(t, filepath.Dir(ak)); len(got) != 1 {
		t.Errorf("fresh temp file removed: %v", got)
	}
	// ...a stale one is removed by the next deployment.
	d.staleAfter = -time.Hour
	if err := d.Deploy(t.Context(), sshdTarget(s), []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	if got := tempFiles(t, filepath.Dir(ak)); len(got) != 0 {
		t.Errorf("stale temp files left: %v", got)
	}
	if err := sshLogin(t, s, s.User, keyPath); err != nil {
		t.Fatal(err)
	}
}

// TestDeployRefusesChangedHostKey: after the server's host key changed
// (someone may be impersonating it), nothing is sent and nothing written.
func TestDeployRefusesChangedHostKey(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	tg := sshdTarget(s) // pins the current key
	ak := s.AuthorizedKeysPath()
	before := readFile(t, ak)
	st := statOf(t, ak)
	s.Restart(t, true)
	accepted := strings.Count(s.Log(), "Accepted publickey")

	key, _ := deployKeyFile(t, 9, "mallory_target")
	var log logLines
	err := gatewayDeployer(s).Deploy(t.Context(), tg, []DeployKey{key}, DeployToLogin, log.add)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("err = %v, want ErrHostKeyChanged", err)
	}
	log.want(t, "REMOTE HOST IDENTIFICATION HAS CHANGED")
	if got := readFile(t, ak); !bytes.Equal(got, before) {
		t.Error("authorized_keys changed")
	}
	if now := statOf(t, ak); now.Mtim != st.Mtim || now.Ino != st.Ino {
		t.Error("authorized_keys rewritten")
	}
	if strings.Count(s.Log(), "Accepted publickey") != accepted || strings.Contains(s.Log(), "Failed publickey") {
		t.Errorf("the server saw an authentication attempt:\n%s", s.Log())
	}
}

// TestDeployRefusesSymlink: authorized_keys that is a link (to a shared or
// managed file) is neither followed nor replaced.
func TestDeployRefusesSymlink(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	ak := s.AuthorizedKeysPath()
	realPath := filepath.Join(filepath.Dir(ak), "shared_keys")
	content := readFile(t, ak)
	writeOwned(t, s, realPath, content, 0o600)
	os.Remove(ak)
	if err := os.Symlink(realPath, ak); err != nil {
		t.Fatal(err)
	}
	key, _ := deployKeyFile(t, 11, "frank")
	var log logLines
	err := gatewayDeployer(s).Deploy(t.Context(), sshdTarget(s), []DeployKey{key}, DeployToLogin, log.add)
	if !errors.Is(err, ErrUnsafeAuthorizedKeys) {
		t.Fatalf("err = %v, want ErrUnsafeAuthorizedKeys", err)
	}
	log.want(t, "is a symbolic link")
	if fi, err := os.Lstat(ak); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced")
	}
	if got := readFile(t, realPath); !bytes.Equal(got, content) {
		t.Error("the link's target was modified")
	}
}

func TestDeployThroughJumpHost(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	jump := startServer(t, serverOpts{keys: []ssh.PublicKey{s.ClientSigner.PublicKey()}})
	tg := sshdTarget(s)
	tg.Jump = jump.target("bastion", true)
	key, keyPath := deployKeyFile(t, 12, "grace")
	if err := gatewayDeployer(s).Deploy(t.Context(), tg, []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	if err := sshLogin(t, s, s.User, keyPath); err != nil {
		t.Fatal(err)
	}
}

func TestDeployInvalidKeysSendNothing(t *testing.T) {
	d := &Deployer{Dialer: dialerFunc(func() { t.Error("dialed for invalid keys") })}
	good, _ := deployKeyFile(t, 1, "ok")
	tg := &Target{Name: "web-1", Host: "127.0.0.1", User: "u"}
	for _, k := range []DeployKey{
		{ID: 1, Name: "bad name", AuthorizedLine: good.AuthorizedLine},
		{ID: 1, Name: "x;rm -rf /", AuthorizedLine: good.AuthorizedLine},
		{ID: 0, Name: "ok", AuthorizedLine: good.AuthorizedLine},
		{ID: 1, Name: "ok", AuthorizedLine: "ssh-ed25519 notbase64"},
		{ID: 1, Name: "ok", AuthorizedLine: good.AuthorizedLine + "\nssh-ed25519 AAAA injected"},
		{ID: 1, Name: "ok", AuthorizedLine: `command="sh" ` + good.AuthorizedLine},
	} {
		var log logLines
		if err := d.Deploy(t.Context(), tg, []DeployKey{k}, DeployToLogin, log.add); !errors.Is(err, ErrInvalidDeployKey) {
			t.Errorf("%+v: err = %v, want ErrInvalidDeployKey", k, err)
		}
		log.want(t, "Failed on web-1")
	}
}

type dialerFunc func()

func (f dialerFunc) DialContext(context.Context, string, string) (net.Conn, error) {
	f()
	return nil, errors.New("no")
}

func TestDeployMessage(t *testing.T) {
	tg := &Target{Name: "web-1", Host: "10.0.0.5"}
	key := newSigner(t).PublicKey()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&HostKeyError{Target: tg, Presented: key, Fingerprint: ssh.FingerprintSHA256(key), Err: ErrHostKeyChanged}, "REMOTE HOST IDENTIFICATION HAS CHANGED"},
		{&DialError{Target: tg, Phase: PhaseConnect, Err: syscall.ECONNREFUSED}, "refused"},
		{deployErrf(ErrUnsafeAuthorizedKeys, "x is a symbolic link"), "x is a symbolic link"},
		{ErrInvalidDeployKey, "not valid"},
		{context.Canceled, "cancelled"},
		{errors.New("boom"), "The deployment failed: boom"},
	} {
		if got := DeployMessage(tc.err); !strings.Contains(got, tc.want) || (tc.want == "" && got != "") {
			t.Errorf("DeployMessage(%v) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
}

func TestHostLabel(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{Name: "web-1", Host: "10.0.0.5"}, "web-1 (10.0.0.5)"},
		{Target{Host: "10.0.0.5"}, "10.0.0.5"},
		{Target{Name: "db.example", Host: "db.example"}, "db.example"},
	} {
		if got := hostLabel(&tc.t); got != tc.want {
			t.Errorf("hostLabel(%+v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

func TestTempNames(t *testing.T) {
	for name, want := range map[string]bool{
		".authorized_keys.shellgate-0123456789abcdef.tmp": true,
		".authorized_keys.shellgate-0123456789abcdef":     false,
		".authorized_keys.shellgate-0123456789ABCDEF.tmp": false,
		"authorized_keys":                                   false,
		".authorized_keys.shellgate-.tmp":                   false,
		".authorized_keys.shellgate-0123456789abcdef.tmp/x": false,
	} {
		if got := tempNameRE.MatchString(name); got != want {
			t.Errorf("%q: %v, want %v", name, got, want)
		}
	}
}

// TestDeployConcurrentEditByAdmin: someone edits authorized_keys while we
// are between reading it and renaming our copy over it. Renaming anyway
// would silently drop their change; the deployer starts over instead.
func TestDeployConcurrentEditByAdmin(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	ak := s.AuthorizedKeysPath()
	appendLine := func(line string) {
		f, err := os.OpenFile(ak, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteString(line)
		f.Close()
	}
	key, _ := deployKeyFile(t, 13, "heidi")
	d := gatewayDeployer(s)
	calls := 0
	d.beforeRename = func() {
		if calls++; calls == 1 {
			appendLine("# added by the admin meanwhile\n")
		}
	}
	if err := d.Deploy(t.Context(), sshdTarget(s), []DeployKey{key}, DeployToLogin, nil); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, ak)
	if !bytes.Contains(got, []byte("# added by the admin meanwhile\n")) || !bytes.Contains(got, []byte("shellgate:key=13 heidi")) {
		t.Errorf("want both the admin's line and ours:\n%s", got)
	}
	if calls != 2 {
		t.Errorf("%d attempts, want 2", calls)
	}

	// A file that never stops changing is left to its editor.
	before := readFile(t, ak)
	k2, _ := deployKeyFile(t, 14, "ivan")
	n := 0
	d.beforeRename = func() { n++; appendLine("# busy " + strings.Repeat("x", n) + "\n") }
	err := d.Deploy(t.Context(), sshdTarget(s), []DeployKey{k2}, DeployToLogin, nil)
	if !errors.Is(err, ErrConcurrentEdit) {
		t.Fatalf("err = %v, want ErrConcurrentEdit", err)
	}
	if got := readFile(t, ak); bytes.Contains(got, []byte("shellgate:key=14")) || !bytes.HasPrefix(got, before) {
		t.Errorf("file after giving up:\n%s", got)
	}
	if left := tempFiles(t, filepath.Dir(ak)); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// TestDeployConcurrentAttachments: keys attached at the same moment all end
// up in the file (no lost update between read and rename).
func TestDeployConcurrentAttachments(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	s.RequireThrowawayUser(t)
	d := gatewayDeployer(s)
	const n = 6
	keys := make([]DeployKey, n)
	for i := range keys {
		keys[i], _ = deployKeyFile(t, int64(100+i), "k"+string(rune('a'+i)))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range keys {
		wg.Go(func() {
			errs[i] = d.Deploy(t.Context(), sshdTarget(s), keys[i:i+1], DeployToLogin, nil)
		})
	}
	wg.Wait()
	got := readFile(t, s.AuthorizedKeysPath())
	for i, err := range errs {
		if err != nil {
			t.Errorf("deploy %d: %v", i, err)
		}
		if !bytes.Contains(got, []byte(keys[i].AuthorizedLine)) {
			t.Errorf("key %d missing:\n%s", i, got)
		}
	}
}
