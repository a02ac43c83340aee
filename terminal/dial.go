package terminal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Dialer yields the TCP connection to the first hop. *net.Dialer satisfies
// it, so does *ssh.Client (used for jump hosts) and an agent's stream.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// AgentDialer is a Dialer that can also reach hosts behind NAT: DialAgent
// opens a stream through the outbound link that the agent of server id
// keeps open, to addr as seen from the agent's host. Dial uses it for every
// hop whose Target.Agent is set; to the SSH handshake above it the stream
// is a net.Conn like any other.
type AgentDialer interface {
	Dialer
	DialAgent(ctx context.Context, id int64, addr string) (net.Conn, error)
}

// ErrNoAgentRoute means a hop must go through an agent but Dial was given a
// Dialer that knows no agents.
var ErrNoAgentRoute = errors.New("server is reached through an agent, and no agent link is available")

// Target is one SSH server as the person sees it.
type Target struct {
	Name     string          // display name, e.g. "web-1"
	Host     string          // host name or IP
	Port     int             // 0 means 22
	User     string          // login name
	HostKeys []ssh.PublicKey // pinned keys; empty means not yet trusted
	Jump     *Target         // ProxyJump: reach this target through Jump (direct-tcpip)
	// Agent, when non-zero, is the id of the server whose agent carries
	// the connection: Addr is then dialed by the agent on its own host
	// (through AgentDialer), whatever Jump says, so a jump chain may start
	// or end at a host behind NAT.
	Agent int64
}

// Addr is host:port.
func (t *Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// String names the target the way messages do: "web-1 (10.0.0.5:22)".
func (t *Target) String() string {
	if t == nil {
		return "server"
	}
	if t.Name == "" {
		return t.Addr()
	}
	return t.Name + " (" + t.Addr() + ")"
}

func (t *Target) displayName() string {
	if t == nil {
		return "server"
	}
	if t.Name != "" {
		return t.Name
	}
	return t.Host
}

// Auth is what a connection may authenticate with. Methods are tried in the
// order OpenSSH uses: public keys, then keyboard-interactive, then password.
type Auth struct {
	Signers []ssh.Signer // keys usable without asking anyone
	// Locked keys need a passphrase; it is asked through Prompter only when
	// the server says it would accept the key (x/crypto queries before
	// signing), so a person is not asked for passphrases needlessly.
	Locked []LockedKey
	// Prompter relays password, keyboard-interactive and passphrase prompts
	// to the person. Nil means no interactive authentication.
	Prompter Prompter
}

// LockedKey is a passphrase-protected private key.
type LockedKey struct {
	Name      string        // shown in the passphrase prompt
	PublicKey ssh.PublicKey // offered to the server before unlocking
	Unlock    func(passphrase []byte) (ssh.Signer, error)
}

// Prompt is one round of questions for the person.
type Prompt struct {
	Name        string
	Instruction string
	Questions   []Question
}

// Prompter asks the person; answers come back in question order.
type Prompter interface {
	Prompt(ctx context.Context, p Prompt) (answers []string, err error)
}

// HostKeyPolicy decides about host keys nobody has pinned yet. The store and
// handlers implement it.
type HostKeyPolicy interface {
	// Unknown is called when a hop presents a key and no key is pinned for
	// it; return true to accept (the implementation asks the person and
	// pins). It is never called for a key that differs from a pinned one.
	Unknown(ctx context.Context, t *Target, key ssh.PublicKey) (bool, error)
}

// DialOptions tune Dial; the zero value is usable.
type DialOptions struct {
	ConnectTimeout     time.Duration // per hop TCP connect; default 10s
	HandshakeTimeout   time.Duration // per hop banner, key exchange and auth, not counting time spent waiting for the person; default 20s
	KeepaliveInterval  time.Duration // keepalive@openssh.com period; default 15s, negative disables
	KeepaliveMaxMissed int           // close after this many unanswered intervals; default 3
	ClientVersion      string        // default "SSH-2.0-shellgate"
	// Trace receives ssh -v style lines: hops, versions, negotiated
	// algorithms, host key, authentication methods tried and their result.
	// It never receives secrets.
	Trace func(line string)
	// Observe, when set, is told how long each Dial took and how it ended (metrics).
	Observe func(took time.Duration, err error)
}

func (o DialOptions) withDefaults() DialOptions {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 20 * time.Second
	}
	if o.KeepaliveInterval == 0 {
		o.KeepaliveInterval = 15 * time.Second
	}
	if o.KeepaliveMaxMissed <= 0 {
		o.KeepaliveMaxMissed = 3
	}
	if o.ClientVersion == "" {
		o.ClientVersion = "SSH-2.0-shellgate"
	}
	return o
}

