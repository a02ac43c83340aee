package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/PuerkitoBio/goquery"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/terminal"
)

// LabelShellgate names the real endpoint in results.
const LabelShellgate = "shellgate (real endpoint)"

// perUserSessions is shellgate's default cap on live terminals per user
// (terminal.Config.MaxPerUser, not configurable in cmd/shellgate). The
// benchmark spreads its sessions over enough accounts to stay under it,
// as many people would.
const perUserSessions = 10

// Shellgate is the real endpoint: the shellgate binary (`shellgate serve`)
// in its own process with a temporary data dir, set up over HTTP as an
// administrator would — sign in, create a stack, add the server, pin its
// host key, upload the private key and attach it — and then reached
// exactly as the terminal page does: a CSRF-protected ticket request, then
// the WebSocket with the session cookie and a same-origin Origin.
type Shellgate struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error // cmd.Wait's, once exited is closed
	bin      string
	password string
	args     []string
	dataDir  string
	URL      string
	StackID  string
	ServerID string
	users    []*WebClient
	next     atomic.Int64

	gcMu sync.Mutex
	gc   GCStats
	log  []string // the last maxLogLines lines of stderr
}

// maxLogLines bounds the stderr lines kept for Log.
const maxLogLines = 500

// GCStats is what the shellgate process's GODEBUG=gctrace=1 lines said:
// the garbage collector's own account of its heap, in whole MB as the
// runtime prints them.
type GCStats struct {
	Cycles       int // GC cycles since the process started
	LiveMB       int // heap marked live by the last cycle
	GoalMB       int // heap size at which the next cycle starts
	PeakLiveMB   int // highest LiveMB since ResetGCPeaks
	PeakHeapMB   int // highest heap size at a cycle's start since ResetGCPeaks
	PeakGoalMB   int // highest GoalMB since ResetGCPeaks
	CyclesAtMark int // Cycles at ResetGCPeaks
}

