package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
)

// Sign-in throttling slows guessing without locking anyone out (OWASP's "device
// cookies" scheme). A sign-in from a browser that has no valid device cookie for the
// account counts against two keys: the account and the client address (as decided by
// --trusted-proxies). A browser that signed in to the account before carries a signed
// device cookie and counts against that device alone, so failures elsewhere — an
// attacker guessing, a script behind the same NAT — do not keep it out. Each key lets
// a few attempts through freely, then waits 1 s, 2 s, 4 s … at most a minute between
// attempts; nothing is ever locked for longer than that.

// Kinds of throttle keys, the prefix of each key.
const (
	throttleAccount = "account"
	throttleAddress = "address"
	throttleDevice  = "device"
	throttleSSHLog  = "sshlog"
)

// Throttle policies. A key is reset after 15 quiet minutes.
var (
	accountPolicy = store.ThrottlePolicy{Budget: 5, Base: time.Second, Max: time.Minute, Reset: 15 * time.Minute}
	addressPolicy = store.ThrottlePolicy{Budget: 30, Base: time.Second, Max: time.Minute, Reset: 15 * time.Minute}
	devicePolicy  = store.ThrottlePolicy{Budget: 10, Base: time.Second, Max: time.Minute, Reset: 15 * time.Minute}
	// One read of a stack's servers' logs per minute: each read opens an SSH
	// connection to every server of the stack as the gateway.
	sshLogPolicy = store.ThrottlePolicy{Budget: 0, Base: time.Minute, Max: time.Minute, Reset: time.Minute}
)

type throttleKey struct {
	kind, key string
	policy    store.ThrottlePolicy
}

// throttleKeys are the keys a sign-in for username from this request counts against.
func (s *Server) throttleKeys(c echo.Context, username string) []throttleKey {
	if dev := s.deviceID(c, username); dev != "" {
		return []throttleKey{{throttleDevice, throttleDevice + ":" + username + "/" + dev, devicePolicy}}
	}
	// The account first: guesses at one account that its throttle refuses never
	// reach the address's count, so people sharing the attacker's address (a NAT, a
	// proxy) are not slowed by them. An address refusal takes the account's count back.
	return []throttleKey{
		{throttleAccount, throttleAccount + ":" + username, accountPolicy},
		{throttleAddress, throttleAddress + ":" + c.RealIP(), addressPolicy},
	}
}

// deviceCookie names the cookie that marks a browser which signed in before.
func (s *Server) deviceCookie() string {
	if s.secure {
		return "__Host-sg_device"
	}
	return "sg_device"
}

// deviceLifetime is how long a browser stays known after its last sign-in.
const deviceLifetime = 365 * 24 * time.Hour

// deviceMAC signs a device cookie's username and random id.
func (s *Server) deviceMAC(username, id string) string {
	m := hmac.New(sha256.New, s.deviceKey)
	m.Write([]byte("device\x00" + username + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// deviceID returns the id of this browser's device cookie when it is valid for
// username, or "".
func (s *Server) deviceID(c echo.Context, username string) string {
	ck, err := c.Cookie(s.deviceCookie())
	if err != nil {
		return ""
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 3 {
		return ""
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || string(name) != username || len(parts[1]) < 22 {
		return ""
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.deviceMAC(username, parts[1]))) {
		return ""
	}
	return parts[1]
}

// setDeviceCookie marks this browser as one that signed in to username: its id is
// kept when it already was, so the device's own throttle carries over.
func (s *Server) setDeviceCookie(c echo.Context, username string) {
	id := s.deviceID(c, username)
	if id == "" {
		id = randomToken(18)
	}
	http.SetCookie(c.Response(), &http.Cookie{
		Name:  s.deviceCookie(),
		Value: base64.RawURLEncoding.EncodeToString([]byte(username)) + "." + id + "." + s.deviceMAC(username, id),
		Path:  "/", MaxAge: int(deviceLifetime.Seconds()),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode,
	})
}
