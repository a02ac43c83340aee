// Package testsshd starts a real OpenSSH sshd for tests: its own config, host
// key, client key and log in a temporary directory, listening on a free
// loopback port, so shellgate's terminal, file and deployment code is tested
// against what users actually connect to.
//
// Run as root (the CI case), each instance creates a throwaway login user
// (sgt + random suffix) whose home lives in the test's temporary directory and
// whose real ~/.ssh/authorized_keys holds ClientSigner's key; the user, its
// processes and its files are removed at cleanup. Neither root's home nor the
// system's sshd is touched; the only system-wide effects are the user entry
// for the test's lifetime and /run/sshd, created when missing because a
// root sshd refuses to start without its privilege-separation directory.
//
// Run as another user, sshd runs unprivileged as that user, with its real
// home but an authorized_keys file in the temporary directory. Password and
// keyboard-interactive logins are impossible then (they skip), and tests that
// write into the login user's home must call RequireThrowawayUser.
//
// Keyboard-interactive goes through PAM (Debian's /etc/pam.d/sshd), so the
// real server asks one question per round ("Password: ", echo off);
// KbdInteractiveTwice gives two rounds. Two questions in one round would need
// a PAM service of our own, and Debian 12's OpenSSH 9.2 predates the
// PAMServiceName option (9.8), so that is not offered.
//
// sshd is looked up at /usr/sbin/sshd, then in PATH. When it is missing the
// test is skipped, or fails when CI=true, so CI cannot silently skip.
package testsshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/netnstest"
)

// Options configure an instance. The zero value offers public-key login only.
type Options struct {
	// Password enables PasswordAuthentication; the user's random password is
	// SSHD.Password.
	Password bool
	// KbdInteractive enables keyboard-interactive authentication through PAM
	// (UsePAM yes): Debian's pam_unix asks one question, "Password: ", with
	// echo off; the answer is SSHD.Password.
	KbdInteractive bool
	// KbdInteractiveTwice requires keyboard-interactive twice in a row
	// (AuthenticationMethods keyboard-interactive,keyboard-interactive), so a
	// client sees two prompt rounds. Implies KbdInteractive.
	KbdInteractiveTwice bool
	// ExtraConfig holds sshd_config lines. They are written before the
	// defaults, because sshd keeps the first value it reads for a keyword;
	// from the first Match line on they are written after the defaults.
	ExtraConfig []string
	// Netns, when set, runs sshd inside that network namespace (made by
	// internal/netnstest), listening on the namespace's own loopback: only a
	// process inside it (an agent) can reach it.
	Netns string
	// HostKeyDir, when set, holds the host key (ssh_host_ed25519_key),
	// generated there when missing, so several instances or test runs can
	// share it. Restart with a new key overwrites it.
	HostKeyDir string
}

// SSHD is a running sshd. Fields are read-only for callers.
type SSHD struct {
	Addr string // 127.0.0.1:port
	Host string // 127.0.0.1
	Port int

	User     string // login user
	Home     string // its home directory
	Password string // its password; empty unless Options.Password or KbdInteractive
	// Throwaway reports that User was created for this instance, so its home
	// may be modified; false when not running as root.
	Throwaway bool

	HostKey       ssh.PublicKey // current host key (changes with Restart(t, true))
	ClientSigner  ssh.Signer    // authorized for User
	ClientKeyPath string        // ClientSigner as an OpenSSH private key file (0600), for ssh -i

	Dir     string // temporary directory: config, keys, logs
	LogFile string // sshd's log (-E), LogLevel VERBOSE

	opts           Options
	sshdPath       string
	configPath     string
	hostKeyPath    string
	authorizedKeys string
	uid            int

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has been waited for
	stderr   *bytes.Buffer
	stopped  bool
	detached []int // per-connection sshd processes of masters stopped by Restart
}

// Start starts sshd with opts and stops it, and removes what it created, at
// the end of the test.
func Start(t testing.TB, opts Options) *SSHD {
	t.Helper()
	if opts.KbdInteractiveTwice {
		opts.KbdInteractive = true
	}
	s := &SSHD{opts: opts, sshdPath: findSSHD(t), Dir: t.TempDir(), Host: "127.0.0.1"}
	s.LogFile = filepath.Join(s.Dir, "sshd.log")
	s.configPath = filepath.Join(s.Dir, "sshd_config")
	s.ClientKeyPath = filepath.Join(s.Dir, "id_ed25519")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log (%s):\n%s", s.LogFile, s.Log())
		}
	})

	if os.Geteuid() == 0 {
		s.createUser(t)
	} else {
		if opts.Password || opts.KbdInteractive {
			t.Skip("testsshd: password and keyboard-interactive logins need root (a throwaway user with a password)")
		}
		s.currentUser(t)
	}

	keyDir := opts.HostKeyDir
	if keyDir == "" {
		keyDir = s.Dir
	}
	s.hostKeyPath = filepath.Join(keyDir, "ssh_host_ed25519_key")
	if _, err := os.Stat(s.hostKeyPath); err != nil {
		s.writeHostKey(t)
	}
	s.loadHostKey(t)

	signer, pemBytes := newKey(t)
	s.ClientSigner = signer
	writeFile(t, s.ClientKeyPath, pemBytes, 0o600)
	writeFile(t, s.ClientKeyPath+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
	s.writeAuthorizedKeys(t)

	// A port is picked by binding :0 and released for sshd; another process
	// may take it in between, so a bind failure is retried with a new port.
	for attempt := 1; ; attempt++ {
		s.Port = freePort(t)
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 5 || !strings.Contains(s.Log()+s.stderr.String(), "Address already in use") {
			t.Fatalf("testsshd: %v", err)
		}
	}
	t.Cleanup(s.Stop) // before the user's removal, registered earlier
	return s
}

