package handlers

import (
	"net/url"
	"strings"
)

// safeNext keeps the redirect after sign-in on this site. It accepts only a local
// absolute path that every browser reads as same-origin, and "/" otherwise. Browsers
// forgive a lot before they resolve a URL: they drop tab, CR and LF anywhere, trim
// spaces and controls, read "\" as "/", and a path beginning "//" or "/\" names
// another host. So the value must be printable ASCII without a backslash, start with
// exactly one "/", and its path must still be a plain path after percent-decoding
// (at most three rounds, for doubly encoded forms), with no "//" and no dot segments.
func safeNext(next string) string {
	if !safeLocalPath(next) {
		return "/"
	}
	return next
}

func safeLocalPath(next string) bool {
	if len(next) < 1 || len(next) > 2048 || next[0] != '/' {
		return false
	}
	for i := 0; i < len(next); i++ {
		if b := next[i]; b <= 0x20 || b >= 0x7f || b == '\\' {
			return false
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	p, _, _ := strings.Cut(next, "?")
	p, _, _ = strings.Cut(p, "#")
	for range 4 {
		if !plainPath(p) {
			return false
		}
		d, err := url.PathUnescape(p)
		if err != nil {
			return false
		}
		if d == p {
			return true
		}
		p = d
	}
	return false // still encoded after three rounds: nobody links like that
}

// plainPath: starts with one "/", no "//", no dot segments, no backslash, space or controls.
func plainPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") ||
		strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if b := p[i]; b <= 0x20 || b == 0x7f || b == '\\' {
			return false
		}
	}
	return true
}
