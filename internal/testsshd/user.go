package testsshd

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// userDB serialises changes to the user database within this process;
// concurrent test binaries are covered by retrying on lock errors.
var userDB sync.Mutex

// createUser creates the throwaway login user, home in Dir/home, and
// registers its removal.
func (s *SSHD) createUser(t testing.TB) {
	t.Helper()
	// A root sshd refuses to start without its privilege-separation
	// directory, which only the system's ssh service creates at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	// The user must reach its home: t.TempDir's parent is created 0700.
	for _, d := range []string{filepath.Dir(s.Dir), s.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatalf("testsshd: %v", err)
		}
	}
	suffix := make([]byte, 5)
	rand.Read(suffix)
	s.User = "sgt" + hex.EncodeToString(suffix) // 13 characters, within useradd's 32
	s.Home = filepath.Join(s.Dir, "home")
	if err := userCommand("", "useradd", "--no-create-home", "--home-dir", s.Home,
		"--shell", "/bin/bash", "--user-group", s.User); err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	s.Throwaway = true
	t.Cleanup(func() { s.removeUser(t) })

	u, err := user.Lookup(s.User)
	if err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	s.uid, _ = strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	// Always set a password: with UsePAM no, sshd refuses every method,
	// public key included, for an account whose password is locked ("!").
	password := rand.Text()
	if err := userCommand(s.User+":"+password+"\n", "chpasswd"); err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	if s.opts.Password || s.opts.KbdInteractive {
		s.Password = password
	}

	sshDir := filepath.Join(s.Home, ".ssh")
	for _, d := range []string{s.Home, sshDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("testsshd: %v", err)
		}
		if err := os.Chown(d, s.uid, gid); err != nil {
			t.Fatalf("testsshd: %v", err)
		}
	}
	s.authorizedKeys = filepath.Join(sshDir, "authorized_keys")
}

// currentUser makes the current user the login user, with an
// authorized_keys file in Dir so its real home stays untouched.
func (s *SSHD) currentUser(t testing.TB) {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	s.User, s.Home = u.Username, u.HomeDir
	s.uid = os.Getuid()
	s.authorizedKeys = filepath.Join(s.Dir, "authorized_keys")
}

func (s *SSHD) writeAuthorizedKeys(t testing.TB) {
	t.Helper()
	writeFile(t, s.authorizedKeys, ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()), 0o600)
	if s.Throwaway {
		u, _ := user.Lookup(s.User)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.authorizedKeys, s.uid, gid); err != nil {
			t.Fatalf("testsshd: %v", err)
		}
	}
}

// removeUser ends the throwaway user's processes (all descendants of our
// sshd, found by the user's UID and killed by PID) and deletes the user.
func (s *SSHD) removeUser(t testing.TB) {
	var err error
	for range 10 {
		forEachProc(func(pid int, status string) {
			if field(status, "Uid:") == strconv.Itoa(s.uid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		if err = userCommand("", "userdel", s.User); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("testsshd: remove user %s: %v", s.User, err)
}

// userCommand runs a user-database tool, retrying while another process
// holds the database lock.
func userCommand(stdin, name string, args ...string) error {
	userDB.Lock()
	defer userDB.Unlock()
	var err error
	for i := range 20 {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, e := cmd.CombinedOutput()
		if e == nil {
			return nil
		}
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), e, strings.TrimSpace(string(out)))
		if !strings.Contains(string(out), "lock") {
			return err
		}
		time.Sleep(time.Duration(i+1) * 50 * time.Millisecond)
	}
	return err
}
