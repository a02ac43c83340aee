package sshserver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

const (
	testUser     = "alice"
	testPassword = "correct horse"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts a server accepting testUser/testPassword, closed at cleanup.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Password == nil {
		cfg.Password = func(u, p string) bool { return u == testUser && p == testPassword }
	}
	if cfg.Shell == nil {
		cfg.Shell = []string{"/bin/sh"}
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func clientConfig(srv *Server, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	if len(auth) == 0 {
		auth = []ssh.AuthMethod{ssh.Password(testPassword)}
	}
	return &ssh.ClientConfig{
		User:            testUser,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
		Timeout:         10 * time.Second,
	}
}

func dial(t testing.TB, srv *Server, auth ...ssh.AuthMethod) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv, auth...))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:22"} {
		_, err := Start(Config{Addr: addr, Password: func(string, string) bool { return false }})
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Start(%q) = %v, want ErrNotLoopback", addr, err)
		}
	}
}

func TestPasswordAuth(t *testing.T) {
	srv := startServer(t, Config{})
	dial(t, srv)
	if c, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv, ssh.Password("wrong"))); err == nil {
		c.Close()
		t.Fatal("wrong password accepted")
	}
}

func TestPublicKeyAuth(t *testing.T) {
	good, bad := newSigner(t), newSigner(t)
	srv := startServer(t, Config{
		Password: func(string, string) bool { return false },
		PublicKey: func(user string, key ssh.PublicKey) bool {
			return user == testUser && bytes.Equal(key.Marshal(), good.PublicKey().Marshal())
		},
	})
	dial(t, srv, ssh.PublicKeys(good))
	if c, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv, ssh.PublicKeys(bad))); err == nil {
		c.Close()
		t.Fatal("unknown key accepted")
	}
}

func TestKeyboardInteractiveAuth(t *testing.T) {
	srv := startServer(t, Config{
		Password: func(string, string) bool { return false },
		KeyboardInteractive: func(user string, client ssh.KeyboardInteractiveChallenge) bool {
			answers, err := client(user, "Two questions", []string{"Name: ", "Code: "}, []bool{true, false})
			return err == nil && len(answers) == 2 && answers[0] == "bob" && answers[1] == "1234"
		},
	})
	var got []bool
	challenge := func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		got = echos
		if len(questions) != 2 || questions[0] != "Name: " || questions[1] != "Code: " {
			return nil, errors.New("unexpected questions")
		}
		return []string{"bob", "1234"}, nil
	}
	dial(t, srv, ssh.KeyboardInteractive(challenge))
	if len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("echo flags = %v, want [true false]", got)
	}
	wrong := func(string, string, []string, []bool) ([]string, error) { return []string{"bob", "0000"}, nil }
	if c, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv, ssh.KeyboardInteractive(wrong))); err == nil {
		c.Close()
		t.Fatal("wrong answers accepted")
	}
}

