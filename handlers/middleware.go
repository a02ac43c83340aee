package handlers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"
)

// Keys of values the middleware leaves on the echo context for handlers.
const (
	ctxNonce   = "sg.nonce"
	ctxUser    = "sg.user"
	ctxSession = "sg.session"
	ctxCSRF    = "sg.csrf"
	// ctxCSRFNonce is the browser's CSRF nonce, read (or set) once per request.
	ctxCSRFNonce = "sg.csrfnonce"
)

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkHost refuses requests for a Host shellgate does not serve, which blocks DNS
// rebinding and host-header tricks in links and redirects.
func (s *Server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.hostAllowed(c.Request().Host) {
			return echo.NewHTTPError(http.StatusMisdirectedRequest, "This server does not answer for that host name.")
		}
		return next(c)
	}
}

func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in handler", "path", c.Path(), "panic", fmt.Sprint(r))
				err = echo.NewHTTPError(http.StatusInternalServerError)
			}
		}()
		return next(c)
	}
}

// securityHeaders sets the CSP with a fresh nonce per request and the other headers
// every response carries.
func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		nonce := randomToken(18)
		c.Set(ctxNonce, nonce)
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; "+
			"script-src 'nonce-"+nonce+"' 'strict-dynamic'; "+
			"style-src 'self' 'nonce-"+nonce+"'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "+
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" on
		// same-origin form posts, which the CSRF check must refuse.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		return next(c)
	}
}

// csrfNonceCookie names the cookie that carries the random half of the CSRF token.
func (s *Server) csrfNonceCookie() string {
	if s.secure {
		return "__Host-sg_csrf"
	}
	return "sg_csrf"
}

// csrf protects every state-changing request twice: the browser must say the request
// is same-origin (Origin / Sec-Fetch-Site), and the form or header must carry a token
// that is an HMAC of a per-browser nonce cookie and the signed-in session, so a token
// stolen from one session is worthless in another.
//
// A body is read for the token only when it may be read at all: bodyPolicy has already
// bounded it, and a client that is not signed in has its form read on POST /login alone
// and /logout (8 KiB, no multipart); anywhere else it must send the token in X-CSRF-Token.
func (s *Server) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		token := s.csrfToken(s.csrfNonce(c), sessionID(c))
		c.Set(ctxCSRF, token)

		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		if !s.sameOrigin(c) {
			return echo.NewHTTPError(http.StatusForbidden, "Cross-site request refused.")
		}
		sent := r.Header.Get("X-CSRF-Token")
		if sent == "" && (currentUser(c) != nil || anonymousForms[r.Method+" "+c.Path()]) {
			if err := parseForm(c); err != nil {
				return err
			}
			sent = r.PostFormValue("_csrf")
		}
		if sent == "" || !hmac.Equal([]byte(sent), []byte(token)) {
			return echo.NewHTTPError(http.StatusForbidden, "This form has expired or did not come from shellgate. Reload the page and try again.")
		}
		return next(c)
	}
}

// anonymousForms are the only routes whose form body is read before sign-in.
var anonymousForms = map[string]bool{"POST /login": true, "POST /logout": true}

// csrfNonce returns the browser's CSRF nonce, setting a new one when it has none.
func (s *Server) csrfNonce(c echo.Context) string {
	if v, ok := c.Get(ctxCSRFNonce).(string); ok {
		return v
	}
	nonce := ""
	if ck, err := c.Request().Cookie(s.csrfNonceCookie()); err == nil && len(ck.Value) >= 22 {
		nonce = ck.Value
	} else {
		nonce = randomToken(24)
		http.SetCookie(c.Response(), &http.Cookie{
			Name: s.csrfNonceCookie(), Value: nonce, Path: "/",
			HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode,
		})
	}
	c.Set(ctxCSRFNonce, nonce)
	return nonce
}

// sameOrigin reports whether the browser says the request comes from shellgate's own
// pages (a missing header says nothing either way; the token decides).
func (s *Server) sameOrigin(c echo.Context) bool {
	r := c.Request()
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != s.expectedOrigin(c) {
		return false
	}
	return true
}

// csrfHeaderValid reports whether X-CSRF-Token carries this session's token, without
// touching the body.
func (s *Server) csrfHeaderValid(c echo.Context) bool {
	sent := c.Request().Header.Get("X-CSRF-Token")
	want := s.csrfToken(s.csrfNonce(c), sessionID(c))
	return sent != "" && hmac.Equal([]byte(sent), []byte(want))
}

func (s *Server) csrfToken(nonce, sid string) string {
	m := hmac.New(sha256.New, s.cfg.CSRFKey)
	m.Write([]byte("csrf\x00" + nonce + "\x00" + sid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// staticFiles serves the embedded bundle; versioned URLs are cached for a year.
func (s *Server) staticFiles(fsys fs.FS) echo.HandlerFunc {
	fileServer := http.FileServer(http.FS(fsys))
	return func(c echo.Context) error {
		name := path.Clean(strings.TrimPrefix(c.Param("*"), "/"))
		if _, err := fs.Stat(fsys, name); err != nil {
			return echo.NewHTTPError(http.StatusNotFound)
		}
		if c.QueryParam("v") != "" {
			c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		r := c.Request().Clone(c.Request().Context())
		r.URL.Path = "/" + name
		fileServer.ServeHTTP(c.Response(), r)
		return nil
	}
}

// render writes a templ component with the request's CSP nonce.
func render(c echo.Context, status int, cmp templ.Component) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().WriteHeader(status)
	nonce, _ := c.Get(ctxNonce).(string)
	ctx := templ.WithNonce(c.Request().Context(), nonce)
	return cmp.Render(ctx, c.Response())
}
