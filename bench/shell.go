package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Cipher is pinned on sshd and every client so that all paths pay for the
// same encryption: x/crypto prefers AES-GCM, the OpenSSH client
// chacha20-poly1305.
const Cipher = "aes128-gcm@openssh.com"

// SSHServer is the OpenSSH sshd the benchmarks talk to, as a plain value so
// this package does not depend on a test harness: the tests fill it from
// internal/testsshd, the bridge child from flags.
type SSHServer struct {
	Host    string
	Port    int
	User    string
	HostKey ssh.PublicKey
	Signer  ssh.Signer // authorized for User
	KeyPath string     // Signer as an OpenSSH private key file, for ssh -i
	Dir     string     // a directory for known_hosts and batch files
}

// Addr is host:port.
func (s *SSHServer) Addr() string { return s.Host + ":" + strconv.Itoa(s.Port) }

// ClientConfig pins the host key and the cipher.
func (s *SSHServer) ClientConfig() *ssh.ClientConfig {
	cfg := &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         10 * time.Second,
	}
	cfg.Ciphers = []string{Cipher}
	return cfg
}

// OpenSSHArgs are the options for ssh and sftp: our key only, the host key
// checked strictly against a known_hosts file of our own, no user or
// system configuration, the pinned cipher. portFlag is -p for ssh, -P for
// sftp.
func (s *SSHServer) OpenSSHArgs(portFlag string) ([]string, error) {
	knownHosts := filepath.Join(s.Dir, "bench_known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", s.Host, s.Port, ssh.MarshalAuthorizedKey(s.HostKey))
	if err := os.WriteFile(knownHosts, []byte(line), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"-F", "none",
		"-i", s.KeyPath,
		"-c", Cipher,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
		portFlag, strconv.Itoa(s.Port),
	}, nil
}

// Shell is an interactive PTY shell reached one way or another: directly
// with x/crypto/ssh, with the OpenSSH client, or through shellgate. The
// measurements are written once against it.
type Shell interface {
	// Type sends keystrokes.
	Type(p []byte) error
	// SetOutput sets the function receiving output, on the reader
	// goroutine; it must not keep p.
	SetOutput(fn func(p []byte))
	Close() error
}

// streamShell adapts a stdin writer and a stdout reader.
type streamShell struct {
	stdin  io.Writer
	output atomic.Pointer[func([]byte)]
	close  func() error
	done   chan struct{}
}

func newStreamShell(stdin io.Writer, stdout io.Reader, closeFn func() error) *streamShell {
	s := &streamShell{stdin: stdin, close: closeFn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 32<<10) // as the bridge reads the SSH channel
		for {
			n, err := stdout.Read(buf)
			if n > 0 {
				if fn := s.output.Load(); fn != nil && *fn != nil {
					(*fn)(buf[:n])
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *streamShell) Type(p []byte) error         { _, err := s.stdin.Write(p); return err }
func (s *streamShell) SetOutput(fn func(p []byte)) { s.output.Store(&fn) }
func (s *streamShell) Close() error {
	err := s.close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	return err
}

// PTY settings shared by every path, the same the bridge requests.
const (
	ptyTerm = "xterm-256color"
	ptyCols = 80
	ptyRows = 24
)

// DialDirect opens a PTY shell with x/crypto/ssh: path (a), the floor
// shellgate's bridge is built on.
func DialDirect(srv *SSHServer) (Shell, error) {
	client, err := ssh.Dial("tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", srv.Addr(), err)
	}
	sess, err := client.NewSession()
	if err != nil {
		client.Close()
		return nil, err
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	err3 := sess.RequestPty(ptyTerm, ptyRows, ptyCols, modes)
	if err := firstErr(err1, err2, err3, sess.Shell()); err != nil {
		client.Close()
		return nil, err
	}
	return newStreamShell(stdin, stdout, client.Close), nil
}

// DialOpenSSH runs the OpenSSH client with a forced PTY (-tt) and no escape
// character: path (b).
func DialOpenSSH(srv *SSHServer) (Shell, error) {
	args, err := srv.OpenSSHArgs("-p")
	if err != nil {
		return nil, err
	}
	args = append(args, "-tt", "-e", "none", "-l", srv.User, srv.Host)
	cmd := exec.Command("ssh", args...)
	stdin, err1 := cmd.StdinPipe()
	stdout, err2 := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := firstErr(err1, err2, cmd.Start()); err != nil {
		return nil, err
	}
	return newStreamShell(stdin, stdout, func() error {
		stdin.Close()
		// Ours, by PID: ssh exits once the remote shell ends, which a
		// closed stdin does not guarantee while a command runs.
		cmd.Process.Kill()
		cmd.Wait()
		return nil
	}), nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Marker is a line a benchmark asks the remote shell to print: typed as
// printf 'SG%s\n' _NAME, so the echo of the command line never contains
// the marker itself, only the command's output does. Base64 never contains
// '_' either.
type Marker string

// Command returns the shell command printing the marker.
func (m Marker) Command() string { return fmt.Sprintf(`printf 'SG%%s\n' _%s`, string(m)) }

func (m Marker) bytes() []byte { return []byte("SG_" + string(m)) }

// Watch counts output and reports when a marker has gone by, across chunk
// boundaries.
type Watch struct {
	n     atomic.Int64
	found chan time.Time
	want  []byte
	tail  []byte
}

// Watch sets sh's output to a new Watch for m.
func WatchFor(sh Shell, m Marker) *Watch {
	w := &Watch{found: make(chan time.Time, 1), want: m.bytes()}
	sh.SetOutput(w.write)
	return w
}

func (w *Watch) write(p []byte) {
	w.n.Add(int64(len(p)))
	if w.want == nil {
		return
	}
	// Search the previous tail plus the start of p, then p itself.
	k := len(w.want) - 1
	joined := append(w.tail, p[:min(len(p), k)]...)
	if bytes.Contains(joined, w.want) || bytes.Contains(p, w.want) {
		w.found <- time.Now()
		w.want = nil
		return
	}
	if len(p) >= k {
		w.tail = append(w.tail[:0], p[len(p)-k:]...)
	} else {
		w.tail = append(w.tail, p...)
		if len(w.tail) > k {
			w.tail = w.tail[len(w.tail)-k:]
		}
	}
}

// Bytes is the output counted so far.
func (w *Watch) Bytes() int64 { return w.n.Load() }

// Wait returns when the marker was seen.
func (w *Watch) Wait(ctx context.Context) (time.Time, error) {
	select {
	case at := <-w.found:
		return at, nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("waiting for marker %q after %d bytes: %w", w.want, w.Bytes(), context.Cause(ctx))
	}
}

// Run types command (a newline is added) and waits for its marker.
func Run(ctx context.Context, sh Shell, command string, m Marker) error {
	w := WatchFor(sh, m)
	if err := sh.Type([]byte(command + "; " + m.Command() + "\r")); err != nil {
		return err
	}
	_, err := w.Wait(ctx)
	return err
}
