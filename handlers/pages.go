package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

func (s *Server) stacksPage(c echo.Context) error {
	return render(c, http.StatusOK, pages.Coming(s.page(c, "Stacks", "stacks"), pages.ComingModel{
		Heading: "No stacks yet",
		Body:    "A stack is an environment of an application — production, staging — with its servers. Stacks arrive in the next release.",
		Steps: []string{
			"Register your SSH key under SSH keys.",
			"An administrator creates a stack and adds its servers, confirming each host key.",
			"Attach your key to the stack; shellgate deploys it to every server.",
			"Open a terminal or drop files onto a server, right from this page.",
		},
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
