package terminal

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/sshserver"
	"github.com/shellgate/shellgate/internal/testsshd"
)

// User-per-key mode needs a gateway login that is root. testsshd refuses
// root logins (PermitRootLogin no) and its throwaway user has no sudo, so
// the gateway side runs against the in-process sshserver, whose sessions
// run as the current OS user (root in CI): useradd, getent, runuser and the
// system's sftp-server are the real ones. The resulting account is then
// checked with a real sshd and the real ssh client.

func requireUserTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("user-per-key tests create system users: run as root")
	}
	for _, tool := range []string{"useradd", "userdel", "getent", "runuser"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("user-per-key tests need %s", tool)
		}
	}
	if _, err := os.Stat("/usr/lib/openssh/sftp-server"); err != nil {
		t.Skip("user-per-key tests need /usr/lib/openssh/sftp-server (openssh-server)")
	}
}

// throwawayName returns a unique login name, mixed case like real key
// names, and deletes that user (and its home) at cleanup if it exists.
func throwawayName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "Sg_Key_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if exec.Command("getent", "passwd", name).Run() != nil {
			return
		}
		var out []byte
		var err error
		for range 20 {
			if out, err = exec.Command("userdel", "-r", name).CombinedOutput(); err == nil || !strings.Contains(string(out), "currently used") {
				break
			}
			time.Sleep(100 * time.Millisecond) // its sftp-server is exiting
		}
		if err != nil && !strings.Contains(string(out), "mail spool") {
			t.Errorf("userdel -r %s: %v: %s", name, err, out)
		}
	})
	return name
}