func (o DialOptions) tracef(format string, args ...any) {
	if o.Trace != nil {
		o.Trace(fmt.Sprintf(format, args...))
	}
}

// maxHops bounds a Jump chain so a configuration loop cannot spin.
const maxHops = 8

// Dial connects to t, through its Jump chain if any, checking the host key
// of every hop before any credential is sent. Closing the returned client
// closes the jump connections too, and stops its keepalive.
func Dial(ctx context.Context, d Dialer, t *Target, auth Auth, policy HostKeyPolicy, opts DialOptions) (c *ssh.Client, err error) {
	if opts.Observe != nil {
		defer func(start time.Time) { opts.Observe(time.Since(start), err) }(time.Now())
	}
	opts = opts.withDefaults()
	var hops []*Target
	for h := t; h != nil; h = h.Jump {
		if len(hops) == maxHops {
			return nil, fmt.Errorf("dial %s: more than %d jump hosts", t, maxHops-1)
		}
		hops = append([]*Target{h}, hops...)
		if h.Agent != 0 {
			break // its agent reaches it: the hops before it are not needed
		}
	}
	var clients []*ssh.Client
	closeAll := func() {
		for i := len(clients) - 1; i >= 0; i-- {
			clients[i].Close()
		}
	}
	via := d
	for i, hop := range hops {
		if hop.Agent != 0 {
			opts.tracef("Reaching %s through its agent.", hop)
		} else if i > 0 {
			opts.tracef("Jumping through %s to %s.", hops[i-1], hop)
		}
		c, err := dialHop(ctx, via, hop, auth, policy, opts)
		if err != nil {
			closeAll()
			return nil, err
		}
		clients = append(clients, c)
		via = c
	}
	final := clients[len(clients)-1]
	if len(clients) > 1 {
		jumps := clients[:len(clients)-1]
		go func() {
			final.Wait()
			for i := len(jumps) - 1; i >= 0; i-- {
				jumps[i].Close()
			}
		}()
	}
	if opts.KeepaliveInterval > 0 {
		go keepalive(final, opts)
	}
	return final, nil
}

// Dial phases, recorded in DialError so messages can say where it failed.
const (
	PhaseConnect = "connect" // TCP connection
	PhaseBanner  = "banner"  // waiting for the server's SSH version line
	PhaseKex     = "kex"     // key exchange and host key check
	PhaseAuth    = "auth"    // user authentication
)

func dialHop(ctx context.Context, d Dialer, t *Target, auth Auth, policy HostKeyPolicy, o DialOptions) (*ssh.Client, error) {
	addr := t.Addr()
	o.tracef("Connecting to %s.", t)
	dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	raw, err := dialFirst(dctx, d, t, addr)
	cancel()
	if err != nil {
		return nil, &DialError{Target: t, Phase: PhaseConnect, Err: err}
	}
	o.tracef("Connection established.")

	conn := &sniffConn{Conn: raw}
	dl := &deadline{conn: raw, timeout: o.HandshakeTimeout}
	dl.resume()
	// Cancelling ctx (the person closed the tab) aborts the handshake.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	tr := &authTracker{o: o}
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              authMethods(ctx, t, auth, dl, o, tr),
		HostKeyCallback:   hostKeyCallback(ctx, t, policy, dl, o),
		HostKeyAlgorithms: hostKeyAlgorithms(t.HostKeys),
		ClientVersion:     o.ClientVersion,
		AuthCallback:      tr.callback,
		BannerCallback: func(msg string) error {
			o.tracef("Banner: %s", strings.TrimSpace(msg))
			return nil
		},
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		phase := PhaseKex
		switch {
		case !conn.sawBanner():
			phase = PhaseBanner
			if conn.received() > 0 {
				err = fmt.Errorf("%w: %w", ErrNotSSH, err)
			}
		case tr.started() && !isNetErr(err):
			phase = PhaseAuth
			err = tr.authError(t, err)
		case tr.started():
			phase = PhaseAuth
		}
		o.tracef("%s: %v", t, err)
		return nil, &DialError{Target: t, Phase: phase, Err: err}
	}
	if stop() {
		raw.SetDeadline(time.Time{})
	}
	o.tracef("Authenticated to %s using %q.", t, tr.last())
	return ssh.NewClient(c, chans, reqs), nil
}

