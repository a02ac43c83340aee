package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

func (s *Server) keysPage(c echo.Context) error {
	return render(c, http.StatusOK, pages.Coming(s.page(c, "SSH keys", "keys"), pages.ComingModel{
		Heading: "SSH keys are coming",
		Body:    "Here you will register the public keys you log in with, upload or generate private keys that shellgate keeps encrypted, and see their SHA256 fingerprints.",
	}))
}

// auditPage lists recent events: everything for admins, one's own for members.
func (s *Server) auditPage(c echo.Context) error {
	u := currentUser(c)
	f := store.EventFilter{Limit: 100}
	if !u.IsAdmin() {
		f.ActorID = u.ID
	}
	events, err := s.store.ListEvents(c.Request().Context(), f)
	if err != nil {
		return err
	}
	m := pages.AuditModel{AllUsers: u.IsAdmin()}
	for _, e := range events {
		m.Rows = append(m.Rows, pages.AuditRow{
			At: e.At, Actor: e.ActorName, Kind: e.Kind, Target: e.Target, OK: e.OK,
			ClientIP: e.ClientIP, Summary: e.Detail["reason"],
		})
	}
	return render(c, http.StatusOK, pages.Audit(s.page(c, "Audit", "audit"), m))
}