// output collects what a reader produces so a test can wait for a substring.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func collect(r io.Reader) *output {
	o := &output{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output contains s after position from, and
// returns the position after it.
func (o *output) waitFor(t testing.TB, from int, s string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if i := strings.Index(o.String()[from:], s); i >= 0 {
			return from + i + len(s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %q; output:\n%s", s, o.String())
	return 0
}

func TestShellPTY(t *testing.T) {
	srv := startServer(t, Config{Env: []string{"PS1=$ "}})
	sess, err := dial(t, srv).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm-256color", 40, 100, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	out := collect(stdout)
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}

	io.WriteString(stdin, "echo $((6*7))\n")
	pos := out.waitFor(t, 0, "42")
	io.WriteString(stdin, "echo T=$TERM; stty size\n")
	pos = out.waitFor(t, pos, "T=xterm-256color")
	pos = out.waitFor(t, pos, "40 100")
	if err := sess.WindowChange(50, 120); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "stty size\n")
	out.waitFor(t, pos, "50 120")
	io.WriteString(stdin, "exit 7\n")
	var exitErr *ssh.ExitError
	if err := sess.Wait(); !errors.As(err, &exitErr) || exitErr.ExitStatus() != 7 {
		t.Fatalf("Wait = %v, want exit status 7", err)
	}
}

func TestExec(t *testing.T) {
	srv := startServer(t, Config{Env: []string{"FROM_CONFIG=cfg"}})
	client := dial(t, srv)

	t.Run("output and env", func(t *testing.T) {
		sess, _ := client.NewSession()
		defer sess.Close()
		if err := sess.Setenv("FROM_CLIENT", "cli"); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		sess.Stderr = &stderr
		got, err := sess.Output("echo $FROM_CONFIG $FROM_CLIENT; pwd; echo oops >&2")
		if err != nil {
			t.Fatal(err)
		}
		if want := "cfg cli\n" + srv.cfg.Dir + "\n"; string(got) != want {
			t.Errorf("stdout = %q, want %q", got, want)
		}
		if stderr.String() != "oops\n" {
			t.Errorf("stderr = %q", stderr.String())
		}
	})
	t.Run("exit status", func(t *testing.T) {
		sess, _ := client.NewSession()
		defer sess.Close()
		var exitErr *ssh.ExitError
		if err := sess.Run("exit 3"); !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
			t.Fatalf("Run = %v, want exit status 3", err)
		}
	})
	t.Run("exit signal", func(t *testing.T) {
		sess, _ := client.NewSession()
		defer sess.Close()
		var exitErr *ssh.ExitError
		if err := sess.Run("kill -TERM $$"); !errors.As(err, &exitErr) || exitErr.Signal() != "TERM" {
			t.Fatalf("Run = %v, want signal TERM", err)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		sess, _ := client.NewSession()
		defer sess.Close()
		sess.Stdin = strings.NewReader("piped\n")
		got, err := sess.Output("cat")
		if err != nil || string(got) != "piped\n" {
			t.Fatalf("Output = %q, %v", got, err)
		}
	})
	t.Run("with pty", func(t *testing.T) {
		sess, _ := client.NewSession()
		defer sess.Close()
		if err := sess.RequestPty("vt100", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
		got, err := sess.Output("tty")
		if err != nil || !strings.HasPrefix(string(got), "/dev/pts/") {
			t.Fatalf("Output = %q, %v", got, err)
		}
	})
	t.Run("signal request", func(t *testing.T) {
		sess, _ := client.NewSession()
		defer sess.Close()
		stdout, _ := sess.StdoutPipe()
		out := collect(stdout)
		if err := sess.Start("echo ready; exec sleep 30"); err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, 0, "ready")
		if err := sess.Signal(ssh.SIGINT); err != nil {
			t.Fatal(err)
		}
		var exitErr *ssh.ExitError
		if err := sess.Wait(); !errors.As(err, &exitErr) || exitErr.Signal() != "INT" {
			t.Fatalf("Wait = %v, want signal INT", err)
		}
	})
}

func TestSFTPRoundtrip(t *testing.T) {
	srv := startServer(t, Config{})
	c, err := sftp.NewClient(dial(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := bytes.Repeat([]byte("shellgate "), 50_000)

	f, err := c.Create("upload.txt") // relative: lands in Config.Dir
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(srv.cfg.Dir, "upload.txt"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file on disk: %d bytes, %v", len(onDisk), err)
	}
	r, err := c.Open("upload.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: %d bytes, %v", len(got), err)
	}
}

func TestDirectTCPIPJump(t *testing.T) {
	jump := startServer(t, Config{})
	target := startServer(t, Config{})
	client := dial(t, jump)

	nc, err := client.Dial("tcp", target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, target.Addr(), clientConfig(target))
	if err != nil {
		t.Fatal(err)
	}
	inner := ssh.NewClient(conn, chans, reqs)
	defer inner.Close()
	sess, _ := inner.NewSession()
	defer sess.Close()
	if got, err := sess.Output("echo through the jump"); err != nil || string(got) != "through the jump\n" {
		t.Fatalf("Output = %q, %v", got, err)
	}

	if _, err := client.Dial("tcp", "192.0.2.1:22"); err == nil {
		t.Fatal("forwarding to a non-loopback address was allowed")
	}
}

func TestKeepalive(t *testing.T) {
	client := dial(t, startServer(t, Config{}))
	ok, _, err := client.SendRequest("keepalive@openssh.com", true, nil)
	if err != nil || ok {
		t.Fatalf("keepalive = %v, %v; want false, nil", ok, err)
	}
}

// TestCloseLeavesNothing closes the server under live sessions, SFTP and a
// forwarding, and checks that no goroutine and no process is left behind.
func TestCloseLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()

	srv, err := Start(Config{
		Password: func(string, string) bool { return true },
		Shell:    []string{"/bin/sh"},
		Dir:      t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, withPty := range []bool{true, false} {
		sess, _ := client.NewSession()
		if withPty {
			sess.RequestPty("xterm", 24, 80, nil)
		}
		stdout, _ := sess.StdoutPipe()
		out := collect(stdout)
		// trap '' HUP: the process ignores the hangup, so end must escalate to SIGKILL.
		if err := sess.Start("trap '' HUP; echo pid=$$; while :; do sleep 1; done"); err != nil {
			t.Fatal(err)
		}
		pos := out.waitFor(t, 0, "pid=")
		end := out.waitFor(t, pos, "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(out.String()[pos:end]))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if _, err := sftp.NewClient(client); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	if _, err := client.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	client.Close()
	ln.Close()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Close (kill: %v)", pid, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestFastExecKeepsItsReply: a command that ends at once (echo) must not close its
// channel before the server has answered the "exec" request, or the client reads EOF
// instead of the output. It raced about once in 60 runs before the fix.
func TestFastExecKeepsItsReply(t *testing.T) {
	client := dial(t, startServer(t, Config{}))
	for i := range 40 {
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		got, err := sess.Output("echo fast")
		sess.Close()
		if err != nil || string(got) != "fast\n" {
			t.Fatalf("run %d: Output = %q, %v", i, got, err)
		}
	}
}
