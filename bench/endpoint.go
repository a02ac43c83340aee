package bench

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/terminal"
)

// Endpoint is where terminals are opened through shellgate: the real
// endpoint (Shellgate: the shellgate binary, signed in over HTTP, a ticket
// per Connect) or the bridge alone in this process (InProcessBridge:
// terminal.Manager.Serve behind a bare handler), which isolates the
// bridge's share of the real endpoint's cost.
type Endpoint interface {
	// Label names the path in results, honestly: "bridge (in-process)".
	Label() string
	// Connect opens a terminal and returns once the shell is connected.
	Connect(ctx context.Context) (*Term, error)
	// PID is the process serving the terminals (for RSS).
	PID() int
	Close() error
}

// LabelInProcess names the bridge alone, as printed.
const LabelInProcess = "bridge alone (in-process)"

// BridgeHandler upgrades to a WebSocket and runs m.Serve with hooks that
// open terminals on srv with its key, accepting only ticket: the bridge
// without the dashboard (no session, one fixed ticket, the target given
// rather than looked up).
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
