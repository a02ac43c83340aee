package handlers_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func parse(t *testing.T, resp *http.Response) *goquery.Document {
	t.Helper()
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestSecurityHeaders: every page forbids framing (clickjacking), sniffing and inline
// script without this response's nonce; the nonce differs per response.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	nonceRe := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'`)
	var nonces []string
	for range 2 {
		resp, err := http.Get(e.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		m := nonceRe.FindStringSubmatch(csp)
		if m == nil || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "object-src 'none'") {
			t.Fatalf("CSP %q lacks a nonce, frame-ancestors or object-src", csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" || h.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("missing headers: %v", h)
		}
		doc := parse(t, resp)
		doc.Find("script").Each(func(_ int, s *goquery.Selection) {
			if n, _ := s.Attr("nonce"); n != m[1] {
				t.Errorf("script %v carries nonce %q, want %q", s.AttrOr("src", "inline"), n, m[1])
			}
		})
		nonces = append(nonces, m[1])
	}
	if nonces[0] == nonces[1] {
		t.Fatal("the CSP nonce is reused across responses")
	}
}

func TestStaticBundleServed(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	doc := parse(t, resp)
	href, _ := doc.Find(`link[rel="stylesheet"]`).Attr("href")
	resp, err = http.Get(e.srv.URL + href)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("stylesheet %s: %d %v", href, resp.StatusCode, resp.Header)
	}
	resp, _ = http.Get(e.srv.URL + "/static/../store/store.go")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("path traversal in /static: %d", resp.StatusCode)
	}
}
