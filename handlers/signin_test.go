package handlers_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/store"
)

// clock is a settable clock for the handlers' Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// withClock makes the server use clk.
func withClock(clk *clock) func(*handlers.Config) {
	return func(c *handlers.Config) { c.Now = clk.Now }
}

// tryLogin posts a sign-in and returns the status and the Retry-After seconds (0 if none).
func tryLogin(t *testing.T, b *browser, user, password string, headers ...string) (int, int) {
	t.Helper()
	resp := b.post("/login", url.Values{"username": {user}, "password": {password}}, headers...)
	resp.Body.Close()
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, ra
}

// knownDevice signs user in on a new browser and out again: the browser keeps its
// device cookie, as a person's own laptop does.
func knownDevice(e *env, user string) *browser {
	b := e.browser()
	b.signIn(user, pw)
	b.post("/logout", nil).Body.Close()
	b.get("/login")
	return b
}

// guess makes n wrong sign-ins for user from b as a patient attacker: whenever the
// throttle says wait, the clock is moved on by exactly that wait. It returns the
// waits it was told, in order.
func guess(t *testing.T, clk *clock, b *browser, user string, n int) []int {
	t.Helper()
	var waits []int
	for i := 0; i < n; {
		status, ra := tryLogin(t, b, user, fmt.Sprintf("wrong guess %d", i))
		switch status {
		case http.StatusUnauthorized:
			i++
		case http.StatusTooManyRequests:
			if ra < 1 {
				t.Fatalf("throttled without a Retry-After")
			}
			waits = append(waits, ra)
			clk.Advance(time.Duration(ra) * time.Second)
		default:
			t.Fatalf("guess %d: status %d", i, status)
		}
	}
	return waits
}

// TestKnownDeviceSignsInDuringGuessingAttack: an attacker makes 50 wrong guesses at
// admin's password from one address (the throttle slows each one down). The real
// admin, on the browser they signed in with before, types the right password and is
// signed in at once: the attacker's failures do not count against their device.
func TestKnownDeviceSignsInDuringGuessingAttack(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("admin", pw, store.RoleAdmin)
	laptop := knownDevice(e, "admin")

	attacker := e.browser()
	attacker.get("/login")
	guess(t, clk, attacker, "admin", 50)
	if status, _ := tryLogin(t, attacker, "admin", "one more guess"); status != http.StatusTooManyRequests {
		t.Fatalf("the attacker's next guess got %d, want 429 (the account is being slowed)", status)
	}

	if status, ra := tryLogin(t, laptop, "admin", pw); status != http.StatusSeeOther {
		t.Fatalf("the admin's own browser got %d (Retry-After %d), want signed in", status, ra)
	}
}

