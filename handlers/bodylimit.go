package handlers

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"
)

// The request-body policy. Every request passes bodyPolicy before anything reads its
// body: a declared Content-Length over the route's limit is refused at once (413), and
// the body is wrapped so that reading past the limit fails, which bounds chunked bodies
// too. Forms are parsed only after that, so no form or multipart part can reach memory
// or disk beyond the limit. Only the streamed file upload is exempt, and only for a
// signed-in member whose CSRF token, sent in a header, is valid — checked before a byte
// of the body is read.

// anonymousBodyLimit bounds what a client that is not signed in may send, on any route:
// the sign-in form (username ≤ 128 bytes, password ≤ 1024, next, token) fits easily.
const anonymousBodyLimit = 8 << 10

// defaultBodyLimit bounds every form and JSON body of a signed-in person not listed in
// bodyLimits: names, paths, ids and tokens.
const defaultBodyLimit = 64 << 10

// bodyLimits lists the routes that take more than defaultBodyLimit, keyed by method
// and route pattern.
var bodyLimits = map[string]int64{
	"POST /keys/public":                          maxKeyForm,
	"POST /keys/upload":                          maxKeyForm,
	"POST /stacks/:id/import":                    1 << 20, // an ssh_config
	"POST /stacks/:id/known_hosts":               1 << 20, // a known_hosts file
	"POST /api/terminal/tickets":                 4 << 10,
	"POST /stacks/:id/servers/:sid/files/mkdir":  16 << 10,
	"POST /stacks/:id/servers/:sid/files/rename": 16 << 10,
	"POST /stacks/:id/servers/:sid/files/delete": 16 << 10,
}

// streamedUpload is the one route whose body is not bounded: a file of any size,
// streamed to the server over SFTP.
const streamedUpload = "PUT /stacks/:id/servers/:sid/files/upload"

// bodyPolicy applies the body limits. It runs after loadSession (to know who is
// signed in) and before csrf (which may read a form field).
func (s *Server) bodyPolicy(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		route := r.Method + " " + c.Path()
		signedIn := currentUser(c) != nil
		if route == streamedUpload {
			// Decided on headers alone: the body of anyone else is never read.
			if !signedIn || !s.csrfHeaderValid(c) || !s.sameOrigin(c) {
				return echo.NewHTTPError(http.StatusForbidden, "This upload did not come from a signed-in shellgate page. Reload the page and try again.")
			}
			return next(c)
		}
		limit := int64(defaultBodyLimit)
		switch {
		case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions:
			limit = 0
		case !signedIn:
			limit = anonymousBodyLimit
		default:
			if n, ok := bodyLimits[route]; ok {
				limit = n
			}
		}
		if r.ContentLength > limit {
			return errBodyTooLarge
		}
		if ct := r.Header.Get(echo.HeaderContentType); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == echo.MIMEMultipartForm && !signedIn {
				return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Sign in first.")
			}
		}
		if r.Body == nil || r.Body == http.NoBody {
			return next(c)
		}
		// The underlying writer, not echo's wrapper: it lets net/http close the
		// connection after the 413 instead of draining an endless body.
		body := &limitedBody{ReadCloser: http.MaxBytesReader(c.Response().Writer, r.Body, limit)}
		r.Body = body
		err := next(c)
		if body.exceeded && err != nil && !c.Response().Committed {
			// A handler that failed to decode a body cut at the limit says 400;
			// the truth is 413.
			return errBodyTooLarge
		}
		return err
	}
}

// limitedBody remembers whether a read hit the body limit.
type limitedBody struct {
	io.ReadCloser
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if err != nil && errors.As(err, &tooLarge) {
		b.exceeded = true
	}
	return n, err
}

// multipartMemory is more than any bounded body, so no multipart part is ever written
// to a temporary file.
const multipartMemory = 4 << 20

var errBodyTooLarge = echo.NewHTTPError(http.StatusRequestEntityTooLarge, "That request is too large.")

// parseForm reads the (already bounded) form of a request once, turning a body over
// its limit into a 413 instead of an empty form.
func parseForm(c echo.Context) error {
	r := c.Request()
	var err error
	if mt, _, perr := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType)); perr == nil && mt == echo.MIMEMultipartForm {
		// Every part stays in memory: the body is bounded well below this.
		err = r.ParseMultipartForm(multipartMemory)
	} else {
		err = r.ParseForm()
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return errBodyTooLarge
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "That form could not be read.")
	}
}