// dialFirst yields the byte stream for hop t: through its agent when t.Agent
// is set, else with d (a TCP dialer or the previous hop's SSH client).
func dialFirst(ctx context.Context, d Dialer, t *Target, addr string) (net.Conn, error) {
	if t.Agent == 0 {
		return d.DialContext(ctx, "tcp", addr)
	}
	ad, ok := d.(AgentDialer)
	if !ok {
		return nil, ErrNoAgentRoute
	}
	return ad.DialAgent(ctx, t.Agent, addr)
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// deadline bounds the handshake in time but pauses while a person is being
// asked: the deadline is for the network, not for typing a password.
type deadline struct {
	conn    net.Conn
	timeout time.Duration
}

func (d *deadline) pause()  { d.conn.SetDeadline(time.Time{}) }
func (d *deadline) resume() { d.conn.SetDeadline(time.Now().Add(d.timeout)) }

func hostKeyCallback(ctx context.Context, t *Target, policy HostKeyPolicy, dl *deadline, o DialOptions) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		fp := ssh.FingerprintSHA256(key)
		o.tracef("Server host key: %s %s", key.Type(), fp)
		if len(t.HostKeys) > 0 {
			for _, k := range t.HostKeys {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					o.tracef("Host key matches the pinned key.")
					return nil
				}
			}
			// Returning an error here aborts the key exchange, before
			// the client ever sends a userauth request.
			return &HostKeyError{Target: t, Presented: key, Fingerprint: fp, Err: ErrHostKeyChanged}
		}
		if policy == nil {
			return &HostKeyError{Target: t, Presented: key, Fingerprint: fp, Err: ErrHostKeyRejected}
		}
		o.tracef("No pinned host key for %s; asking.", t)
		dl.pause()
		ok, err := policy.Unknown(ctx, t, key)
		dl.resume()
		if err != nil {
			return fmt.Errorf("host key check for %s: %w", t, err)
		}
		if !ok {
			return &HostKeyError{Target: t, Presented: key, Fingerprint: fp, Err: ErrHostKeyRejected}
		}
		o.tracef("Host key accepted.")
		return nil
	}
}