// TestFreshBrowserIsSlowedNeverLocked: the same 50-guess attack; now the admin is on a
// browser that never signed in (no device cookie). Guessing is slowed — the waits
// double, 1 s, 2 s, 4 s … up to a minute — but never locked: the right password gets
// through after at most one minute's wait, not the 15-minute lock of before.
func TestFreshBrowserIsSlowedNeverLocked(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("admin", pw, store.RoleAdmin)

	attacker := e.browser()
	attacker.get("/login")
	waits := guess(t, clk, attacker, "admin", 50)
	// The first five guesses are free, then 1, 2, 4, 8, 16, 32, 60, 60 … seconds.
	want := []int{1, 2, 4, 8, 16, 32, 60}
	if len(waits) < len(want) {
		t.Fatalf("waits %v: want at least %v", waits, want)
	}
	for i, w := range want {
		if waits[i] != w {
			t.Fatalf("waits %v: want them to start %v", waits, want)
		}
	}
	total := 0
	for _, w := range waits {
		if w > 60 {
			t.Fatalf("a wait of %d s: the cap is one minute", w)
		}
		total += w
	}
	t.Logf("50 guesses cost the attacker %d s of waiting", total)

	fresh := e.browser()
	fresh.get("/login")
	status, ra := tryLogin(t, fresh, "admin", pw)
	if status != http.StatusTooManyRequests || ra < 1 || ra > 60 {
		t.Fatalf("fresh browser right after the attack: %d, Retry-After %d; want 429 with a wait of at most 60 s", status, ra)
	}
	clk.Advance(time.Duration(ra) * time.Second)
	if status, _ := tryLogin(t, fresh, "admin", pw); status != http.StatusSeeOther {
		t.Fatalf("after waiting the %d s it was told: %d, want signed in", ra, status)
	}
	events, _ := e.store.ListEvents(context.Background(), store.EventFilter{Kind: "login"})
	throttled := 0
	for _, ev := range events {
		if ev.Detail["reason"] == "throttled" {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("throttled attempts are not in the audit log")
	}
}

// TestAddressFailuresDoNotBlockOtherAccountsKnownDevice: 100 failed sign-ins from one
// address, sprayed over many account names (one attacker behind the office NAT, or a
// broken script), must not stop bob, behind the same address, from signing in with the
// right password on his own browser. A browser he never used is slowed by the
// address's throttle — which shows the throttle is real.
func TestAddressFailuresDoNotBlockOtherAccountsKnownDevice(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("bob", pw, store.RoleMember)
	bobsLaptop := knownDevice(e, "bob")

	attacker := e.browser()
	attacker.get("/login")
	for i := range 100 {
		tryLogin(t, attacker, fmt.Sprintf("user%d", i), "wrong password")
	}
	fresh := e.browser()
	fresh.get("/login")
	if status, _ := tryLogin(t, fresh, "bob", pw); status != http.StatusTooManyRequests {
		t.Fatalf("a fresh browser from the sprayed address got %d, want 429", status)
	}
	if status, ra := tryLogin(t, bobsLaptop, "bob", pw); status != http.StatusSeeOther {
		t.Fatalf("bob's own browser got %d (Retry-After %d), want signed in", status, ra)
	}
}

// TestConcurrentWrongPasswordsReservedBeforeHashing: 50 wrong passwords for one account
// sent at once (issue 12: 24 concurrent attempts were all hashed, memory went from 84
// MiB to 1.5 GiB, because the failure count was read before the slow hash and written
// after it). The attempt is now reserved before the hash, so at most 10 are hashed,
// and the hashes that do run stay within the hashing memory budget.
func TestConcurrentWrongPasswordsReservedBeforeHashing(t *testing.T) {
	limiter := password.NewLimiter(4 * 19 * 1024)
	e := newEnv(t, func(c *handlers.Config) { c.Passwords = limiter })
	e.addUser("admin", pw, store.RoleAdmin)
	b := e.browser()
	b.get("/login")

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := tryLogin(t, b, "admin", fmt.Sprintf("wrong password %d", i))
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled

	if runs := limiter.Runs(); runs > 10 || runs < 1 {
		t.Fatalf("%d passwords hashed for 50 concurrent attempts (statuses %v), want 1 to 10", runs, statuses)
	}
	// 503 is the hashing budget's own refusal when a hash waited too long for room
	// (under the race detector hashing is slow enough for that).
	if statuses[http.StatusUnauthorized]+statuses[http.StatusTooManyRequests]+statuses[http.StatusServiceUnavailable] != 50 {
		t.Fatalf("statuses %v: want only 401, 429 and 503", statuses)
	}
	if limiter.Peak() > limiter.Budget() {
		t.Fatalf("hashes held %d KiB at once, over the budget of %d KiB", limiter.Peak(), limiter.Budget())
	}
	growth := int64(peak.Load()) - int64(base.HeapAlloc)
	// Finished hashes are garbage until the collector runs (GOGC lets the heap reach
	// twice the live size), so the bound is twice the hashing budget plus the
	// requests themselves. Before the fix, 50 hashes of 64 MiB ran at once: 3.2 GiB.
	const bound = 2*4*19<<20 + 64<<20
	t.Logf("hashed %d, statuses %v, peak heap growth %.1f MiB", limiter.Runs(), statuses, float64(growth)/(1<<20))
	if growth > bound {
		t.Fatalf("peak heap grew by %.1f MiB, want under %.0f MiB", float64(growth)/(1<<20), float64(bound)/(1<<20))
	}
}

// TestTrustedProxyDecidesWhichAddressCounts: behind a configured proxy, the address in
// X-Forwarded-For is the one throttled, so one client's failures do not slow every
// other client of the proxy; without the setting, the header is ignored (a client
// cannot dodge its throttle by inventing addresses).
func TestTrustedProxyDecidesWhichAddressCounts(t *testing.T) {
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			clk := newClock()
			e := newEnv(t, withClock(clk), func(c *handlers.Config) {
				if trusted {
					c.TrustedProxies = append(c.TrustedProxies, loopback)
				}
			})
			b := e.browser()
			b.get("/login")
			for i := range 40 {
				tryLogin(t, b, fmt.Sprintf("user%d", i), "wrong password", "X-Forwarded-For", "203.0.113.1")
			}
			e.addUser("carol", pw, store.RoleMember)
			status, _ := tryLogin(t, b, "carol", pw, "X-Forwarded-For", "203.0.113.2")
			if trusted && status != http.StatusSeeOther {
				t.Fatalf("another client of the trusted proxy got %d, want signed in", status)
			}
			if !trusted && status != http.StatusTooManyRequests {
				t.Fatalf("an invented X-Forwarded-For dodged the address throttle: %d", status)
			}
		})
	}
}

