package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/store"
)

const pw = "a long enough password"

func TestSignInShowsDashboardAndSignOut(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	b := e.browser()

	resp, _ := b.get("/stacks")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=%2Fstacks") {
		t.Fatalf("anonymous /stacks: %d %s, want redirect to sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
	b.signIn("Alice", pw) // usernames are case-insensitive
	resp, doc := b.get("/stacks")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/stacks after sign-in: %d", resp.StatusCode)
	}
	if got := doc.Find(`[data-testid="user-name"]`).Text(); got != "alice" {
		t.Fatalf("user menu shows %q, want alice", got)
	}
	if doc.Find(`a[href="/admin/users"]`).Length() != 0 {
		t.Fatal("a member sees the Admin navigation")
	}
	resp = b.post("/logout", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	resp, _ = b.get("/stacks")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/stacks after sign-out: %d, want redirect", resp.StatusCode)
	}
}

// TestWrongUsernameAndWrongPasswordLookTheSame: an attacker probing for account names
// gets the same status and message for a name that does not exist as for a wrong password.
func TestWrongUsernameAndWrongPasswordLookTheSame(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	b := e.browser()
	b.get("/login")
	r1 := b.post("/login", url.Values{"username": {"alice"}, "password": {"wrong password!"}})
	r2 := b.post("/login", url.Values{"username": {"mallory"}, "password": {"wrong password!"}})
	b1, b2 := body(t, r1), body(t, r2)
	if r1.StatusCode != http.StatusUnauthorized || r2.StatusCode != r1.StatusCode {
		t.Fatalf("statuses %d and %d, want both 401", r1.StatusCode, r2.StatusCode)
	}
	for _, b := range []string{b1, b2} {
		if !strings.Contains(b, "Wrong username or password.") {
			t.Fatalf("missing generic message in %q", b)
		}
	}
}

// TestReplayedCookieAfterSignOutIsRefused: someone who copied the session cookie (from a
// shared machine, a proxy log) replays it after the owner signed out, and gets nothing.
func TestReplayedCookieAfterSignOutIsRefused(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	b := e.browser()
	b.get("/login")
	resp := b.post("/login", url.Values{"username": {"alice"}, "password": {pw}})
	stolen := sessionCookie(resp)
	if stolen == nil {
		t.Fatal("no session cookie set at sign-in")
	}
	b.get("/stacks")
	b.post("/logout", nil).Body.Close()

	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/stacks", nil)
	req.AddCookie(stolen)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("replayed cookie got %d, want a redirect to sign-in", resp.StatusCode)
	}
}

// TestSessionIDRenewedAtSignIn: whatever session token a browser held before signing in
// (one an attacker planted, session fixation) is discarded, and the new one differs.
func TestSessionIDRenewedAtSignIn(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	e.addUser("bob", pw, store.RoleMember)
	b := e.browser()
	b.get("/login")
	first := sessionCookie(b.post("/login", url.Values{"username": {"bob"}, "password": {pw}}))
	b.get("/account") // a token for the current session
	second := sessionCookie(b.post("/login", url.Values{"username": {"alice"}, "password": {pw}}))
	if first == nil || second == nil || first.Value == second.Value {
		t.Fatalf("session cookie not renewed at sign-in: %v / %v", first, second)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/stacks", nil)
	req.AddCookie(first)
	resp, _ := http.DefaultTransport.RoundTrip(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the session held before the new sign-in still works: %d", resp.StatusCode)
	}
}

// TestPostWithoutCSRFTokenIsRefused: a forged form post that cannot read the page's token.
func TestPostWithoutCSRFTokenIsRefused(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	b := e.browser()
	b.signIn("root", pw)
	b.get("/admin/users")
	for name, form := range map[string]url.Values{
		"missing": {"username": {"eve"}, "role": {"admin"}, "_csrf": {""}},
		"wrong":   {"username": {"eve"}, "role": {"admin"}, "_csrf": {"AAAA" + b.csrf[4:]}},
	} {
		resp := b.post("/admin/users", form)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s token: status %d, want 403", name, resp.StatusCode)
		}
		resp.Body.Close()
	}
	if _, err := e.store.UserByName(context.Background(), "eve"); err == nil {
		t.Fatal("the forged request created a user")
	}
}

