package sshserver

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

const (
	// drainTimeout bounds how long output is still forwarded after the process
	// exited: a background job holding the PTY or a pipe open must not keep
	// the session alive.
	drainTimeout = time.Second
	// killGrace is the time between SIGHUP and SIGKILL when a session ends
	// while its process still runs.
	killGrace = 2 * time.Second
)

// signals maps SSH signal names (RFC 4254 section 6.10) to Unix signals.
var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Request payloads, RFC 4254 section 6.
type (
	ptyRequestMsg struct {
		Term          string
		Columns, Rows uint32
		Width, Height uint32
		Modes         string
	}
	windowChangeMsg struct{ Columns, Rows, Width, Height uint32 }
	envMsg          struct{ Name, Value string }
	execMsg         struct{ Command string }
	subsystemMsg    struct{ Name string }
	signalMsg       struct{ Signal string }
	exitStatusMsg   struct{ Status uint32 }
	exitSignalMsg   struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}
)

// session is one "session" channel. Its fields are owned by the goroutine
// running serveSession; the process goroutines only read what was set before
// they started.
type session struct {
	srv *Server
	ch  ssh.Channel
	log *slog.Logger

	env  []string
	pty  *ptyRequestMsg
	ptmx *os.File

	started bool          // a shell, command or subsystem was started
	cmd     *exec.Cmd     // nil for the SFTP subsystem
	done    chan struct{} // closed once the started program ended and exit-status was sent
	// replied is closed once the request that started the program has been answered.
	// A fast command (echo) can end before that; its exit-status and close must wait,
	// or the client sees the channel closed instead of its "exec" reply.
	replied chan struct{}
}

// serveSession handles the requests of one session channel until the client
// closes it or the connection ends, then ends the program it started.
func (s *Server) serveSession(nch ssh.NewChannel, log *slog.Logger) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		log.Debug("accept session channel", "err", err)
		return
	}
	ss := &session{srv: s, ch: ch, log: log, done: make(chan struct{}), replied: make(chan struct{})}
	defer ss.end()
	for req := range reqs {
		wasStarted := ss.started
		ok := ss.handle(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if !wasStarted && ss.started {
			close(ss.replied)
		}
	}
}

func (ss *session) handle(req *ssh.Request) bool {
	switch req.Type {
	case "pty-req":
		var m ptyRequestMsg
		if ss.started || ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		ss.pty = &m
		return true
	case "window-change":
		var m windowChangeMsg
		if ss.pty == nil || ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		ss.pty.Columns, ss.pty.Rows, ss.pty.Width, ss.pty.Height = m.Columns, m.Rows, m.Width, m.Height
		if ss.ptmx != nil {
			return setWinsize(ss.ptmx, ss.winsize()) == nil
		}
		return true
	case "env":
		var m envMsg
		if ss.started || ssh.Unmarshal(req.Payload, &m) != nil || !envName.MatchString(m.Name) {
			return false
		}
		ss.env = append(ss.env, m.Name+"="+m.Value)
		return true
	case "shell":
		return ss.startCommand(ss.srv.cfg.Shell)
	case "exec":
		var m execMsg
		if ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		return ss.startCommand([]string{ss.srv.cfg.Shell[0], "-c", m.Command})
	case "subsystem":
		var m subsystemMsg
		if ssh.Unmarshal(req.Payload, &m) != nil || m.Name != "sftp" {
			return false
		}
		return ss.startSFTP()
	case "signal":
		var m signalMsg
		if ss.cmd == nil || ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		sig, known := signals[m.Signal]
		return known && ss.cmd.Process.Signal(sig) == nil
	default:
		return false
	}
}

func (ss *session) winsize() *unix.Winsize {
	return &unix.Winsize{
		Row: uint16(ss.pty.Rows), Col: uint16(ss.pty.Columns),
		Xpixel: uint16(ss.pty.Width), Ypixel: uint16(ss.pty.Height),
	}
}