// Restart stops sshd and starts it again on the same port, with a freshly
// generated host key when newHostKey is set. Established connections survive,
// as they do when an administrator restarts sshd.
func (s *SSHD) Restart(t testing.TB, newHostKey bool) {
	t.Helper()
	s.mu.Lock()
	if s.cmd != nil && !s.stopped {
		// Connections outlive the listener; remember them for Stop.
		s.detached = append(s.detached, childPIDs(s.cmd.Process.Pid)...)
	}
	s.mu.Unlock()
	s.stopMaster()
	if newHostKey {
		s.writeHostKey(t)
		s.loadHostKey(t)
	}
	var err error
	// The port was just released by our own sshd; retry briefly in case the
	// kernel has not let go of it yet.
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testsshd: restart: %v", err)
}

// Stop stops sshd and ends its established connections and their
// sessions. It is safe to call more than once; Start registers it for
// cleanup.
func (s *SSHD) Stop() {
	s.mu.Lock()
	roots := s.detached
	s.detached = nil
	if s.cmd != nil && !s.stopped {
		roots = append(roots, s.cmd.Process.Pid)
	}
	s.mu.Unlock()
	for _, pid := range roots {
		killDescendants(pid)
	}
	s.stopMaster()
}

// AuthorizedKeysPath is the authorized_keys file sshd reads for User: the
// real ~/.ssh/authorized_keys of the throwaway user, or a file in Dir when
// not running as root.
func (s *SSHD) AuthorizedKeysPath() string { return s.authorizedKeys }

// RequireThrowawayUser skips the test unless User is a throwaway account
// whose home the test may modify.
func (s *SSHD) RequireThrowawayUser(t testing.TB) {
	t.Helper()
	if !s.Throwaway {
		t.Skip("testsshd: not root, so the login user is the real current user; not modifying its home")
	}
}

// ClientConfig returns a client configuration for User that pins the
// current host key and offers ClientSigner (and Password when set).
func (s *SSHD) ClientConfig() *ssh.ClientConfig {
	auth := []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)}
	if s.Password != "" {
		auth = append(auth, ssh.Password(s.Password))
	}
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         10 * time.Second,
	}
}

// Dial connects with ClientConfig and closes the client at the end of the test.
func (s *SSHD) Dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("testsshd: dial %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// SSHCommand returns the OpenSSH client command logging in as User with
// ClientKeyPath, checking the current host key strictly against a
// known_hosts file of its own and ignoring every user or system ssh_config,
// followed by args (a remote command).
func (s *SSHD) SSHCommand(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	knownHosts := filepath.Join(s.Dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", s.Host, s.Port, ssh.MarshalAuthorizedKey(s.HostKey))
	writeFile(t, knownHosts, []byte(line), 0o644)
	base := []string{
		"-F", "none",
		"-i", s.ClientKeyPath,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
		"-p", strconv.Itoa(s.Port),
		"-l", s.User,
		s.Host,
	}
	return exec.Command("ssh", append(base, args...)...)
}

// Log returns sshd's log so far.
func (s *SSHD) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

func findSSHD(t testing.TB) string {
	t.Helper()
	path := "/usr/sbin/sshd"
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath("sshd"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("testsshd: sshd not found; install it: apt-get install openssh-server")
			}
			t.Skip("testsshd: sshd not found (apt-get install openssh-server)")
		}
	}
	// sshd re-executes itself and insists on an absolute path.
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	return abs
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testsshd: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newKey(t testing.TB) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testsshd: generate key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("testsshd: signer: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("testsshd: marshal key: %v", err)
	}
	return signer, pem.EncodeToMemory(block)
}