// TestCrossSitePostIsRefused: a page on another site makes the victim's browser post a
// form; even a leaked token does not help it, because the browser names the real origin.
func TestCrossSitePostIsRefused(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	b := e.browser()
	b.signIn("root", pw)
	b.get("/admin/users")
	cases := [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "null"},
		{"Origin", strings.Replace(e.srv.URL, "127.0.0.1", "127.0.0.1.evil.example", 1)},
		{"Origin", "", "Sec-Fetch-Site", "cross-site"},
		{"Origin", "", "Sec-Fetch-Site", "same-site"},
	}
	for _, h := range cases {
		resp := b.post("/admin/users", url.Values{"username": {"eve"}, "role": {"admin"}}, h...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("headers %v: status %d, want 403", h, resp.StatusCode)
		}
		resp.Body.Close()
	}
	// The same request from the same origin goes through, so the refusals above are
	// about the origin and nothing else.
	resp := b.post("/admin/users", url.Values{"username": {"eve"}, "role": {"member"}}, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("same-origin post: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// TestCSRFTokenBoundToSession: a token read from one session (the attacker's own
// account) does not validate for another session.
func TestCSRFTokenBoundToSession(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	e.addUser("mallory", pw, store.RoleMember)
	attacker := e.browser()
	attacker.signIn("mallory", pw)
	attacker.get("/account")
	victim := e.browser()
	victim.signIn("root", pw)
	victim.get("/admin/users")
	resp := victim.post("/admin/users", url.Values{"username": {"eve"}, "role": {"admin"}, "_csrf": {attacker.csrf}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another session's token: %d, want 403", resp.StatusCode)
	}
}

func TestCookieAttributes(t *testing.T) {
	t.Run("http", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", pw, store.RoleMember)
		b := e.browser()
		b.get("/login")
		c := sessionCookie(b.post("/login", url.Values{"username": {"alice"}, "password": {pw}}))
		if c == nil || c.Name != "sg_session" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
			t.Fatalf("session cookie %+v: want sg_session, HttpOnly, SameSite=Lax, Path=/", c)
		}
	})
	t.Run("https public URL", func(t *testing.T) {
		e := newEnv(t, func(c *handlers.Config) { c.PublicURL = &url.URL{Scheme: "https", Host: "shell.example.com"} })
		e.addUser("alice", pw, store.RoleMember)
		b := e.browser()
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/login", nil)
		req.Host = "shell.example.com"
		resp := b.do(req)
		resp.Body.Close()
		var csrfCookie *http.Cookie
		for _, c := range resp.Cookies() {
			if strings.HasSuffix(c.Name, "sg_csrf") {
				csrfCookie = c
			}
		}
		if csrfCookie == nil || csrfCookie.Name != "__Host-sg_csrf" || !csrfCookie.Secure || !csrfCookie.HttpOnly {
			t.Fatalf("CSRF cookie %+v: want __Host- prefix, Secure, HttpOnly", csrfCookie)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
			t.Fatal("no HSTS header behind an https public URL")
		}
	})
}

// TestForeignHostIsRefused: with a public URL set, a request naming another Host (DNS
// rebinding, a poisoned link) gets nothing.
func TestForeignHostIsRefused(t *testing.T) {
	e := newEnv(t, func(c *handlers.Config) { c.PublicURL = &url.URL{Scheme: "http", Host: "shell.example.com"} })
	for host, want := range map[string]int{"evil.example": http.StatusMisdirectedRequest, "shell.example.com": http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/login", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestDisabledUserSessionEnds: an admin disables a signed-in member; the member's very
// next request is signed out.
func TestDisabledUserSessionEnds(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	bob := e.addUser("bob", pw, store.RoleMember)
	member := e.browser()
	member.signIn("bob", pw)
	if resp, _ := member.get("/stacks"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob before disable: %d", resp.StatusCode)
	}
	admin := e.browser()
	admin.signIn("root", pw)
	admin.get("/admin/users")
	resp := admin.post("/admin/users/"+itoa(bob.ID)+"/disable", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if resp, _ := member.get("/stacks"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob after disable: %d, want redirect to sign-in", resp.StatusCode)
	}
	member.get("/login")
	if resp := member.post("/login", url.Values{"username": {"bob"}, "password": {pw}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("disabled bob signing in: %d, want 401", resp.StatusCode)
	}
}

// TestPasswordChangeRevokesOtherSessions: a cookie copied before a password change is
// worthless after it, while the browser that made the change stays signed in.
func TestPasswordChangeRevokesOtherSessions(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	laptop, phone := e.browser(), e.browser()
	laptop.signIn("alice", pw)
	phone.signIn("alice", pw)
	laptop.get("/account")
	resp := laptop.post("/account/password", url.Values{"current": {pw}, "new": {"another long password"}, "confirm": {"another long password"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("change password: %d", resp.StatusCode)
	}
	if resp, _ := laptop.get("/account"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the changing browser was signed out: %d", resp.StatusCode)
	}
	if resp, _ := phone.get("/account"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the other browser is still signed in: %d", resp.StatusCode)
	}
}

func TestMemberCannotUseAdminPages(t *testing.T) {
	e := newEnv(t)
	e.addUser("bob", pw, store.RoleMember)
	b := e.browser()
	b.signIn("bob", pw)
	if resp, _ := b.get("/admin/users"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("member on /admin/users: %d, want 403", resp.StatusCode)
	}
	b.get("/account")
	resp := b.post("/admin/users", url.Values{"username": {"eve"}, "role": {"admin"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("member creating a user: %d, want 403", resp.StatusCode)
	}
}

// TestSignInRedirectStaysOnSite: a phishing link /login?next=https://evil.example must
// not send the person off-site after they sign in.
func TestSignInRedirectStaysOnSite(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", pw, store.RoleMember)
	for next, want := range map[string]string{
		"https://evil.example": "/", "//evil.example": "/", "/\\evil.example": "/", "/audit": "/audit",
	} {
		b := e.browser()
		b.get("/login")
		resp := b.post("/login", url.Values{"username": {"alice"}, "password": {pw}, "next": {next}})
		resp.Body.Close()
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("next=%q redirected to %q, want %q", next, got, want)
		}
	}
}

func TestAdminCreatesUserWhoCanSignIn(t *testing.T) {
	e := newEnv(t)
	e.addUser("root", pw, store.RoleAdmin)
	admin := e.browser()
	admin.signIn("root", pw)
	admin.get("/admin/users")
	resp := admin.post("/admin/users", url.Values{"username": {"carol"}, "role": {"member"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	doc := parse(t, resp)
	generated := strings.TrimSpace(doc.Find(`[data-testid="new-password"] code`).Text())
	if len(generated) < 16 {
		t.Fatalf("generated password not shown: %q", generated)
	}
	carol := e.browser()
	carol.signIn("carol", generated)

	// A taken name is refused in plain words.
	admin.get("/admin/users")
	resp = admin.post("/admin/users", url.Values{"username": {"CAROL"}, "role": {"member"}})
	if text := body(t, resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(text, "is taken") {
		t.Fatalf("duplicate user: %d", resp.StatusCode)
	}
}
