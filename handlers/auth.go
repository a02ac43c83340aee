package handlers

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/metrics"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

// errBadCredentials is the one message for a wrong username or a wrong password, so
// the form does not reveal which accounts exist.
const errBadCredentials = "Wrong username or password."

// errHashBusy answers a sign-in that found no room to check its password in time.
const errHashBusy = "shellgate is checking many sign-ins right now. Try again in a moment."

func (s *Server) loginPage(c echo.Context) error {
	if currentUser(c) != nil {
		return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
	}
	return render(c, http.StatusOK, pages.Login(s.page(c, "Sign in", ""), pages.LoginModel{Next: c.QueryParam("next")}))
}

// login checks a password the way the README's security model says: every throttle
// that applies is reserved (the attempt counted) before the password is checked, so
// concurrent guesses cannot get past the count; the check runs under a bounded
// memory budget; a browser that signed in to this account before is throttled on its
// own, so an attacker elsewhere cannot keep the right person out.
func (s *Server) login(c echo.Context) error {
	ctx := c.Request().Context()
	username := strings.TrimSpace(c.FormValue("username"))
	pw := c.FormValue("password")
	next := safeNext(c.FormValue("next"))
	fail := func(status int, msg string) error {
		return render(c, status, pages.Login(s.page(c, "Sign in", ""), pages.LoginModel{Username: username, Error: msg, Next: next}))
	}
	if username == "" || pw == "" || len(username) > 128 || len(pw) > 1024 {
		return fail(http.StatusBadRequest, errBadCredentials)
	}

	keys := s.throttleKeys(c, strings.ToLower(username))
	for i, k := range keys {
		wait, err := s.store.ReserveAttempt(ctx, k.key, k.policy, s.cfg.Now())
		if err != nil {
			return err
		}
		if wait > 0 {
			for _, done := range keys[:i] { // no password is checked: nothing counts
				_ = s.store.RefundAttempt(ctx, done.key)
			}
			secs := int((wait + time.Second - 1) / time.Second)
			s.audit(c, nil, "login", username, false, map[string]string{"reason": "throttled", "throttle": k.kind, "wait_s": strconv.Itoa(secs)})
			s.cfg.Ops.Metrics.SignIn(metrics.SignInThrottled)
			c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
			return fail(http.StatusTooManyRequests, "Too many failed sign-in attempts. Try again in "+plural(secs, "second")+".")
		}
	}

	u, err := s.store.UserByName(ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = nil
		err = s.hashes.VerifyNothing(ctx, pw) // same time as a wrong password
		if err == nil {
			err = password.ErrMismatch
		}
	case err != nil:
		return err
	default:
		err = s.hashes.Verify(ctx, u.PasswordHash, pw)
	}
	if errors.Is(err, password.ErrBusy) {
		for _, k := range keys { // the password was not checked: the attempt does not count
			_ = s.store.RefundAttempt(ctx, k.key)
		}
		c.Response().Header().Set("Retry-After", "2")
		return fail(http.StatusServiceUnavailable, errHashBusy)
	}
	if err != nil || u.Disabled {
		reason := "bad credentials"
		if err == nil {
			reason = "account disabled"
		}
		s.audit(c, nil, "login", username, false, map[string]string{"reason": reason})
		s.cfg.Ops.Metrics.SignIn(metrics.SignInFailure)
		return fail(http.StatusUnauthorized, errBadCredentials)
	}

	for _, k := range keys {
		if k.kind == throttleAddress {
			// Others share this address (a NAT, a proxy): a success takes back only
			// its own count.
			err = s.store.RefundAttempt(ctx, k.key)
		} else {
			err = s.store.ClearThrottle(ctx, k.key)
		}
		if err != nil {
			return err
		}
	}
	if password.NeedsRehash(u.PasswordHash) {
		if h, err := s.hashes.Hash(ctx, pw); err == nil {
			if err := s.store.UpgradePasswordHash(ctx, u.ID, u.PasswordHash, h); err != nil {
				s.log.Warn("password hash not upgraded", "user", u.Username, "err", err)
			}
		}
	}
	if err := s.startSession(c, u); err != nil {
		return err
	}
	s.setDeviceCookie(c, u.Username)
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