// rootGateway starts an in-process SSH server (running commands as root)
// and returns a Deployer and a target logging in as root, or as login if
// set. With fakeSudo, a sudo on the server's PATH refuses as sudo -n does
// without a NOPASSWD rule, whether or not sudo is installed here.
//
// Commands run through a wrapper that waits 0.2 s first: internal/sshserver
// replies to "exec" only after starting the command, so a command that
// exits at once can close the channel before the reply and the client sees
// EOF instead of an exit status (a harness race, reported; OpenSSH replies
// first).
func rootGateway(t *testing.T, login string, fakeSudo bool) (*Deployer, *Target) {
	t.Helper()
	dir := t.TempDir()
	path := os.Getenv("PATH")
	if fakeSudo {
		script := "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n"
		if err := os.WriteFile(filepath.Join(dir, "sudo"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		path = dir + ":" + path
	}
	shell := filepath.Join(dir, "slow-sh")
	wrapper := "#!/bin/sh\nsleep 0.2\nPATH='" + path + "'; export PATH\nexec /bin/sh \"$@\"\n"
	if err := os.WriteFile(shell, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	gw := newSigner(t)
	srv, err := sshserver.Start(sshserver.Config{
		Shell:     []string{shell},
		Dir:       dir,
		PublicKey: func(_ string, k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), gw.PublicKey().Marshal()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	host, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	if login == "" {
		login = "root"
	}
	tg := &Target{Name: "web-1", Host: host, Port: p, User: login, HostKeys: []ssh.PublicKey{srv.HostKey()}}
	return &Deployer{Dialer: &net.Dialer{}, Auth: Auth{Signers: []ssh.Signer{gw}}, Options: testOpts}, tg
}

func TestDeployUserPerKey(t *testing.T) {
	requireUserTools(t)
	name := throwawayName(t)
	d, tg := rootGateway(t, "", false)
	key, keyPath := deployKeyFile(t, 21, name)

	var log logLines
	if err := d.Deploy(t.Context(), tg, []DeployKey{key}, DeployUserPerKey, log.add); err != nil {
		t.Fatalf("Deploy: %v\n%s", err, log.String())
	}
	log.want(t, "Adding user: "+name, "Key "+name+" deployed to web-1 (127.0.0.1)")

	out, err := exec.Command("getent", "passwd", name).Output()
	if err != nil {
		t.Fatalf("user %s not created: %v", name, err)
	}
	e, err := parsePasswd(string(out), name)
	if err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(e.home, ".ssh", "authorized_keys")
	for p, mode := range map[string]os.FileMode{filepath.Dir(ak): 0o700, ak: 0o600} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != mode || int(st.Uid) != e.uid {
			t.Errorf("%s: mode %v uid %d, want %v %d", p, fi.Mode().Perm(), st.Uid, mode, e.uid)
		}
	}
	if got, want := string(readFile(t, ak)), key.AuthorizedLine+" shellgate:key=21 "+name+"\n"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}

	// Real OpenSSH accepts the key for the new login. UsePAM yes as on
	// Debian and RHEL: useradd leaves the password locked ("!"), which
	// sshd treats as a locked account when it does not use PAM.
	s := testsshd.Start(t, testsshd.Options{ExtraConfig: []string{"UsePAM yes", "AllowUsers " + name}})
	if err := sshLogin(t, s, name, keyPath); err != nil {
		t.Errorf("OpenSSH login as %s: %v", name, err)
	}

	log = logLines{}
	if err := d.Deploy(t.Context(), tg, []DeployKey{key}, DeployUserPerKey, log.add); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "Adding user") {
		t.Errorf("existing user added again:\n%s", log.String())
	}
	log.want(t, "Key "+name+" already present on web-1")

	log = logLines{}
	if err := d.Remove(t.Context(), tg, []DeployKey{key}, DeployUserPerKey, log.add); err != nil {
		t.Fatal(err)
	}
	log.want(t, "Key "+name+" removed from web-1")
	if got := readFile(t, ak); len(got) != 0 {
		t.Errorf("authorized_keys after Remove = %q", got)
	}
	if err := sshLogin(t, s, name, keyPath); err == nil {
		t.Error("removed key still logs in")
	}

	// Removing for a login that does not exist is not an error.
	other, _ := deployKeyFile(t, 22, throwawayName(t))
	log = logLines{}
	if err := d.Remove(t.Context(), tg, []DeployKey{other}, DeployUserPerKey, log.add); err != nil {
		t.Fatal(err)
	}
	log.want(t, "does not exist")
}

// TestDeployUserPerKeyRefusesSystemAccounts: a key named "root" or
// "daemon" must not become a way into those accounts.
func TestDeployUserPerKeyRefusesSystemAccounts(t *testing.T) {
	requireUserTools(t)
	d, tg := rootGateway(t, "", false)
	rootKeys := "/root/.ssh/authorized_keys"
	before, beforeErr := os.ReadFile(rootKeys)
	for _, name := range []string{"root", "daemon"} {
		key, _ := deployKeyFile(t, 30, name)
		var log logLines
		err := d.Deploy(t.Context(), tg, []DeployKey{key}, DeployUserPerKey, log.add)
		if !errors.Is(err, ErrSystemAccount) {
			t.Errorf("%s: err = %v, want ErrSystemAccount", name, err)
		}
		log.want(t, "is a system account")
	}
	after, afterErr := os.ReadFile(rootKeys)
	if !bytes.Equal(before, after) || (beforeErr == nil) != (afterErr == nil) {
		t.Error("root's authorized_keys changed")
	}
}

// TestDeployUserPerKeyWithoutPrivilege: a login that is not root goes
// through sudo -n, and says so plainly when it cannot.
func TestDeployUserPerKeyWithoutPrivilege(t *testing.T) {
	requireUserTools(t)
	d, tg := rootGateway(t, "deployer", true)
	name := throwawayName(t)
	key, _ := deployKeyFile(t, 31, name)
	var log logLines
	err := d.Deploy(t.Context(), tg, []DeployKey{key}, DeployUserPerKey, log.add)
	if !errors.Is(err, ErrNoPrivilege) {
		t.Fatalf("err = %v, want ErrNoPrivilege", err)
	}
	log.want(t, "needs root or passwordless sudo")
	if exec.Command("getent", "passwd", name).Run() == nil {
		t.Error("user created without privilege")
	}
}

func TestUserNameCommands(t *testing.T) {
	for _, name := range []string{"", "a b", "x;id", "$(id)", "`id`", "a'b", "-o", "../x", "é", strings.Repeat("a", 33), "a\nb"} {
		if _, err := userName(name); !errors.Is(err, ErrInvalidDeployKey) {
			t.Errorf("userName(%q) accepted", name)
		}
	}
	for _, name := range []string{"My_office_Laptop", "a", strings.Repeat("Z", 32), "_9"} {
		if _, err := userName(name); err != nil {
			t.Errorf("userName(%q): %v", name, err)
		}
	}
	root := asUserCommand(&Target{User: "root"}, "Bob", sftpServerScript)
	if !strings.Contains(root, "runuser -u Bob -- /bin/sh -c '") || !strings.Contains(root, "su -s /bin/sh -c '") {
		t.Errorf("as root: %s", root)
	}
	sudo := asUserCommand(&Target{User: "ops"}, "Bob", sftpServerScript)
	if !strings.HasPrefix(sudo, "exec sudo -n -u Bob -- /bin/sh -c '") {
		t.Errorf("via sudo: %s", sudo)
	}
	if strings.Contains(sftpServerScript, "'") {
		t.Error("sftpServerScript must not contain a single quote")
	}
	if privileged(&Target{User: "root"}) != "" || privileged(&Target{User: "ops"}) != "sudo -n " {
		t.Error("privileged prefix")
	}
}

func TestParsePasswd(t *testing.T) {
	for _, tc := range []struct {
		in, name string
		uid      int
		home     string
		ok       bool
	}{
		{"bob:x:1001:1001:Bob,,,:/home/bob:/bin/bash\n", "bob", 1001, "/home/bob", true},
		{"bob:x:1001:1001::/home/bob:/bin/bash", "bob", 1001, "/home/bob", true},
		{"root:x:0:0:root:/root:/bin/bash\n", "root", 0, "/root", true},
		{"alice:x:1001:1001::/home/alice:/bin/bash\n", "bob", 0, "", false},
		{"bob:x:abc:1001::/home/bob:/bin/bash\n", "bob", 0, "", false},
		{"bob:x:1001:1001::home/bob:/bin/bash\n", "bob", 0, "", false},
		{"bob:x:1001:1001::/home/bob\n", "bob", 0, "", false},
		{"", "bob", 0, "", false},
	} {
		e, err := parsePasswd(tc.in, tc.name)
		if (err == nil) != tc.ok || (tc.ok && (e.uid != tc.uid || e.home != tc.home)) {
			t.Errorf("parsePasswd(%q) = %+v, %v", tc.in, e, err)
		}
	}
}

// FuzzParsePasswd: whatever a server prints, a parsed entry has an
// absolute home without line breaks, for the name that was asked.
func FuzzParsePasswd(f *testing.F) {
	f.Add("bob:x:1001:1001:Bob:/home/bob:/bin/bash\n", "bob")
	f.Add("bob:x:1001:1001::/home/bob:/bin/bash\nbob:x:0:0::/root:/bin/sh\n", "bob")
	f.Fuzz(func(t *testing.T, out, name string) {
		e, err := parsePasswd(out, name)
		if err != nil {
			return
		}
		if !strings.HasPrefix(e.home, "/") || strings.ContainsAny(e.home, "\r\n\x00") || e.uid < 0 ||
			!strings.HasPrefix(out, name+":") {
			t.Errorf("parsePasswd(%q, %q) = %+v", out, name, e)
		}
	})
}