// hostKeyAlgorithms asks the server for the pinned key's type, so a server
// holding several host keys presents the one we know.
func hostKeyAlgorithms(pinned []ssh.PublicKey) []string {
	var algos []string
	add := func(a ...string) {
		for _, x := range a {
			if !containsString(algos, x) {
				algos = append(algos, x)
			}
		}
	}
	for _, k := range pinned {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			// An RSA key signs with SHA-2 algorithms named differently.
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		case ssh.CertAlgoRSAv01:
			add(ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
		default:
			add(k.Type())
		}
	}
	return algos
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func authMethods(ctx context.Context, t *Target, a Auth, dl *deadline, o DialOptions, tr *authTracker) []ssh.AuthMethod {
	ask := func(p Prompt) ([]string, error) {
		dl.pause()
		defer dl.resume()
		return a.Prompter.Prompt(ctx, p)
	}
	var methods []ssh.AuthMethod
	signers := append([]ssh.Signer(nil), a.Signers...)
	if a.Prompter != nil {
		for _, k := range a.Locked {
			signers = append(signers, &lockedSigner{key: k, ask: ask, trace: o.tracef})
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			tr.use("publickey")
			for _, s := range signers {
				o.tracef("Offering public key: %s %s", s.PublicKey().Type(), ssh.FingerprintSHA256(s.PublicKey()))
			}
			return signers, nil
		}))
	}
	if a.Prompter == nil {
		return methods
	}
	methods = append(methods,
		ssh.RetryableAuthMethod(ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
			tr.use("keyboard-interactive")
			o.tracef("Keyboard-interactive round: %d question(s).", len(questions))
			if len(questions) == 0 {
				// Servers may send an informational round; nothing to ask.
				return nil, nil
			}
			p := Prompt{Name: name, Instruction: instruction}
			for i, q := range questions {
				p.Questions = append(p.Questions, Question{Text: q, Echo: i < len(echos) && echos[i]})
			}
			answers, err := ask(p)
			if err == nil && len(answers) != len(questions) {
				err = fmt.Errorf("%w: %d answers for %d questions", ErrProtocol, len(answers), len(questions))
			}
			return answers, err
		}), 3),
		ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
			tr.use("password")
			o.tracef("Asking for the password of %s@%s.", t.User, t.displayName())
			answers, err := ask(Prompt{
				Name:      "Password",
				Questions: []Question{{Text: fmt.Sprintf("%s@%s's password: ", t.User, t.displayName())}},
			})
			if err != nil {
				return "", err
			}
			if len(answers) != 1 {
				return "", fmt.Errorf("%w: expected one answer", ErrProtocol)
			}
			return answers[0], nil
		}), 3),
	)
	return methods
}

// authTracker follows authentication through ssh.ClientConfig.AuthCallback,
// which x/crypto calls after every attempt with the negotiated algorithms,
// the methods the server still allows and those tried so far. It never
// chooses a method itself.
type authTracker struct {
	o       DialOptions
	mu      sync.Mutex
	calls   int
	allowed []string
	tried   []string
	method  string // the method whose credentials were produced last
}

func (a *authTracker) use(method string) {
	a.mu.Lock()
	a.method = method
	a.mu.Unlock()
}

func (a *authTracker) callback(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.calls == 0 {
		m := ctx.Metadata
		alg := ctx.Algorithms
		a.o.tracef("Remote protocol version %s, local %s.", m.ServerVersion(), m.ClientVersion())
		a.o.tracef("kex: algorithm: %s", alg.KeyExchange)
		a.o.tracef("kex: host key algorithm: %s", alg.HostKey)
		a.o.tracef("kex: server->client cipher: %s MAC: %s", alg.Read.Cipher, macName(alg.Read))
		a.o.tracef("kex: client->server cipher: %s MAC: %s", alg.Write.Cipher, macName(alg.Write))
	}
	for _, m := range ctx.TriedMethods[min(len(a.tried), len(ctx.TriedMethods)):] {
		if m != "none" {
			a.o.tracef("Authentication method %s failed.", m)
		}
	}
	a.calls++
	a.allowed = ctx.AllowedMethods
	a.tried = ctx.TriedMethods
	a.o.tracef("Authentications that can continue: %s", strings.Join(ctx.AllowedMethods, ","))
	return nil, nil
}

func macName(d ssh.DirectionAlgorithms) string {
	if d.MAC == "" {
		return "<implicit>" // AEAD ciphers carry their own MAC
	}
	return d.MAC
}

func (a *authTracker) started() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls > 0
}

// last is the method that succeeded: authentication ends right after the
// attempt that worked.
func (a *authTracker) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.method == "" {
		return "none"
	}
	return a.method
}

func (a *authTracker) authError(t *Target, err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var tried []string
	for _, m := range a.tried {
		if m != "none" && !containsString(tried, m) {
			tried = append(tried, m)
		}
	}
	return &AuthError{Target: t, Allowed: a.allowed, Tried: tried, Err: err}
}

