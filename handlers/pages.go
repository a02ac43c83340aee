package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

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
