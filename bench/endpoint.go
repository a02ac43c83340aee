package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/terminal"
)

// Endpoint is where terminals are opened through shellgate. Today there are
// two implementations of the same bridge code the real endpoint runs
// (terminal.Manager.Serve): in this process (InProcessBridge) and in a
// child process (ChildBridge), whose memory can be measured alone. When
// /api/terminal/ws is wired in cmd/shellgate, a third implementation builds
// the binary, signs in over HTTP, registers the server and key, and fetches
// a ticket per Connect; the benchmarks do not change.
type Endpoint interface {
	// Label names the path in results, honestly: "bridge (in-process)".
	Label() string
	// Connect opens a terminal and returns once the shell is connected.
	Connect(ctx context.Context) (*Term, error)
	// PID is the process serving the terminals (for RSS).
	PID() int
	Close() error
}

// Labels of the endpoints, as printed.
const (
	LabelInProcess = "bridge (in-process)"
	LabelChild     = "bridge (separate process)"
)

// BridgeHandler upgrades to a WebSocket and runs m.Serve with hooks that
// open terminals on srv with its key, accepting only ticket. It is the
// benchmark's stand-in for handlers' terminal endpoint: no dashboard
// session, one fixed ticket, the target given rather than looked up.
func BridgeHandler(m *terminal.Manager, srv *SSHServer, ticket string) http.Handler {
	up := websocket.Upgrader{
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 4 << 10,
		// Same-origin only, as the real endpoint: the page's own origin.
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "http://"+r.Host },
	}
	hooks := terminal.Hooks{
		UserID: "bench",
		Open: func(_ context.Context, msg terminal.OpenMessage) (*terminal.Target, terminal.Auth, error) {
			if subtle.ConstantTimeCompare([]byte(msg.Ticket), []byte(ticket)) != 1 {
				return nil, terminal.Auth{}, terminal.ErrTicket
			}
			t := &terminal.Target{Name: msg.Server, Host: srv.Host, Port: srv.Port, User: srv.User,
				HostKeys: []ssh.PublicKey{srv.HostKey}}
			return t, terminal.Auth{Signers: []ssh.Signer{srv.Signer}}, nil
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade answered
		}
		m.Serve(r.Context(), ws, hooks)
	})
}

// managerConfig lifts the per-user cap (every benchmark session is one
// user) and keeps logs quiet; everything else is the product's default.
func managerConfig() terminal.Config {
	return terminal.Config{
		MaxPerUser: 1 << 20,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func dialEndpoint(ctx context.Context, baseURL, ticket string) (*Term, error) {
	h := http.Header{"Origin": {baseURL}}
	url := "ws" + strings.TrimPrefix(baseURL, "http") + "/api/terminal/ws"
	return DialTerm(ctx, url, h, terminal.OpenMessage{Server: "bench", Cols: ptyCols, Rows: ptyRows, Ticket: ticket})
}

// InProcessBridge serves the bridge from an httptest server in this process.
type InProcessBridge struct {
	m      *terminal.Manager
	srv    *httptest.Server
	ticket string
}

// NewInProcessBridge starts it on a loopback port.
func NewInProcessBridge(target *SSHServer) *InProcessBridge {
	b := &InProcessBridge{m: terminal.NewManager(managerConfig()), ticket: rand.Text()}
	mux := http.NewServeMux()
	mux.Handle("/api/terminal/ws", BridgeHandler(b.m, target, b.ticket))
	b.srv = httptest.NewServer(mux) // 127.0.0.1
	return b
}

func (b *InProcessBridge) Label() string { return LabelInProcess }
func (b *InProcessBridge) PID() int      { return os.Getpid() }
func (b *InProcessBridge) Connect(ctx context.Context) (*Term, error) {
	return dialEndpoint(ctx, b.srv.URL, b.ticket)
}
func (b *InProcessBridge) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.m.Shutdown(ctx)
	b.srv.Close()
	return err
}

// ChildBridge runs the bridge server in a child process (`shellgate-bench
// bridge-server`), so its RSS is the server's alone.
type ChildBridge struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	url    string
	ticket string
	exited chan struct{}
}

// StartChildBridge starts bin (a shellgate-bench binary) in bridge-server
// mode for target. The child exits when its stdin closes, so it cannot
// outlive us even if we are killed.
func StartChildBridge(bin string, target *SSHServer) (*ChildBridge, error) {
	keyFile := target.KeyPath
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(target.HostKey)))
	c := &ChildBridge{ticket: rand.Text(), exited: make(chan struct{})}
	c.cmd = exec.Command(bin, "bridge-server",
		"-ssh-host", target.Host, "-ssh-port", fmt.Sprint(target.Port), "-ssh-user", target.User,
		"-host-key", hostKey, "-key", keyFile)
	c.cmd.Env = append(os.Environ(), "SHELLGATE_BENCH_TICKET="+c.ticket)
	c.cmd.Stderr = os.Stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		if u, found := strings.CutPrefix(l, "listening "); ok && found {
			c.url = u
			return c, nil
		}
		c.Close()
		return nil, fmt.Errorf("bridge-server said %q", l)
	case <-time.After(20 * time.Second):
		c.Close()
		return nil, errors.New("bridge-server did not start within 20s")
	}
}

func (c *ChildBridge) Label() string { return LabelChild }
func (c *ChildBridge) PID() int      { return c.cmd.Process.Pid }
func (c *ChildBridge) Connect(ctx context.Context) (*Term, error) {
	return dialEndpoint(ctx, c.url, c.ticket)
}

// Close ends the child (closing stdin, then SIGKILL by PID after 10s).
func (c *ChildBridge) Close() error {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	return nil
}

// BridgeServerMain is `shellgate-bench bridge-server`: the bridge alone on
// a free loopback port, opening terminals on the given sshd. It prints
// "listening URL" and serves until stdin closes or SIGTERM/SIGINT.
func BridgeServerMain(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("bridge-server", flag.ContinueOnError)
	host := fs.String("ssh-host", "127.0.0.1", "sshd host")
	port := fs.Int("ssh-port", 22, "sshd port")
	user := fs.String("ssh-user", "", "login user")
	hostKey := fs.String("host-key", "", "sshd's host key, authorized_keys form (pinned)")
	keyPath := fs.String("key", "", "private key file (unencrypted) authorized for the user")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*hostKey))
	if err != nil {
		return fmt.Errorf("-host-key: %w", err)
	}
	pemBytes, err := os.ReadFile(*keyPath)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return fmt.Errorf("-key: %w", err)
	}
	ticket := os.Getenv("SHELLGATE_BENCH_TICKET")
	if ticket == "" {
		return errors.New("SHELLGATE_BENCH_TICKET is not set")
	}
	if h, _, err := net.SplitHostPort(*listen); err != nil || !net.ParseIP(h).IsLoopback() {
		return fmt.Errorf("-listen %s: loopback only", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &SSHServer{Host: *host, Port: *port, User: *user, HostKey: pub, Signer: signer}
	m := terminal.NewManager(managerConfig())
	mux := http.NewServeMux()
	mux.Handle("/api/terminal/ws", BridgeHandler(m, srv, ticket))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	fmt.Fprintf(stdout, "listening http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { io.Copy(io.Discard, stdin); stop() }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	return m.Shutdown(sctx)
}
