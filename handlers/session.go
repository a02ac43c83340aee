package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views"
)

// The cookie carries only a random token; the session row, keyed by the token's hash,
// is the truth. Deleting the row (sign-out, password change, disable) revokes the
// cookie wherever it is, including a copy an attacker replays.
func (s *Server) sessionCookie() string {
	if s.secure {
		return "__Host-sg_session"
	}
	return "sg_session"
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// loadSession finds the signed-in user, if any. A cookie whose row is gone, expired,
// idle for longer than the idle timeout, or whose user is disabled counts as signed out.
func (s *Server) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, _ := s.cookies.Get(c.Request(), s.sessionCookie())
		token, _ := sess.Values["t"].(string)
		if token == "" {
			return next(c)
		}
		now := s.cfg.Now()
		ws, u, err := s.store.WebSessionByID(c.Request().Context(), hashToken(token), now)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return next(c)
		case err != nil:
			return err
		case u.Disabled:
			// Belt and braces: disabling deletes sessions, but a row could race it.
			_ = s.store.DeleteWebSession(c.Request().Context(), ws.ID)
			return next(c)
		case now.Sub(ws.LastSeenAt) > s.cfg.SessionIdleTimeout:
			// Left alone too long (a browser forgotten on a shared machine, a cookie
			// copied long ago): the session ends, whatever its absolute lifetime.
			_ = s.store.DeleteWebSession(c.Request().Context(), ws.ID)
			return next(c)
		}
		if now.Sub(ws.LastSeenAt) > minuteish {
			_ = s.store.TouchWebSession(c.Request().Context(), ws.ID, now)
		}
		c.Set(ctxUser, u)
		c.Set(ctxSession, ws)
		return next(c)
	}
}

const minuteish = time.Minute

// keepAliveEvery is how often an open terminal marks its sign-in as active: well
// inside the idle timeout.
func keepAliveEvery(idle time.Duration) time.Duration {
	return min(max(idle/4, time.Second), 5*time.Minute)
}

// keepSessionAlive marks the web session id active every interval until the returned
// stop is called (the terminal socket closed).
func (s *Server) keepSessionAlive(id string, every time.Duration) (stop func()) {
	if id == "" {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := s.store.TouchWebSession(ctx, id, s.cfg.Now()); err != nil {
					s.log.Warn("terminal could not keep its sign-in active", "err", err)
				}
				cancel()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// currentUser is the signed-in user, or nil.
func currentUser(c echo.Context) *store.User {
	u, _ := c.Get(ctxUser).(*store.User)
	return u
}

// sessionID is the server-side id of the signed-in session, or "".
func sessionID(c echo.Context) string {
	if ws, ok := c.Get(ctxSession).(*store.WebSession); ok {
		return ws.ID
	}
	return ""
}

func (s *Server) requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if currentUser(c) == nil {
			if c.Request().Method == http.MethodGet && !isAPI(c) {
				return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
			}
			return echo.NewHTTPError(http.StatusUnauthorized, "Sign in first.")
		}
		return next(c)
	}
}

func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if u := currentUser(c); u == nil || !u.IsAdmin() {
			return echo.NewHTTPError(http.StatusForbidden, "Only administrators can do that.")
		}
		return next(c)
	}
}

// startSession signs u in on this browser with a fresh token: any token the browser
// held before (possibly planted by an attacker) is discarded, so sessions cannot be fixed.
func (s *Server) startSession(c echo.Context, u *store.User) error {
	sess, _ := s.cookies.Get(c.Request(), s.sessionCookie())
	if old, _ := sess.Values["t"].(string); old != "" {
		_ = s.store.DeleteWebSession(c.Request().Context(), hashToken(old))
	}
	token := randomToken(32)
	now := s.cfg.Now()
	ws := &store.WebSession{
		ID: hashToken(token), UserID: u.ID,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL),
		ClientIP: c.RealIP(), UserAgent: truncate(c.Request().UserAgent(), 256),
	}
	if err := s.store.CreateWebSession(c.Request().Context(), ws); err != nil {
		return err
	}
	sess.Values = map[any]any{"t": token}
	if err := sess.Save(c.Request(), c.Response()); err != nil {
		return err
	}
	c.Set(ctxUser, u)
	c.Set(ctxSession, ws)
	return nil
}

// endSession signs this browser out: the row is deleted and the cookie cleared.
func (s *Server) endSession(c echo.Context) error {
	if id := sessionID(c); id != "" {
		if err := s.store.DeleteWebSession(c.Request().Context(), id); err != nil {
			return err
		}
	}
	sess, _ := s.cookies.Get(c.Request(), s.sessionCookie())
	sess.Values = map[any]any{}
	sess.Options.MaxAge = -1
	return sess.Save(c.Request(), c.Response())
}

// page is the view model every page's layout needs.
func (s *Server) page(c echo.Context, title, nav string) views.Page {
	p := views.Page{Title: title, Nav: nav, Assets: s.assets}
	p.CSRF, _ = c.Get(ctxCSRF).(string)
	if u := currentUser(c); u != nil {
		p.Viewer = &views.Viewer{Username: u.Username, IsAdmin: u.IsAdmin()}
	}
	if f := s.popFlash(c); f != nil {
		p.Flash = f
	}
	return p
}

// Flash messages ride in a short-lived cookie of their own so a redirect after a POST
// can say what happened. They never carry secrets.
const flashCookie = "sg_flash"

func (s *Server) setFlash(c echo.Context, kind, msg string) {
	sess, _ := s.cookies.Get(c.Request(), flashCookie)
	sess.Options.MaxAge = 60
	sess.Values = map[any]any{"k": kind, "m": msg}
	_ = sess.Save(c.Request(), c.Response())
}

func (s *Server) popFlash(c echo.Context) *views.Flash {
	if _, err := c.Cookie(flashCookie); err != nil {
		return nil
	}
	sess, _ := s.cookies.Get(c.Request(), flashCookie)
	kind, _ := sess.Values["k"].(string)
	msg, _ := sess.Values["m"].(string)
	sess.Options.MaxAge = -1
	_ = sess.Save(c.Request(), c.Response())
	if msg == "" {
		return nil
	}
	return &views.Flash{Kind: kind, Message: msg}
}

func isAPI(c echo.Context) bool {
	return strings.HasPrefix(c.Request().URL.Path, "/api/") ||
		strings.Contains(c.Request().Header.Get("Accept"), "application/json")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
