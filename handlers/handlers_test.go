package handlers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/store"
)

// env is a shellgate served by httptest over a real SQLite file.
type env struct {
	t       *testing.T
	srv     *httptest.Server
	store   *store.SQLite
	dbPath  string
	keyring *secrets.Keyring
}

func randomKey(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newEnv(t *testing.T, mutate ...func(*handlers.Config)) *env {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "test.db")
	st, err := store.OpenSQLite(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keyring, err := secrets.LoadOrCreateMaster(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := handlers.Config{SessionHashKey: randomKey(64), SessionBlockKey: randomKey(32), CSRFKey: randomKey(32), Secrets: keyring}
	for _, m := range mutate {
		m(&cfg)
	}
	e, _, err := handlers.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st, dbPath: dbPath, keyring: keyring}
}

// addUser creates an account directly in the store.
func (e *env) addUser(name, pw string, role store.Role) *store.User {
	e.t.Helper()
	hash, err := password.Hash(pw)
	if err != nil {
		e.t.Fatal(err)
	}
	u := &store.User{Username: name, PasswordHash: hash, Role: role}
	if err := e.store.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	env  *env
	c    *http.Client
	csrf string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, env: e, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(req *http.Request) *http.Response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp
}

// get fetches a page and remembers the CSRF token its forms carry.
func (b *browser) get(path string) (*http.Response, *goquery.Document) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.env.srv.URL+path, nil)
	resp := b.do(req)
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	if tok, ok := doc.Find(`input[name="_csrf"]`).First().Attr("value"); ok {
		b.csrf = tok
	} else if tok, ok := doc.Find(`meta[name="csrf-token"]`).Attr("content"); ok && tok != "" {
		b.csrf = tok
	}
	return resp, doc
}

// post submits a form the way a same-origin browser does: with the token and an Origin.
func (b *browser) post(path string, form url.Values, headers ...string) *http.Response {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["_csrf"]; !ok {
		form.Set("_csrf", b.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, b.env.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.env.srv.URL)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return b.do(req)
}

// file is one file of a multipart form.
type file struct {
	field, name string
	content     []byte
}

// postMultipart submits a multipart form (with files) like a same-origin browser.
func (b *browser) postMultipart(path string, form url.Values, files ...file) *http.Response {
	b.t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["_csrf"]; !ok {
		form.Set("_csrf", b.csrf)
	}
	for k, vs := range form {
		for _, v := range vs {
			w.WriteField(k, v)
		}
	}
	for _, f := range files {
		fw, err := w.CreateFormFile(f.field, f.name)
		if err != nil {
			b.t.Fatal(err)
		}
		fw.Write(f.content)
	}
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, b.env.srv.URL+path, &buf)
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Origin", b.env.srv.URL)
	return b.do(req)
}

func (b *browser) signIn(user, pw string) {
	b.t.Helper()
	b.get("/login")
	resp := b.post("/login", url.Values{"username": {user}, "password": {pw}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign-in as %s: status %d, want 303", user, resp.StatusCode)
	}
	b.get("/account") // the next page carries the token of the new session
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "sg_session") {
			return c
		}
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
