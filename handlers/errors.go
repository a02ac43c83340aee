package handlers

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/views/pages"
)

// publicError turns any error into what a user may see: a status, a heading and a
// message in plain words. Internal errors say nothing of their cause; that goes to the log.
func publicError(err error) (status int, heading, message string) {
	status = http.StatusInternalServerError
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		if m, ok := he.Message.(string); ok && status < 500 {
			message = m
		}
	}
	switch status {
	case http.StatusBadRequest:
		heading = "That request was not understood"
	case http.StatusUnauthorized:
		heading = "Sign in first"
	case http.StatusForbidden:
		heading = "Not allowed"
	case http.StatusNotFound:
		heading = "Not found"
		if message == "" || message == http.StatusText(http.StatusNotFound) {
			message = "There is nothing here, or you do not have access to it."
		}
	case http.StatusMethodNotAllowed:
		heading = "Not allowed"
	case http.StatusRequestEntityTooLarge:
		heading = "Too large"
	case http.StatusTooManyRequests:
		heading = "Slow down"
	case http.StatusMisdirectedRequest:
		heading = "Wrong address"
	default:
		if status >= 500 {
			heading = "Something went wrong on our side"
			message = "The error was logged. Try again; if it keeps happening, tell your administrator."
		} else {
			heading = http.StatusText(status)
		}
	}
	if message == "" || message == http.StatusText(status) {
		if message == "" {
			message = http.StatusText(status) + "."
		}
	}
	return status, heading, message
}

// handleError is echo's one HTTPErrorHandler: JSON for API calls, a page otherwise.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, heading, message := publicError(err)
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if isAPI(c) {
		_ = c.JSON(status, map[string]string{"error": message})
		return
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = render(c, status, pages.Error(s.page(c, heading, ""), pages.ErrorModel{Status: status, Heading: heading, Message: message}))
}
