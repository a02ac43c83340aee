// Package sshserver is a small in-process SSH server: password, public-key and
// keyboard-interactive authentication, PTY and plain sessions (shell, exec, env,
// window-change, signals, exit-status), the SFTP subsystem and direct-tcpip
// forwarding to loopback destinations.
//
// It backs shellgate's fast integration tests and its --demo mode, so it is
// product code: it listens on loopback only and runs every session as the OS
// user of the current process, whatever user name the client logged in with.
//
// Lifecycle: Start listens and serves in the background; Close closes the
// listener and every connection, ends every process it started (SIGHUP, then
// SIGKILL after a grace period) and waits for all of its goroutines.
package sshserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrNotLoopback is returned by Start for a listen address that is not a
// loopback address.
var ErrNotLoopback = errors.New("sshserver: listen address must be loopback")

// handshakeTimeout bounds the SSH handshake and authentication of one
// connection, so an idle TCP connection cannot hold a goroutine forever.
const handshakeTimeout = 30 * time.Second

// Config configures a Server. The zero value is not usable: at least one
// authentication callback must be set.
type Config struct {
	// Addr is the listen address; default "127.0.0.1:0". It must be a
	// loopback address ("localhost", 127.0.0.0/8 or ::1).
	Addr string
	// HostSigner is the host key; nil generates a fresh ed25519 key.
	HostSigner ssh.Signer

	// Authentication callbacks; a nil callback means the method is not offered.
	Password            func(user, password string) bool
	PublicKey           func(user string, key ssh.PublicKey) bool
	KeyboardInteractive func(user string, client ssh.KeyboardInteractiveChallenge) bool

	// Shell is the command run for "shell" requests; default [$SHELL -l], or
	// [/bin/sh -l] when $SHELL is unset. "exec" requests run
	// [Shell[0] -c command].
	Shell []string
	// Dir is the working directory of shells, commands and the SFTP
	// subsystem; default the home directory of the current OS user.
	Dir string
	// Env is appended to the environment of every process. The base
	// environment is deliberately small (HOME, USER, LOGNAME, SHELL, PATH,
	// LANG) so the server's own secrets do not leak into sessions; client
	// "env" requests and TERM from "pty-req" come last.
	Env []string
	// Logger receives connection and session events; nil discards them.
	Logger *slog.Logger
}

// Server is a running SSH server. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	sshCfg  *ssh.ServerConfig
	ln      net.Listener
	log     *slog.Logger
	baseEnv []string

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// Start validates cfg, listens on cfg.Addr and serves connections in the
// background until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Password == nil && cfg.PublicKey == nil && cfg.KeyboardInteractive == nil {
		return nil, errors.New("sshserver: no authentication method configured")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if err := checkLoopback(cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Shell) == 0 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		cfg.Shell = []string{sh, "-l"}
	}
	if cfg.Dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("sshserver: default working directory: %w", err)
		}
		cfg.Dir = home
	}
	if cfg.HostSigner == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sshserver: generate host key: %w", err)
		}
		if cfg.HostSigner, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("sshserver: host key signer: %w", err)
		}
	}

	s := &Server{cfg: cfg, log: cfg.Logger, conns: make(map[net.Conn]struct{})}
	s.sshCfg = s.serverConfig()
	s.baseEnv = baseEnv(cfg.Shell[0])

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sshserver: listen: %w", err)
	}
	s.ln = ln
	s.wg.Go(s.acceptLoop)
	s.log.Info("ssh server listening", "addr", ln.Addr().String())
	return s, nil
}

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// HostKey returns the server's public host key, for pinning by clients.
func (s *Server) HostKey() ssh.PublicKey { return s.cfg.HostSigner.PublicKey() }

// Close stops the listener, closes every connection, ends the processes of
// all sessions and waits for every goroutine of the server to return.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("sshserver: close listener: %w", err)
	}
	return nil
}

func (s *Server) serverConfig() *ssh.ServerConfig {
	c := &ssh.ServerConfig{ServerVersion: "SSH-2.0-shellgate"}
	c.AddHostKey(s.cfg.HostSigner)
	denied := errors.New("access denied")
	if f := s.cfg.Password; f != nil {
		c.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if f(m.User(), string(pw)) {
				return nil, nil
			}
			return nil, denied
		}
	}
	if f := s.cfg.PublicKey; f != nil {
		c.PublicKeyCallback = func(m ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if f(m.User(), key) {
				return nil, nil
			}
			return nil, denied
		}
	}
	if f := s.cfg.KeyboardInteractive; f != nil {
		c.KeyboardInteractiveCallback = func(m ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if f(m.User(), ch) {
				return nil, nil
			}
			return nil, denied
		}
	}
	c.AuthLogCallback = func(m ssh.ConnMetadata, method string, err error) {
		if err != nil && method != "none" {
			s.log.Debug("ssh auth failed", "user", m.User(), "method", method, "remote", m.RemoteAddr().String(), "err", err)
		}
	}
	return c
}

func (s *Server) acceptLoop() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("ssh accept", "err", err)
			}
			return
		}
		if !s.track(nc) {
			nc.Close()
			return
		}
		s.wg.Go(func() {
			defer s.untrack(nc)
			s.serveConn(nc)
		})
	}
}

// track registers a live connection; it reports false once the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) serveConn(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		s.log.Debug("ssh handshake", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	nc.SetDeadline(time.Time{})
	log := s.log.With("user", conn.User(), "remote", conn.RemoteAddr().String())
	log.Info("ssh connection opened")
	defer log.Info("ssh connection closed")

	// Global requests, keepalive@openssh.com included: none is supported, but
	// each one that wants a reply gets one, which is all a keepalive needs.
	s.wg.Go(func() {
		for req := range reqs {
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	})
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			s.wg.Go(func() { s.serveSession(nch, log) })
		case "direct-tcpip":
			s.wg.Go(func() { s.serveDirectTCPIP(nch, log) })
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	conn.Close()
}

// checkLoopback refuses listen addresses that are not loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("sshserver: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
}

// baseEnv is the environment every process starts from.
func baseEnv(shell string) []string {
	env := []string{"SHELL=" + shell}
	if u, err := user.Current(); err == nil {
		// $HOME of the process wins over the passwd entry, as with `su` without `-`:
		// the shells run as this process's user, in the home it was given.
		home := os.Getenv("HOME")
		if home == "" {
			home = u.HomeDir
		}
		env = append(env, "HOME="+home, "USER="+u.Username, "LOGNAME="+u.Username)
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env = append(env, "PATH="+path)
	if lang, ok := os.LookupEnv("LANG"); ok {
		env = append(env, "LANG="+lang)
	}
	return env
}
