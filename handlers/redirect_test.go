package handlers

import (
	"net/url"
	"strings"
	"testing"
)

// TestSafeNextRefusesOpenRedirects: an attacker sends a victim a sign-in link whose
// next parameter points elsewhere (issue 12 found "/%09/evil.tld": Chromium drops the
// tab and follows //evil.tld after a real sign-in). Every form below is a known
// open-redirect bypass — browser normalisation of tab/CR/LF, backslashes, scheme-
// relative and encoded slashes, schemes, credentials — and must land on "/".
func TestSafeNextRefusesOpenRedirects(t *testing.T) {
	bypasses := []string{
		"//evil.tld", "///evil.tld", "////evil.tld", "/\\evil.tld", "\\\\evil.tld", "\\/evil.tld",
		"/\t/evil.tld", "/%09/evil.tld", "/\n/evil.tld", "/%0a/evil.tld", "/\r/evil.tld", "/%0d/evil.tld",
		"/\r\n/evil.tld", "\t//evil.tld", " //evil.tld", "/ /evil.tld", "/%20/evil.tld", "\x00//evil.tld",
		"/%2F/evil.tld", "/%2f%2fevil.tld", "%2F%2Fevil.tld", "/%5Cevil.tld", "/%5cevil.tld", "/%255C%255Cevil.tld",
		"/%252F%252Fevil.tld", "/%25252F%25252Fevil.tld", "/%2525252F%2525252Fevil.tld",
		"https://evil.tld", "http:evil.tld", "http:/evil.tld", "https:/\\evil.tld", "//evil.tld/%2e%2e",
		"javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>", "vbscript:x",
		"/\u3002evil.tld", "//evil%E3%80%82tld", "/\u2215\u2215evil.tld", "//user@evil.tld", "/@evil.tld/..//x",
		"/.//evil.tld", "/..//evil.tld", "/./", "/x/../..//evil.tld", "/%2e%2e//evil.tld", "/%2e/%2fevil.tld",
		"evil.tld", "stacks", "?next=//evil.tld", "#//evil.tld", "", "/" + string(make([]byte, 3000)),
	}
	for _, next := range bypasses {
		if got := safeNext(next); got != "/" {
			t.Errorf("safeNext(%q) = %q, want /", next, got)
		}
	}
	// The redirects shellgate makes itself (requireUser escapes the RequestURI) pass.
	for _, ok := range []string{"/", "/stacks", "/stacks/3?tab=log&log=ssh", "/stacks/1/servers/2/terminal",
		"/audit?actor=alice%40example.com", "/stacks/1/files?path=%2Fhome%2Falice", "/keys#generate"} {
		if got := safeNext(ok); got != ok {
			t.Errorf("safeNext(%q) = %q, want it kept", ok, got)
		}
	}
}

// FuzzSafeNext: whatever safeNext keeps must stay on this site when a browser
// resolves it — also after the browser's own clean-up (dropping tab, CR and LF,
// reading "\" as "/") and after percent-decoding.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/stacks", "//evil.tld", "/%09/evil.tld", "/\\evil", "/a?b=c#d", "/%2F%2Fx"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://shell.example/stacks/1")
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got == "/" {
			return
		}
		forms := []string{got, strings.NewReplacer("\t", "", "\r", "", "\n", "", "\\", "/").Replace(got)}
		if d, err := url.PathUnescape(got); err == nil {
			forms = append(forms, d)
		}
		for _, form := range forms {
			u, err := url.Parse(form)
			if err != nil {
				continue
			}
			if r := base.ResolveReference(u); r.Host != "shell.example" || r.Scheme != "https" {
				t.Fatalf("safeNext(%q) kept %q, which resolves to %s", next, got, r)
			}
		}
	})
}