// lockedSigner unlocks a passphrase-protected key the first time the server
// asks for a signature, i.e. after it said it would accept the key.
type lockedSigner struct {
	key   LockedKey
	ask   func(Prompt) ([]string, error)
	trace func(string, ...any)

	mu     sync.Mutex
	signer ssh.Signer
}

func (l *lockedSigner) PublicKey() ssh.PublicKey { return l.key.PublicKey }

func (l *lockedSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return l.SignWithAlgorithm(rand, data, "")
}

func (l *lockedSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	if algorithm != "" && algorithm != s.PublicKey().Type() {
		return nil, fmt.Errorf("key %s cannot sign with %s", l.key.Name, algorithm)
	}
	return s.Sign(rand, data)
}

func (l *lockedSigner) unlock() (ssh.Signer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.signer != nil {
		return l.signer, nil
	}
	l.trace("Server accepts key %s; asking for its passphrase.", l.key.Name)
	instruction := ""
	for range 3 {
		answers, err := l.ask(Prompt{
			Name:        "Key passphrase",
			Instruction: instruction,
			Questions:   []Question{{Text: fmt.Sprintf("Enter passphrase for key '%s': ", l.key.Name)}},
		})
		if err != nil {
			return nil, err
		}
		if len(answers) != 1 {
			return nil, fmt.Errorf("%w: expected one answer", ErrProtocol)
		}
		s, err := l.key.Unlock([]byte(answers[0]))
		if err == nil {
			l.signer = s
			return s, nil
		}
		instruction = "Incorrect passphrase, try again."
	}
	return nil, fmt.Errorf("key %s: wrong passphrase", l.key.Name)
}

// sniffConn remembers whether the peer ever sent an SSH version line, so a
// failed handshake can be told apart from "that port is not SSH".
type sniffConn struct {
	net.Conn
	n      atomic.Int64
	banner atomic.Bool
	mu     sync.Mutex
	tail   []byte
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// Only the first few KiB matter; later reads skip this entirely.
	if n > 0 && !c.banner.Load() && c.n.Load() < 64<<10 {
		c.mu.Lock()
		buf := append(c.tail, p[:n]...)
		if bytes.Contains(buf, []byte("SSH-")) {
			c.banner.Store(true)
		}
		c.tail = append(c.tail[:0], buf[max(0, len(buf)-3):]...)
		c.mu.Unlock()
	}
	c.n.Add(int64(n))
	return n, err
}

func (c *sniffConn) sawBanner() bool { return c.banner.Load() }
func (c *sniffConn) received() int64 { return c.n.Load() }

// keepalive probes the server every interval and closes the client when
// max probes in a row went unanswered. It ends with the client.
func keepalive(c *ssh.Client, o DialOptions) {
	tick := time.NewTicker(o.KeepaliveInterval)
	defer tick.Stop()
	closed := make(chan struct{})
	go func() {
		c.Wait()
		close(closed)
	}()
	replies := make(chan struct{}, 1)
	inflight, missed := false, 0
	for {
		select {
		case <-closed:
			return
		case <-replies:
			inflight, missed = false, 0
		case <-tick.C:
			if inflight {
				// At most one probe outstanding: a dead TCP connection
				// must not pile up blocked requests.
				if missed++; missed >= o.KeepaliveMaxMissed {
					o.tracef("Timeout, server not responding to keepalive.")
					c.Close()
					return
				}
				continue
			}
			inflight = true
			go func() {
				// Any reply, even a failure, proves the server is alive.
				if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err == nil {
					replies <- struct{}{}
				}
			}()
		}
	}
}

// agentLost names the agent in cause when the SSH connection through it died
// because the agent's link dropped: the transport error then says so. A
// connection that is still up is not waited for.
func agentLost(c *ssh.Client, t *Target, cause error) error {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if errors.Is(err, ErrAgentLinkLost) {
			return &LostError{Target: t, Err: fmt.Errorf("%w: %w", ErrConnectionLost, err)}
		}
	case <-time.After(100 * time.Millisecond):
		// Connection still up: the channel ended on its own. The goroutine
		// returns when the caller closes the client.
	}
	return cause
}
