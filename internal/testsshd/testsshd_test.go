package testsshd

import (
	"errors"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return string(out)
}

func TestPublicKeyLogin(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Dial(t)
	if got := run(t, c, "echo hello"); got != "hello\n" {
		t.Fatalf("echo hello = %q", got)
	}
	if got := run(t, c, "id -un; pwd"); got != s.User+"\n"+s.Home+"\n" {
		t.Fatalf("id -un; pwd = %q, want user %s in %s", got, s.User, s.Home)
	}
	if c.User() == "root" {
		t.Fatal("logged in as root")
	}
}

func TestPasswordLogin(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Password: true})
	cfg := s.ClientConfig()
	cfg.Auth = []ssh.AuthMethod{ssh.Password(s.Password)}
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := run(t, c, "echo hello"); got != "hello\n" {
		t.Fatalf("echo hello = %q", got)
	}
	cfg.Auth = []ssh.AuthMethod{ssh.Password("wrong")}
	if c, err := ssh.Dial("tcp", s.Addr, cfg); err == nil {
		c.Close()
		t.Fatal("wrong password accepted")
	}
}

func TestKeyboardInteractiveLogin(t *testing.T) {
	t.Parallel()
	for _, twice := range []bool{false, true} {
		s := Start(t, Options{KbdInteractive: true, KbdInteractiveTwice: twice})
		var rounds []string
		cfg := s.ClientConfig()
		cfg.Auth = []ssh.AuthMethod{ssh.KeyboardInteractive(func(name, instr string, qs []string, echos []bool) ([]string, error) {
			if len(qs) == 0 {
				return nil, nil // an info-only round
			}
			if len(qs) != 1 || echos[0] {
				return nil, errors.New("want one question without echo")
			}
			rounds = append(rounds, qs[0])
			return []string{s.Password}, nil
		})}
		c, err := ssh.Dial("tcp", s.Addr, cfg)
		if err != nil {
			t.Fatalf("twice=%v: %v", twice, err)
		}
		run(t, c, "true")
		c.Close()
		want := 1
		if twice {
			want = 2
		}
		if len(rounds) != want || !strings.Contains(rounds[0], "assword") {
			t.Fatalf("twice=%v: questions %q, want %d password prompts", twice, rounds, want)
		}
	}
}

func TestRestartWithNewHostKey(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	old := s.ClientConfig() // pins the first host key
	s.Restart(t, false)
	if c, err := ssh.Dial("tcp", s.Addr, old); err != nil {
		t.Fatalf("same key after restart: %v", err)
	} else {
		c.Close()
	}
	s.Restart(t, true)
	if _, err := ssh.Dial("tcp", s.Addr, old); err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("dial with the old pinned key = %v, want host key mismatch", err)
	}
	run(t, s.Dial(t), "true")
}

func TestHostKeyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := Start(t, Options{HostKeyDir: dir})
	b := Start(t, Options{HostKeyDir: dir})
	if string(a.HostKey.Marshal()) != string(b.HostKey.Marshal()) {
		t.Fatal("instances sharing HostKeyDir have different host keys")
	}
	run(t, b.Dial(t), "true")
}

func TestOpenSSHClient(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	out, err := s.SSHCommand(t, "echo", "from-openssh").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "from-openssh") {
		t.Fatalf("ssh: %v: %s", err, out)
	}
	s.Restart(t, true)
	if out, err := s.SSHCommand(t, "true").CombinedOutput(); err != nil {
		t.Fatalf("ssh after host key change: %v: %s", err, out)
	}
}

func TestSFTPSubsystem(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}
}

func TestAuthorizedKeysIsTheRealFile(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.RequireThrowawayUser(t)
	if want := s.Home + "/.ssh/authorized_keys"; s.AuthorizedKeysPath() != want {
		t.Fatalf("AuthorizedKeysPath = %s, want %s", s.AuthorizedKeysPath(), want)
	}
	st, err := os.Stat(s.AuthorizedKeysPath())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("authorized_keys: %v, mode %v", err, st.Mode())
	}
	// Emptying the file must lock the client out: sshd really reads it.
	if err := os.WriteFile(s.AuthorizedKeysPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig()); err == nil {
		c.Close()
		t.Fatal("login succeeded with an empty authorized_keys")
	}
}

func TestCleanupRemovesUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("no throwaway user when not root")
	}
	var name string
	t.Run("instance", func(t *testing.T) {
		s := Start(t, Options{})
		name = s.User
		sess, err := s.Dial(t).NewSession()
		if err != nil {
			t.Fatal(err)
		}
		// A process still running at cleanup must not stop the user's removal.
		if err := sess.Start("sleep 600"); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := user.Lookup(name); err == nil {
		t.Fatalf("user %s still exists after cleanup", name)
	}
}

// TestStopMasterDespiteSurvivingConnection: a per-connection sshd process that
// outlives the listening sshd (one forked while Stop was walking the process tree, or
// an orphan after Restart) still holds sshd's stderr pipe. Stopping the master must not
// wait for it, or the whole package hangs until the test timeout.
func TestStopMasterDespiteSurvivingConnection(t *testing.T) {
	s := Start(t, Options{})
	client := s.Dial(t)
	defer client.Close()
	survivors := childPIDs(s.cmd.Process.Pid) // the connection's sshd processes
	if len(survivors) == 0 {
		t.Fatal("no per-connection sshd process found")
	}
	done := make(chan struct{})
	go func() {
		s.stopMaster() // the master only: the connection's processes live on
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("stopping sshd hung on a connection process holding its stderr")
	}
	for _, pid := range survivors {
		killDescendants(pid)
	}
}