// startCommand runs argv on a PTY when one was requested, on pipes otherwise.
func (ss *session) startCommand(argv []string) bool {
	if ss.started {
		return false
	}
	cfg := ss.srv.cfg
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(append(append([]string(nil), ss.srv.baseEnv...), cfg.Env...), ss.env...)
	wg := &ss.srv.wg

	if ss.pty != nil {
		cmd.Env = append(cmd.Env, "TERM="+ss.pty.Term)
		ptmx, err := startPTY(cmd, ss.winsize())
		if err != nil {
			ss.log.Error("start pty command", "argv", argv, "err", err)
			return false
		}
		ss.ptmx, ss.cmd, ss.started = ptmx, cmd, true
		wg.Go(func() { io.Copy(ptmx, ss.ch) })
		out := make(chan struct{})
		wg.Go(func() {
			defer close(out)
			io.Copy(ss.ch, ptmx) // ends with EIO once every holder of the tty is gone
		})
		wg.Go(func() {
			cmd.Wait()
			select {
			case <-out:
			case <-time.After(drainTimeout):
			}
			ptmx.Close()
			<-out
			ss.exit(cmd.ProcessState)
		})
		return true
	}

	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so end can signal the whole job
	cmd.Stdout, cmd.Stderr = ss.ch, ss.ch.Stderr()
	cmd.WaitDelay = drainTimeout
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		ss.log.Error("start command", "argv", argv, "err", err)
		return false
	}
	ss.cmd, ss.started = cmd, true
	// Our own stdin copy rather than cmd.Stdin = ch: exec would make Wait
	// wait for the client's EOF, which an interactive client never sends.
	wg.Go(func() {
		io.Copy(stdin, ss.ch)
		stdin.Close()
	})
	wg.Go(func() {
		cmd.Wait()
		ss.exit(cmd.ProcessState)
	})
	return true
}

func (ss *session) startSFTP() bool {
	if ss.started {
		return false
	}
	srv, err := sftp.NewServer(ss.ch, sftp.WithServerWorkingDirectory(ss.srv.cfg.Dir))
	if err != nil {
		ss.log.Error("start sftp", "err", err)
		return false
	}
	ss.started = true
	ss.srv.wg.Go(func() {
		status := uint32(0)
		if err := srv.Serve(); err != nil {
			ss.log.Debug("sftp", "err", err)
			status = 1
		}
		ss.sendExit(status)
	})
	return true
}

// exit reports how the process ended and closes the channel.
func (ss *session) exit(ps *os.ProcessState) {
	<-ss.replied
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		for name, sig := range signals {
			if sig == ws.Signal() {
				ss.ch.CloseWrite()
				ss.ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignalMsg{Signal: name, CoreDumped: ws.CoreDump()}))
				ss.ch.Close()
				close(ss.done)
				return
			}
		}
		ss.sendExit(128 + uint32(ws.Signal()))
		return
	}
	ss.sendExit(uint32(ps.ExitCode()))
}

// sendExit sends EOF, exit-status and close, in OpenSSH's order.
func (ss *session) sendExit(status uint32) {
	<-ss.replied
	ss.ch.CloseWrite()
	ss.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{status}))
	ss.ch.Close()
	close(ss.done)
}

// end closes the channel and, if the program still runs, hangs up on it and
// kills it after killGrace. It returns once the program has ended.
func (ss *session) end() {
	ss.ch.Close()
	if !ss.started {
		return
	}
	select {
	case <-ss.done:
		return
	default:
	}
	if ss.cmd != nil {
		// The process leads its own process group (Setsid or Setpgid).
		syscall.Kill(-ss.cmd.Process.Pid, syscall.SIGHUP)
	}
	select {
	case <-ss.done:
	case <-time.After(killGrace):
		if ss.cmd != nil {
			syscall.Kill(-ss.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-ss.done
	}
}
