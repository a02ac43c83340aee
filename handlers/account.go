package handlers

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/views/pages"
)

func (s *Server) accountPage(c echo.Context) error {
	u := currentUser(c)
	return render(c, http.StatusOK, pages.Account(s.page(c, "Account", "account"),
		pages.AccountModel{Username: u.Username, Role: string(u.Role)}))
}

// changePassword sets a new password and revokes every other session of the user:
// a cookie copied before the change is worthless after it.
func (s *Server) changePassword(c echo.Context) error {
	u := currentUser(c)
	again := func(msg string) error {
		return render(c, http.StatusUnprocessableEntity, pages.Account(s.page(c, "Account", "account"),
			pages.AccountModel{Username: u.Username, Role: string(u.Role), Error: msg}))
	}
	current, next, confirm := c.FormValue("current"), c.FormValue("new"), c.FormValue("confirm")
	// Someone holding a stolen session guesses the current password here: the
	// account's sign-in throttle applies, and the check runs under the hashing budget.
	ctx := c.Request().Context()
	key := throttleAccount + ":" + u.Username
	wait, err := s.store.ReserveAttempt(ctx, key, accountPolicy, s.cfg.Now())
	if err != nil {
		return err
	}
	if wait > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		return again("Too many wrong passwords. Try again in " + wait.Round(time.Second).String() + ".")
	}
	if err := s.hashes.Verify(ctx, u.PasswordHash, current); err != nil {
		if errors.Is(err, password.ErrBusy) {
			_ = s.store.RefundAttempt(ctx, key)
			return again(errHashBusy)
		}
		return again("Your current password is not right.")
	}
	_ = s.store.ClearThrottle(ctx, key)
	if next != confirm {
		return again("The two new passwords differ.")
	}
	if err := password.CheckStrength(next); err != nil {
		return again("That new password is too weak: " + err.Error() + ".")
	}
	hash, err := s.hashes.Hash(ctx, next)
	if err != nil {
		return err
	}
	if err := s.store.SetPassword(ctx, u.ID, hash); err != nil {
		return err
	}
	u.PasswordHash = hash
	if err := s.startSession(c, u); err != nil {
		return err
	}
	s.audit(c, u, "account.password_change", u.Username, true, nil)
	s.setFlash(c, "ok", "Your password is changed. Other browsers were signed out.")
	return c.Redirect(http.StatusSeeOther, "/account")
}