// gctrace: "gc 7 @1.234s 2%: …, 9->10->4 MB, 18 MB goal, …".
var gcLine = regexp.MustCompile(`^gc (\d+) @[\d.]+s .*?, (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

func (s *Shellgate) readGCTrace(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			s.gcMu.Lock()
			if len(s.log) >= maxLogLines {
				s.log = s.log[1:]
			}
			s.log = append(s.log, sc.Text())
			s.gcMu.Unlock()
			continue
		}
		n := make([]int, len(m))
		for i := 1; i < len(m); i++ {
			n[i], _ = strconv.Atoi(m[i])
		}
		s.gcMu.Lock()
		g := &s.gc
		g.Cycles, g.LiveMB, g.GoalMB = n[1], n[4], n[5]
		g.PeakLiveMB, g.PeakGoalMB = max(g.PeakLiveMB, n[4]), max(g.PeakGoalMB, n[5])
		g.PeakHeapMB = max(g.PeakHeapMB, n[2])
		s.gcMu.Unlock()
	}
}

// GC returns the latest GC figures.
func (s *Shellgate) GC() GCStats {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	return s.gc
}

// ResetGCPeaks starts a new window for the peaks.
func (s *Shellgate) ResetGCPeaks() {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	g := &s.gc
	g.PeakLiveMB, g.PeakHeapMB, g.PeakGoalMB, g.CyclesAtMark = g.LiveMB, 0, g.GoalMB, g.Cycles
}

// Quiesce brings the process to the memory state of a server that has been
// running a while, so an RSS baseline means something: every sign-in
// allocates argon2id's 64 MiB, which stays in the heap (and the RSS) until
// the next GC cycle — with nothing else allocating, the 2-minute forced
// one. It browses the stack page (the allocations of ordinary requests)
// until two cycles have run, at most 20,000 requests or 30 s.
func (s *Shellgate) Quiesce(ctx context.Context) error {
	want := s.GC().Cycles + 2
	deadline := time.Now().Add(30 * time.Second)
	admin := s.Admin()
	for i := 0; i < 20000 && s.GC().Cycles < want; i++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("quiesce: %d GC cycles after 30s, want %d", s.GC().Cycles, want)
		}
		if _, err := admin.get(ctx, "/stacks/"+s.StackID); err != nil {
			return fmt.Errorf("quiesce: %w", err)
		}
	}
	if s.GC().Cycles < want {
		return errors.New("quiesce: no GC cycle after 20,000 requests")
	}
	return nil
}

// BuildShellgate builds cmd/shellgate into dir.
func BuildShellgate(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "shellgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/shellgate/shellgate/cmd/shellgate")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/shellgate: %w\n%s", err, msg)
	}
	return out, nil
}

// StartShellgate starts bin on a free loopback port and prepares it for
// terminals on target, for up to sessions concurrent terminals (one
// account per perUserSessions). args are more flags for `shellgate serve`.
// The child gets SIGKILL if we die.
func StartShellgate(ctx context.Context, bin string, target *SSHServer, sessions int, args ...string) (_ *Shellgate, err error) {
	dataDir, err := os.MkdirTemp("", "shellgate-bench-data-")
	if err != nil {
		return nil, err
	}
	s := &Shellgate{bin: bin, password: rand.Text(), args: args, dataDir: dataDir}
	if err := s.launch(); err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.prepare(ctx, target, sessions); err != nil {
		return nil, err
	}
	return s, nil
}

// Attach prepares a shellgate that is already running at baseURL (in this
// process, say), whose admin password is password, as StartShellgate does.
// Close then only forgets it.
func Attach(ctx context.Context, baseURL, password string, target *SSHServer, sessions int) (*Shellgate, error) {
	s := &Shellgate{URL: baseURL, password: password}
	if err := s.prepare(ctx, target, sessions); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare signs in, seeds the stack and creates the accounts.
func (s *Shellgate) prepare(ctx context.Context, target *SSHServer, sessions int) error {
	admin, err := SignIn(ctx, s.URL, "admin", s.password)
	if err != nil {
		return err
	}
	if err := s.seed(ctx, admin, target); err != nil {
		return err
	}
	s.users = []*WebClient{admin}
	keyPEM, err := os.ReadFile(target.KeyPath)
	if err != nil {
		return err
	}
	// More accounts (admins, so no membership step), each with the key
	// uploaded as its own and attached: shellgate uses only the person's
	// own keys.
	for i := 1; i*perUserSessions < sessions; i++ {
		name := fmt.Sprintf("bench%d", i)
		pw, err := admin.CreateUser(ctx, name)
		if err != nil {
			return err
		}
		u, err := SignIn(ctx, s.URL, name, pw)
		if err != nil {
			return err
		}
		if err := u.AttachUploadedKey(ctx, s.StackID, keyPEM); err != nil {
			return err
		}
		s.users = append(s.users, u)
	}
	return nil
}

// launch starts the process on s.dataDir and waits until it listens.
func (s *Shellgate) launch() error {
	s.exited = make(chan struct{})
	s.cmd = exec.Command(s.bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", s.dataDir, "--log-format", "json"}, s.args...)...)
	// gctrace only prints (to stderr, one line per GC cycle): the heap
	// as the runtime sees it, without a debug endpoint in the product.
	s.cmd.Env = append(os.Environ(), "SHELLGATE_ADMIN_PASSWORD="+s.password, "GODEBUG=gctrace=1")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return err
	}
	// The log (one JSON line per request) is kept, its last lines only.
	go s.readGCTrace(stderr)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited, cmd := s.exited, s.cmd
	go func() { s.exitErr = cmd.Wait(); close(exited) }()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "shellgate is listening on "); ok {
				urlc <- strings.TrimSpace(u)
			}
		}
	}()
	select {
	case s.URL = <-urlc:
		return nil
	case <-s.exited:
		return errors.New("shellgate exited before listening")
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		return errors.New("shellgate did not listen within 30s")
	}
}

// Signal sends sig to the process (by PID).
func (s *Shellgate) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Wait waits for the process to exit, at most d, and returns cmd.Wait's error
// (nil for exit status 0); an error also if it is still running.
func (s *Shellgate) Wait(d time.Duration) error {
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(d):
		return fmt.Errorf("shellgate still running after %s", d)
	}
}

// Restart SIGKILLs the process (a crash) and starts it again on the same
// data dir; the administrator signs in again. Other accounts' sessions are
// dropped with the process's state as a browser would see them.
func (s *Shellgate) Restart(ctx context.Context) error {
	s.cmd.Process.Kill()
	<-s.exited
	if err := s.launch(); err != nil {
		return err
	}
	admin, err := SignIn(ctx, s.URL, "admin", s.password)
	if err != nil {
		return err
	}
	s.users = []*WebClient{admin}
	return nil
}

// DataDir is the process's data dir (its SQLite database is shellgate.db).
func (s *Shellgate) DataDir() string { return s.dataDir }

// Log returns the last lines the process wrote to stderr.
func (s *Shellgate) Log() string {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	return strings.Join(s.log, "\n")
}

// FilesURL is the file API's URL for op (download, upload, …) on the
// benchmark's server.
func (s *Shellgate) FilesURL(op string, q url.Values) string { return s.filesURL(op, q) }

// seed creates the stack, the server with its pinned host key and the
// admin's key, through the dashboard's forms.
func (s *Shellgate) seed(ctx context.Context, admin *WebClient, target *SSHServer) error {
	loc, err := admin.PostForm(ctx, "/stacks", url.Values{"name": {"bench"}})
	if err != nil {
		return fmt.Errorf("create stack: %w", err)
	}
	m := regexp.MustCompile(`^/stacks/(\d+)`).FindStringSubmatch(loc)
	if m == nil {
		return fmt.Errorf("create stack: redirected to %q", loc)
	}
	s.StackID = m[1]
	loc, err = admin.PostForm(ctx, "/stacks/"+s.StackID+"/servers", url.Values{
		"name": {"sshd"}, "host": {target.Host}, "port": {fmt.Sprint(target.Port)}, "user": {target.User},
	})
	if err != nil {
		return fmt.Errorf("add server: %w", err)
	}
	m = regexp.MustCompile(`^/stacks/\d+/servers/(\d+)/hostkey`).FindStringSubmatch(loc)
	if m == nil {
		return fmt.Errorf("add server: redirected to %q", loc)
	}
	s.ServerID = m[1]
	// The administrator compares the fingerprint shown with the server's
	// own; we know the server's key, so we confirm exactly it.
	fp := ssh.FingerprintSHA256(target.HostKey)
	loc, err = admin.PostForm(ctx, "/stacks/"+s.StackID+"/servers/"+s.ServerID+"/pin",
		url.Values{"fingerprint": {fp}, "confirm": {"yes"}})
	if err != nil {
		return fmt.Errorf("pin host key: %w", err)
	}
	if strings.Contains(loc, "/hostkey") {
		return fmt.Errorf("pin host key %s: refused (the scanned key differs?)", fp)
	}
	keyPEM, err := os.ReadFile(target.KeyPath)
	if err != nil {
		return err
	}
	return admin.AttachUploadedKey(ctx, s.StackID, keyPEM)
}

func (s *Shellgate) Label() string { return LabelShellgate }
func (s *Shellgate) PID() int      { return s.cmd.Process.Pid }

// Connect takes a fresh ticket for the next account (round robin) and
// opens the terminal with it.
func (s *Shellgate) Connect(ctx context.Context) (*Term, error) {
	u := s.users[int(s.next.Add(1)-1)%len(s.users)]
	ticket, err := u.Ticket(ctx, s.StackID, s.ServerID)
	if err != nil {
		return nil, err
	}
	h := http.Header{"Origin": {s.URL}}
	for _, c := range u.jar.Cookies(u.base) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/api/terminal/ws"
	return DialTerm(ctx, wsURL, h, terminal.OpenMessage{Server: s.ServerID, Cols: ptyCols, Rows: ptyRows, Ticket: ticket})
}

// Admin is the first account, for the file API.
func (s *Shellgate) Admin() *WebClient { return s.users[0] }

// Close sends SIGTERM (graceful shutdown), SIGKILL after 10s, both by PID,
// and removes the data dir.
func (s *Shellgate) Close() error {
	if s.cmd == nil {
		return nil // attached: not ours to stop
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return os.RemoveAll(s.dataDir)
}

// WebClient is a signed-in dashboard session: a cookie jar, the CSRF token
// of the session and the Origin a browser would send.
type WebClient struct {
	hc   *http.Client
	jar  *cookiejar.Jar
	base *url.URL
	csrf string
}

// SignIn signs in as a browser does: GET /login for the CSRF token, POST
// the form with Origin, then read the new session's token from a page.
func SignIn(ctx context.Context, baseURL, username, password string) (*WebClient, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	jar, _ := cookiejar.New(nil)
	c := &WebClient{jar: jar, base: base, hc: &http.Client{
		Jar: jar, Timeout: 2 * time.Minute,
		// Redirects are answers (where a form led), not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if err := c.refreshCSRF(ctx, "/login", "input[name=_csrf]", "value"); err != nil {
		return nil, err
	}
	loc, err := c.PostForm(ctx, "/login", url.Values{"username": {username}, "password": {password}})
	if err != nil {
		return nil, fmt.Errorf("sign in as %s: %w", username, err)
	}
	if strings.HasPrefix(loc, "/login") {
		return nil, fmt.Errorf("sign in as %s: refused", username)
	}
	// The token is bound to the session, which sign-in replaced.
	if err := c.refreshCSRF(ctx, "/keys", `meta[name="csrf-token"]`, "content"); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *WebClient) get(ctx context.Context, path string) (*goquery.Document, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return goquery.NewDocumentFromReader(resp.Body)
}

func (c *WebClient) refreshCSRF(ctx context.Context, path, sel, attr string) error {
	doc, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	tok, ok := doc.Find(sel).First().Attr(attr)
	if !ok || tok == "" {
		return fmt.Errorf("GET %s: no CSRF token (%s)", path, sel)
	}
	c.csrf = tok
	return nil
}

// Do sends req as the signed-in browser: Origin and X-CSRF-Token set.
func (c *WebClient) Do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Origin", c.base.String())
	req.Header.Set("X-CSRF-Token", c.csrf)
	return c.hc.Do(req)
}

// PostForm posts a form and returns where it redirected (303 expected).
func (c *WebClient) PostForm(ctx context.Context, path string, form url.Values) (string, error) {
	return c.post(ctx, path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

func (c *WebClient) post(ctx context.Context, path, contentType string, body io.Reader) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return "", fmt.Errorf("POST %s: %s: %s", path, resp.Status, firstLine(msg))
	}
	return resp.Header.Get("Location"), nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	return s
}

var keyIDPattern = regexp.MustCompile(`^/keys/(\d+)/delete$`)

// AttachUploadedKey uploads keyPEM as this user's private key (POST
// /keys/upload, multipart) and attaches it to the stack.
func (c *WebClient) AttachUploadedKey(ctx context.Context, stackID string, keyPEM []byte) error {
	return c.AttachKey(ctx, stackID, "benchkey", keyPEM)
}

// AttachKey uploads keyPEM as this user's private key named name and
// attaches it to the stack.
func (c *WebClient) AttachKey(ctx context.Context, stackID, name string, keyPEM []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("name", name)
	fw, _ := mw.CreateFormFile("private_key_file", "id_ed25519")
	fw.Write(keyPEM)
	mw.Close()
	if _, err := c.post(ctx, "/keys/upload", mw.FormDataContentType(), &body); err != nil {
		return fmt.Errorf("upload key: %w", err)
	}
	doc, err := c.get(ctx, "/keys")
	if err != nil {
		return err
	}
	var keyID string
	doc.Find("form[action]").EachWithBreak(func(_ int, f *goquery.Selection) bool {
		if !strings.Contains(f.Closest("tr").Text(), name) {
			return true // another key's row
		}
		if m := keyIDPattern.FindStringSubmatch(f.AttrOr("action", "")); m != nil {
			keyID = m[1]
			return false
		}
		return true
	})
	if keyID == "" {
		return errors.New("upload key: not listed on /keys")
	}
	if _, err := c.PostForm(ctx, "/stacks/"+stackID+"/keys", url.Values{"key": {keyID}}); err != nil {
		return fmt.Errorf("attach key: %w", err)
	}
	return nil
}

// CreateUser makes an admin account and returns its generated password,
// shown once on the users page.
func (c *WebClient) CreateUser(ctx context.Context, name string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+"/admin/users",
		strings.NewReader(url.Values{"username": {name}, "role": {"admin"}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("create user %s: %s", name, resp.Status)
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSpace(doc.Find(`[data-testid="new-password"] code`).First().Text())
	if pw == "" {
		return "", fmt.Errorf("create user %s: no password shown", name)
	}
	return pw, nil
}

// Ticket asks for a single-use terminal ticket, as the terminal page does.
func (c *WebClient) Ticket(ctx context.Context, stackID, serverID string) (string, error) {
	body, _ := json.Marshal(map[string]string{"stack": stackID, "server": serverID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+"/api/terminal/tickets", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return "", fmt.Errorf("ticket: %s: %s", resp.Status, firstLine(msg))
	}
	var out struct{ Ticket string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Ticket == "" {
		return "", fmt.Errorf("ticket: bad answer (%v)", err)
	}
	return out.Ticket, nil
}

var gatewayLine = regexp.MustCompile(`echo '([^']+)'`)

// GatewayKey reads shellgate's own public key (authorized_keys form) from the
// install command on the stack page, as an administrator copies it.
func (c *WebClient) GatewayKey(ctx context.Context, stackID string) (string, error) {
	doc, err := c.get(ctx, "/stacks/"+stackID)
	if err != nil {
		return "", err
	}
	m := gatewayLine.FindStringSubmatch(doc.Find(`[data-testid="gateway-install"]`).Text())
	if m == nil {
		return "", errors.New("stack page: no gateway install command")
	}
	return m[1], nil
}

// Retry presses Retry in the stack's settings: failed deployments run again now.
func (c *WebClient) Retry(ctx context.Context, stackID string) error {
	_, err := c.PostForm(ctx, "/stacks/"+stackID+"/retry", url.Values{})
	return err
}