// TestAdminSeesAndClearsThrottles: after guesses against alice, an admin sees the
// throttles on the users page and clears the account's; alice's next attempt, from a
// fresh browser, goes through at once.
func TestAdminSeesAndClearsThrottles(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("root", pw, store.RoleAdmin)
	e.addUser("alice", pw, store.RoleMember)
	admin := knownDevice(e, "root")
	admin.signIn("root", pw)

	attacker := e.browser()
	attacker.get("/login")
	guess(t, clk, attacker, "alice", 8)

	_, doc := admin.get("/admin/users")
	row := doc.Find(`[data-testid="throttles"] tr[data-throttle="account:alice"]`)
	if row.Length() != 1 || !strings.Contains(row.Text(), "alice") {
		t.Fatalf("account throttle not listed: %q", doc.Find(`[data-testid="throttles"]`).Text())
	}
	if doc.Find(`[data-testid="throttles"] tr[data-throttle="address:127.0.0.1"]`).Length() != 1 {
		t.Fatal("address throttle not listed")
	}
	resp := admin.post("/admin/throttles/clear", url.Values{"key": {"account:alice"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("clear: %d", resp.StatusCode)
	}
	_, doc = admin.get("/admin/users")
	if doc.Find(`tr[data-throttle="account:alice"]`).Length() != 0 {
		t.Fatal("cleared throttle still listed")
	}
	fresh := e.browser()
	fresh.get("/login")
	if status, _ := tryLogin(t, fresh, "alice", pw); status != http.StatusSeeOther {
		t.Fatalf("alice after the clear: %d, want signed in", status)
	}
	// Only admins clear throttles.
	resp = fresh.post("/admin/throttles/clear", url.Values{"key": {"address:127.0.0.1"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a member cleared a throttle: %d", resp.StatusCode)
	}
}

// TestLegacyHashUpgradedAtSignIn: an account whose hash was made with the old 64 MiB
// parameters signs in, and its stored hash is replaced by one with OWASP's 19 MiB
// parameters, without ending the account's other sessions.
func TestLegacyHashUpgradedAtSignIn(t *testing.T) {
	e := newEnv(t)
	u := e.addUser("dave", pw, store.RoleMember)
	b := e.browser()
	b.signIn("dave", pw)
	if err := e.store.UpgradePasswordHash(context.Background(), u.ID, u.PasswordHash, legacyHash(pw)); err != nil {
		t.Fatal(err)
	}
	other := e.browser()
	other.signIn("dave", pw)
	got, _ := e.store.UserByName(context.Background(), "dave")
	if password.NeedsRehash(got.PasswordHash) || !strings.Contains(got.PasswordHash, "m=19456,t=2,p=1") {
		t.Fatalf("hash not upgraded: %s", got.PasswordHash)
	}
	if resp, _ := b.get("/stacks"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the upgrade ended another session: %d", resp.StatusCode)
	}
}

// legacyHash is pw hashed the way shellgate did before: 64 MiB, 3 passes, 2 lanes.
func legacyHash(pw string) string {
	salt := []byte("0123456789abcdef")
	sum := argon2.IDKey([]byte(pw), salt, 3, 64*1024, 2, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=2$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// TestIdleSessionRefused: a browser signed in and then left alone (a shared machine,
// a cookie copied from a backup or a proxy log) for 11 hours — inside the 12-hour
// absolute lifetime — is signed out by the 2-hour idle timeout. A session in use
// stays signed in past 2 hours, up to the absolute lifetime.
func TestIdleSessionRefused(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("alice", pw, store.RoleMember)

	idle := e.browser()
	idle.signIn("alice", pw)
	busy := e.browser()
	busy.signIn("alice", pw)
	for range 10 { // busy is used every 65 minutes, for 10 h 50 min
		clk.Advance(65 * time.Minute)
		if resp, _ := busy.get("/stacks"); resp.StatusCode != http.StatusOK {
			t.Fatalf("a session in use was signed out after %v: %d", 65*time.Minute, resp.StatusCode)
		}
	}
	clk.Advance(10 * time.Minute) // 11 hours since idle's last request
	resp, _ := idle.get("/stacks")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("a session idle for 11 hours got %d, want a redirect to sign-in", resp.StatusCode)
	}
	clk.Advance(time.Hour) // past the absolute lifetime: even the busy one ends
	if resp, _ := busy.get("/stacks"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a session past its 12-hour lifetime got %d", resp.StatusCode)
	}
}

// TestPasswordChangeFormIsThrottled: someone holding a stolen session cookie guesses
// the account's current password on the password-change form, where no sign-in
// throttle used to apply. The account's throttle slows them the same way.
func TestPasswordChangeFormIsThrottled(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("alice", pw, store.RoleMember)
	thief := e.browser()
	thief.signIn("alice", pw)
	refused := 0
	for i := range 20 {
		resp := thief.post("/account/password", url.Values{"current": {fmt.Sprintf("guess %d", i)}, "new": {"a new long password"}, "confirm": {"a new long password"}})
		resp.Body.Close()
		if resp.Header.Get("Retry-After") != "" {
			refused++
		}
	}
	if refused < 10 {
		t.Fatalf("only %d of 20 rapid guesses were slowed", refused)
	}
	clk.Advance(time.Minute)
	resp := thief.post("/account/password", url.Values{"current": {pw}, "new": {"a new long password"}, "confirm": {"a new long password"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the right current password after the wait: %d", resp.StatusCode)
	}
}

// TestSignInBusyWhenHashingBudgetFull: while the hashing budget is taken (a burst of
// sign-ins on a small server), a further sign-in waits briefly and is then answered
// 503 with Retry-After instead of allocating another hash; the attempt is not
// counted against the account.
func TestSignInBusyWhenHashingBudgetFull(t *testing.T) {
	limiter := password.NewLimiter(19 * 1024)
	limiter.Wait = 50 * time.Millisecond
	e := newEnv(t, func(c *handlers.Config) { c.Passwords = limiter })
	e.addUser("alice", pw, store.RoleMember)

	// Hold the whole budget with a slow hash (64 MiB, 4 passes: most of a second).
	slow := slowHash(pw)
	held := make(chan error, 1)
	go func() { held <- limiter.Verify(context.Background(), slow, pw) }()
	deadline := time.Now().Add(10 * time.Second)
	for limiter.Peak() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow hash never started")
		}
		time.Sleep(time.Millisecond)
	}
	b := e.browser()
	b.get("/login")
	status, ra := tryLogin(t, b, "alice", pw)
	if err := <-held; err != nil {
		t.Fatalf("slow hash: %v", err)
	}
	if status != http.StatusServiceUnavailable || ra < 1 {
		t.Fatalf("sign-in with the budget full: %d, Retry-After %d; want 503 with Retry-After", status, ra)
	}
	if status, _ := tryLogin(t, b, "alice", pw); status != http.StatusSeeOther {
		t.Fatalf("sign-in once the budget is free: %d", status)
	}
}

// slowHash is pw hashed with parameters slow enough to hold the budget for most of a second.
func slowHash(pw string) string {
	salt := []byte("0123456789abcdef")
	sum := argon2.IDKey([]byte(pw), salt, 4, 64*1024, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=65536,t=4,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// TestGuessingOneAccountDoesNotSlowItsAddress: an attacker behind the office NAT
// hammers admin's password. The account's throttle refuses most guesses; those must not
// count against the shared address, or every colleague on a fresh browser would be
// slowed too (issue 22: one address could lock everyone out).
func TestGuessingOneAccountDoesNotSlowItsAddress(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("admin", pw, store.RoleAdmin)
	e.addUser("carol", pw, store.RoleMember)
	attacker := e.browser()
	attacker.get("/login")
	for i := range 200 {
		tryLogin(t, attacker, "admin", fmt.Sprintf("guess %d", i))
	}
	colleague := e.browser()
	colleague.get("/login")
	if status, ra := tryLogin(t, colleague, "carol", pw); status != http.StatusSeeOther {
		t.Fatalf("a colleague behind the same address got %d (Retry-After %d), want signed in", status, ra)
	}
}
