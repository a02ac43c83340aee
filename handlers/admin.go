package handlers

import (
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

// ValidUsername is the shape of a dashboard username.
var ValidUsername = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,64}$`)

func (s *Server) usersModel(c echo.Context) (pages.UsersModel, error) {
	users, err := s.store.ListUsers(c.Request().Context())
	if err != nil {
		return pages.UsersModel{}, err
	}
	me := currentUser(c)
	m := pages.UsersModel{}
	for _, u := range users {
		m.Users = append(m.Users, pages.UserRow{
			ID: u.ID, Username: u.Username, Role: string(u.Role), Disabled: u.Disabled,
			CreatedAt: u.CreatedAt, IsSelf: u.ID == me.ID,
		})
	}
	now := s.cfg.Now()
	throttles, err := s.store.ListThrottles(c.Request().Context(), now.Add(-accountPolicy.Reset))
	if err != nil {
		return pages.UsersModel{}, err
	}
	for _, t := range throttles {
		kind, subject, _ := strings.Cut(t.Key, ":")
		switch kind {
		case throttleAccount, throttleAddress:
		case throttleDevice:
			user, id, _ := strings.Cut(subject, "/")
			subject = user + "'s browser " + id[:min(8, len(id))]
		default:
			continue // not a sign-in throttle
		}
		wait := "—"
		if d := t.NextAt.Sub(now); d > 0 {
			wait = d.Round(time.Second).String()
		}
		m.Throttles = append(m.Throttles, pages.ThrottleRow{Key: t.Key, Kind: kind, Subject: subject,
			Failures: t.Failures, Until: t.NextAt, WaitText: wait})
	}
	return m, nil
}

// clearThrottle lets the next sign-in attempt of an account, address or browser
// through at once (someone locked out of patience by an attack asks an admin).
func (s *Server) clearThrottle(c echo.Context) error {
	key := c.FormValue("key")
	kind, _, _ := strings.Cut(key, ":")
	if kind != throttleAccount && kind != throttleAddress && kind != throttleDevice {
		return echo.NewHTTPError(http.StatusBadRequest, "That is not a sign-in throttle.")
	}
	if err := s.store.ClearThrottle(c.Request().Context(), key); err != nil {
		return err
	}
	s.audit(c, currentUser(c), "throttle.clear", key, true, nil)
	s.setFlash(c, "ok", "Throttle cleared.")
	return c.Redirect(http.StatusSeeOther, "/admin/users")
}

func (s *Server) usersPage(c echo.Context) error {
	m, err := s.usersModel(c)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, pages.Users(s.page(c, "Users", "admin"), m))
}

// createUser adds an account with a generated password, shown to the admin once.
func (s *Server) createUser(c echo.Context) error {
	username := strings.TrimSpace(c.FormValue("username"))
	role := store.Role(c.FormValue("role"))
	again := func(msg string) error {
		m, err := s.usersModel(c)
		if err != nil {
			return err
		}
		m.FormUsername, m.FormRole, m.FormError = username, string(role), msg
		return render(c, http.StatusUnprocessableEntity, pages.Users(s.page(c, "Users", "admin"), m))
	}
	if !ValidUsername.MatchString(username) {
		return again("A username has 1 to 64 letters, digits, dots, dashes or underscores.")
	}
	if !role.Valid() {
		return again("Choose a role: member or admin.")
	}
	pw := password.Generate()
	hash, err := s.hashes.Hash(c.Request().Context(), pw)
	if err != nil {
		return err
	}
	u := &store.User{Username: username, PasswordHash: hash, Role: role}
	if err := s.store.CreateUser(c.Request().Context(), u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return again("The username " + strings.ToLower(username) + " is taken.")
		}
		return err
	}
	s.audit(c, currentUser(c), "user.create", u.Username, true, map[string]string{"role": string(role)})
	m, err := s.usersModel(c)
	if err != nil {
		return err
	}
	m.NewPasswordFor, m.NewPassword = u.Username, pw
	return render(c, http.StatusOK, pages.Users(s.page(c, "Users", "admin"), m))
}

// targetUser loads the user named by :id for an admin action on someone else.
func (s *Server) targetUser(c echo.Context) (*store.User, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusNotFound)
	}
	u, err := s.store.UserByID(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, echo.NewHTTPError(http.StatusNotFound)
	}
	if err != nil {
		return nil, err
	}
	if u.ID == currentUser(c).ID {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "Use the Account page to change your own account.")
	}
	return u, nil
}

// setUserDisabled disables or enables an account. Disabling ends every session of
// that user at once: their next request finds no session.
func (s *Server) setUserDisabled(disabled bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		u, err := s.targetUser(c)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		if err := s.store.SetDisabled(ctx, u.ID, disabled); err != nil {
			return err
		}
		kind, msg := "user.enable", u.Username+" can sign in again."
		if disabled {
			kind, msg = "user.disable", u.Username+" is disabled and signed out everywhere."
		}
		s.audit(c, currentUser(c), kind, u.Username, true, nil)
		s.setFlash(c, "ok", msg)
		return c.Redirect(http.StatusSeeOther, "/admin/users")
	}
}

// resetPassword gives a user a new generated password, shown once, and ends their sessions.
func (s *Server) resetPassword(c echo.Context) error {
	u, err := s.targetUser(c)
	if err != nil {
		return err
	}
	pw := password.Generate()
	hash, err := s.hashes.Hash(c.Request().Context(), pw)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.store.SetPassword(ctx, u.ID, hash); err != nil {
		return err
	}
	s.audit(c, currentUser(c), "user.password_reset", u.Username, true, nil)
	m, err := s.usersModel(c)
	if err != nil {
		return err
	}
	m.NewPasswordFor, m.NewPassword = u.Username, pw
	return render(c, http.StatusOK, pages.Users(s.page(c, "Users", "admin"), m))
}
