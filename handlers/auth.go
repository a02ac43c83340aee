package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/metrics"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

// throttle bounds failed sign-ins in a sliding window, per account and per client
// address. Counts live in the store so several replicas share them.
type throttle struct {
	Window  time.Duration
	PerUser int
	PerIP   int
}

var defaultThrottle = throttle{Window: 15 * time.Minute, PerUser: 10, PerIP: 30}

// errBadCredentials is the one message for a wrong username or a wrong password, so
// the form does not reveal which accounts exist.
const errBadCredentials = "Wrong username or password."

const errThrottled = "Too many failed sign-in attempts. Wait 15 minutes and try again, or ask an administrator."

func (s *Server) loginPage(c echo.Context) error {
	if currentUser(c) != nil {
		return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
	}
	return render(c, http.StatusOK, pages.Login(s.page(c, "Sign in", ""), pages.LoginModel{Next: c.QueryParam("next")}))
}

func (s *Server) login(c echo.Context) error {
	ctx := c.Request().Context()
	username := strings.TrimSpace(c.FormValue("username"))
	pw := c.FormValue("password")
	next := safeNext(c.FormValue("next"))
	ip := c.RealIP()
	fail := func(status int, msg string) error {
		return render(c, status, pages.Login(s.page(c, "Sign in", ""), pages.LoginModel{Username: username, Error: msg, Next: next}))
	}
	if username == "" || pw == "" || len(username) > 128 || len(pw) > 1024 {
		return fail(http.StatusBadRequest, errBadCredentials)
	}

	byUser, byIP, err := s.store.LoginFailures(ctx, username, ip, s.cfg.Now().Add(-s.throttle.Window))
	if err != nil {
		return err
	}
	if byUser >= s.throttle.PerUser || byIP >= s.throttle.PerIP {
		s.audit(c, nil, "login", username, false, map[string]string{"reason": "throttled"})
		s.cfg.Ops.Metrics.SignIn(metrics.SignInThrottled)
		return fail(http.StatusTooManyRequests, errThrottled)
	}

	u, err := s.store.UserByName(ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		password.VerifyNothing(pw) // same time as a wrong password
	case err != nil:
		return err
	default:
		err = password.Verify(u.PasswordHash, pw)
	}
	if err != nil || u.Disabled {
		if rerr := s.store.RecordLoginFailure(ctx, username, ip, s.cfg.Now()); rerr != nil {
			return rerr
		}
		reason := "bad credentials"
		if err == nil {
			reason = "account disabled"
		}
		s.audit(c, nil, "login", username, false, map[string]string{"reason": reason})
		s.cfg.Ops.Metrics.SignIn(metrics.SignInFailure)
		return fail(http.StatusUnauthorized, errBadCredentials)
	}

	if err := s.store.ClearLoginFailures(ctx, username); err != nil {
		return err
	}
	if err := s.startSession(c, u); err != nil {
		return err
	}
	s.audit(c, u, "login", u.Username, true, nil)
	s.cfg.Ops.Metrics.SignIn(metrics.SignInSuccess)
	return c.Redirect(http.StatusSeeOther, next)
}

func (s *Server) logout(c echo.Context) error {
	u := currentUser(c)
	if err := s.endSession(c); err != nil {
		return err
	}
	if u != nil {
		s.audit(c, u, "logout", u.Username, true, nil)
	}
	return c.Redirect(http.StatusSeeOther, "/login")
}

// safeNext keeps post-sign-in redirects on this site: only a local absolute path.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

// audit appends an event. A failure to write the log is logged, not hidden, but does
// not undo what already happened.
func (s *Server) audit(c echo.Context, actor *store.User, kind, target string, ok bool, detail map[string]string) {
	e := &store.Event{
		At: s.cfg.Now(), Kind: kind, OK: ok, Target: target, Detail: detail,
		ClientIP: c.RealIP(), UserAgent: truncate(c.Request().UserAgent(), 256),
	}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Username
	} else if kind == "login" {
		e.ActorName = target
	}
	// The request may be cancelled by now; the record must still be written.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
	defer cancel()
	if err := s.store.AppendEvent(ctx, e); err != nil {
		s.log.Error("audit event not written", "kind", kind, "err", err)
	}
}