func (s *SSHD) writeHostKey(t testing.TB) {
	t.Helper()
	signer, pemBytes := newKey(t)
	writeFile(t, s.hostKeyPath, pemBytes, 0o600)
	writeFile(t, s.hostKeyPath+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
}

func (s *SSHD) loadHostKey(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(s.hostKeyPath)
	if err != nil {
		t.Fatalf("testsshd: host key: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("testsshd: host key %s: %v", s.hostKeyPath, err)
	}
	s.HostKey = signer.PublicKey()
}

func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	if err := os.Chmod(path, perm); err != nil { // WriteFile keeps the mode of an existing file
		t.Fatalf("testsshd: %v", err)
	}
}

// config renders sshd_config.
func (s *SSHD) config() string {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var head, tail []string
	for i, l := range s.opts.ExtraConfig {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			tail = s.opts.ExtraConfig[i:]
			break
		}
		head = append(head, l)
	}
	lines := append([]string{"# Written by shellgate internal/testsshd."}, head...)
	lines = append(lines,
		"ListenAddress "+s.Addr,
		"HostKey "+s.hostKeyPath,
		"PidFile "+filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile "+s.authorizedKeysConfig(),
		"AllowUsers "+s.User,
		"PermitRootLogin no",
		"StrictModes no",
		"UsePAM "+yesNo(s.opts.KbdInteractive),
		"PubkeyAuthentication yes",
		"PasswordAuthentication "+yesNo(s.opts.Password),
		"KbdInteractiveAuthentication "+yesNo(s.opts.KbdInteractive),
	)
	if s.opts.KbdInteractiveTwice {
		lines = append(lines, "AuthenticationMethods keyboard-interactive,keyboard-interactive")
	}
	lines = append(lines,
		"Subsystem sftp internal-sftp",
		"AcceptEnv LANG LC_* SHELLGATE_*",
		"LogLevel VERBOSE",
		"UseDNS no",
		"PrintMotd no",
		"PrintLastLog no",
		"MaxStartups 64:30:128",
		"MaxSessions 64",
	)
	lines = append(lines, tail...)
	return strings.Join(lines, "\n") + "\n"
}

// authorizedKeysConfig is the AuthorizedKeysFile value: the standard
// relative path for a throwaway user, so tests exercise the real location.
func (s *SSHD) authorizedKeysConfig() string {
	if s.Throwaway {
		return ".ssh/authorized_keys"
	}
	return s.authorizedKeys
}

// start writes the config and runs sshd until it answers with its banner.
func (s *SSHD) start() error {
	if err := os.WriteFile(s.configPath, []byte(s.config()), 0o644); err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(s.sshdPath, "-D", "-f", s.configPath, "-E", s.LogFile)
	if s.opts.Netns != "" {
		// ip execs sshd without forking, so cmd's PID is sshd's.
		cmd = exec.Command("ip", append([]string{"netns", "exec", s.opts.Netns}, cmd.Args...)...)
	}
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Session processes inherit sshd's stderr pipe. Without a bound, Wait would wait
	// for every one of them, and a test that leaks a connection would hang Stop (and
	// the whole package) until the 10-minute test timeout.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.sshdPath, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.stderr, s.stopped = cmd, exited, &stderr, false
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited: %s\n%s", cmd.ProcessState, stderr.String())
		default:
		}
		if banner(s.opts.Netns, s.Addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stopMaster()
	return fmt.Errorf("sshd on %s sent no banner within 15s", s.Addr)
}

// banner reports whether an SSH server answers on addr.
func banner(netns, addr string) bool {
	c, err := netnstest.Dial(netns, addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 8)
	n, _ := c.Read(b)
	return string(b[:n]) == "SSH-2.0-"
}

// stopMaster ends the listening sshd (our child, by its PID) and waits for it.
func (s *SSHD) stopMaster() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// killDescendants kills the processes below root, deepest first, waiting
// for each level to be reaped by its parent before killing the parents.
// Killed top-down, the orphans would be reparented to PID 1, which in
// minimal containers reaps them late or never.
func killDescendants(root int) {
	levels := [][]int{{root}}
	for {
		var next []int
		for _, pid := range levels[len(levels)-1] {
			next = append(next, childPIDs(pid)...)
		}
		if len(next) == 0 {
			break
		}
		levels = append(levels, next)
	}
	for i := len(levels) - 1; i >= 1; i-- {
		for _, pid := range levels[i] {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(2 * time.Second)
		for _, pid := range levels[i] {
			for exists(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// exists reports whether pid exists and has not yet been reaped.
func exists(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// childPIDs lists the processes whose parent is ppid.
func childPIDs(ppid int) []int {
	var pids []int
	forEachProc(func(pid int, status string) {
		if field(status, "PPid:") == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	})
	return pids
}

// forEachProc calls fn with the PID and /proc/PID/status of every process.
func forEachProc(fn func(pid int, status string)) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status")); err == nil {
			fn(pid, string(b))
		}
	}
}

// field returns the first value of a "Name:\tvalue ..." line of a /proc status file.
func field(status, name string) string {
	for l := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(l, name); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// Connections counts the per-connection processes of the running sshd: the
// SSH connections it serves (SFTP runs inside them, internal-sftp), so a test
// can see that a client let go of its connections and sessions.
func (s *SSHD) Connections() int {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return len(childPIDs(cmd.Process.Pid))
}
