package handlers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// filesURL is the file API of the fixture's server.
func (f *termFixture) filesURL(rest string) string {
	return "/stacks/" + id(f.stack.ID) + "/servers/" + id(f.server.ID) + "/files" + rest
}

// call sends an API request the way the panel does: JSON accepted, CSRF header, Origin.
func (b *browser) call(method, path string, body io.Reader, header ...string) *http.Response {
	b.t.Helper()
	if b.csrf == "" {
		b.get("/stacks")
	}
	req, _ := http.NewRequest(method, b.env.srv.URL+path, body)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-CSRF-Token", b.csrf)
	req.Header.Set("Origin", b.env.srv.URL)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	return b.do(req)
}

func (b *browser) callJSON(method, path string, in any, out any) int {
	b.t.Helper()
	var body io.Reader
	if in != nil {
		data, _ := json.Marshal(in)
		body = bytes.NewReader(data)
	}
	resp := b.call(method, path, body, "Content-Type", "application/json")
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

type listing struct {
	Path    string
	Home    string
	Entries []terminal.Entry
	Parts   []struct{ Name, Path string }
	Error   string
}

func (f *termFixture) upload(b *browser, dir, name string, data []byte, overwrite bool) (int, string) {
	f.t.Helper()
	q := url.Values{"dir": {dir}, "name": {name}, "size": {fmt.Sprint(len(data))}, "overwrite": {"0"}}
	if overwrite {
		q.Set("overwrite", "1")
	}
	resp := b.call(http.MethodPut, f.filesURL("/upload?"+q.Encode()), bytes.NewReader(data), "Content-Type", "application/octet-stream")
	defer resp.Body.Close()
	var out struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Error
}

func newFilesFixture(t *testing.T) *termFixture {
	f := newTermFixture(t)
	f.sshd.RequireThrowawayUser(t)
	return f
}

// TestFilesRoundTripAgainstOpenSSH: list, upload, download (whole and by Range),
// mkdir, rename, folder archive and delete through the HTTP API to a real sshd,
// with the person's uploaded key and nothing else; every change is audited.
func TestFilesRoundTripAgainstOpenSSH(t *testing.T) {
	f := newFilesFixture(t)
	home := f.sshd.Home
	var l listing
	if code := f.alice.callJSON(http.MethodGet, f.filesURL(""), nil, &l); code != http.StatusOK || l.Path != home || l.Home != home {
		t.Fatalf("home listing: %d %+v", code, l)
	}
	if last := l.Parts[len(l.Parts)-1]; last.Path != home || l.Parts[0].Path != "/" {
		t.Fatalf("breadcrumb: %+v", l.Parts)
	}

	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if code, msg := f.upload(f.alice, home, "big.bin", data, false); code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, msg)
	}
	got, err := os.ReadFile(filepath.Join(home, "big.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) || len(got) != len(data) {
		t.Fatalf("uploaded file differs: %d bytes, %v", len(got), err)
	}

	// Download, whole and a Range.
	dl := f.filesURL("/download?path=" + url.QueryEscape(home+"/big.bin"))
	resp := f.alice.call(http.MethodGet, dl, nil)
	whole, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(whole, data) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(whole))
	}
	if ct, ns := resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"); ct != "application/octet-stream" || ns != "nosniff" {
		t.Fatalf("download headers: %q %q", ct, ns)
	}
	resp = f.alice.call(http.MethodGet, dl, nil, "Range", "bytes=1000000-1000099")
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[1000000:1000100]) {
		t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(part))
	}

	// Overwrite is refused, then allowed; the refusal says so in JSON.
	small := []byte("second version\n")
	if code, msg := f.upload(f.alice, home, "big.bin", small, false); code != http.StatusConflict || !strings.Contains(msg, "already exists") {
		t.Fatalf("upload over existing: %d %q", code, msg)
	}
	if code, _ := f.upload(f.alice, home, "big.bin", small, true); code != http.StatusOK {
		t.Fatalf("overwrite: %d", code)
	}
	if got, _ := os.ReadFile(filepath.Join(home, "big.bin")); !bytes.Equal(got, small) {
		t.Fatalf("after overwrite: %q", got)
	}

	// mkdir, upload into a dropped folder path, rename, archive, count, delete.
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/mkdir"), map[string]string{"dir": home, "name": "proj"}, nil); code != http.StatusOK {
		t.Fatalf("mkdir: %d", code)
	}
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/mkdir"), map[string]string{"dir": home, "name": "proj"}, nil); code != http.StatusConflict {
		t.Fatalf("mkdir again: %d, want 409", code)
	}
	var made struct{ Path string }
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/mkdir"), map[string]string{"dir": home + "/proj", "rel": "empty/inner"}, &made); code != http.StatusOK || made.Path != home+"/proj/empty/inner" {
		t.Fatalf("mkdir rel: %d %+v", code, made)
	}
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/mkdir"), map[string]string{"dir": home, "rel": "../escape"}, nil); code != http.StatusBadRequest {
		t.Fatalf("mkdir ../: %d, want 400", code)
	}
	if code, msg := f.upload(f.alice, home+"/proj", "src/main.go", []byte("package main\n"), false); code != http.StatusOK {
		t.Fatalf("upload into folder: %d %s", code, msg)
	}
	var renamed struct{ Path string }
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/rename"), map[string]string{"path": home + "/big.bin", "name": "notes.txt"}, &renamed); code != http.StatusOK || renamed.Path != home+"/notes.txt" {
		t.Fatalf("rename: %d %+v", code, renamed)
	}
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/rename"), map[string]string{"path": home + "/notes.txt", "name": "../x"}, nil); code != http.StatusBadRequest {
		t.Fatalf("rename with a slash: %d, want 400", code)
	}
	resp = f.alice.call(http.MethodGet, f.filesURL("/archive?path="+url.QueryEscape(home+"/proj")), nil)
	zipData, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(zipData, []byte("PK")) || !bytes.Contains(zipData, []byte("proj/src/main.go")) {
		t.Fatalf("archive: %d, %d bytes", resp.StatusCode, len(zipData))
	}
	if !strings.Contains(resp.Header.Get("Content-Disposition"), `filename="proj.zip"`) {
		t.Fatalf("archive disposition %q", resp.Header.Get("Content-Disposition"))
	}
	var count struct{ Files, Dirs int }
	if code := f.alice.callJSON(http.MethodGet, f.filesURL("/count?path="+url.QueryEscape(home+"/proj")), nil, &count); code != http.StatusOK || count.Files != 1 || count.Dirs != 3 {
		t.Fatalf("count: %d %+v", code, count)
	}
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/delete"), map[string]string{"path": home + "/proj"}, nil); code != http.StatusNoContent {
		t.Fatalf("delete folder: %d", code)
	}
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/delete"), map[string]string{"path": home + "/notes.txt"}, nil); code != http.StatusNoContent {
		t.Fatalf("delete file: %d", code)
	}
	var missing listing
	if code := f.alice.callJSON(http.MethodGet, f.filesURL("?path="+url.QueryEscape(home+"/proj")), nil, &missing); code != http.StatusNotFound || missing.Error == "" {
		t.Fatalf("listing a deleted folder: %d %+v", code, missing)
	}

	events, _ := f.store.ListEvents(context.Background(), store.EventFilter{Kind: "file."})
	kinds := map[string]int{}
	for _, e := range events {
		if e.ServerID != f.server.ID || e.StackID != f.stack.ID || e.Target != "web-1" || e.ActorName != "alice" {
			t.Fatalf("event %+v", e)
		}
		kinds[e.Kind]++
	}
	for _, k := range []string{"file.upload", "file.download", "file.mkdir", "file.rename", "file.archive", "file.delete"} {
		if kinds[k] == 0 {
			t.Errorf("no %s event in %v", k, kinds)
		}
	}
}

// TestFilesUploadCutOffLeavesNothing: the browser tab closes half way through an
// upload. Nothing appears at the final name, an existing file there is unchanged,
// and the temporary file is removed.
func TestFilesUploadCutOffLeavesNothing(t *testing.T) {
	f := newFilesFixture(t)
	home := f.sshd.Home
	old := []byte("the original\n")
	if code, _ := f.upload(f.alice, home, "keep.txt", old, false); code != http.StatusOK {
		t.Fatal("setup upload failed")
	}
	u, _ := url.Parse(f.env.srv.URL)
	for _, name := range []string{"new.bin", "keep.txt"} {
		q := url.Values{"dir": {home}, "name": {name}, "overwrite": {"1"}}
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		var hdr strings.Builder
		fmt.Fprintf(&hdr, "PUT %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nX-CSRF-Token: %s\r\nContent-Length: %d\r\n",
			f.filesURL("/upload?"+q.Encode()), u.Host, f.env.srv.URL, f.alice.csrf, 8<<20)
		for _, c := range f.alice.c.Jar.Cookies(u) {
			fmt.Fprintf(&hdr, "Cookie: %s=%s\r\n", c.Name, c.Value)
		}
		hdr.WriteString("\r\n")
		conn.Write([]byte(hdr.String()))
		conn.Write(bytes.Repeat([]byte("x"), 4<<20))
		// Wait until the temporary file exists, so the cut happens mid-transfer.
		waitFor(t, "temporary file", func() bool { return len(tempFiles(home)) > 0 })
		conn.Close()
		waitFor(t, "temporary file removed", func() bool { return len(tempFiles(home)) == 0 })
	}
	if _, err := os.Stat(filepath.Join(home, "new.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("new.bin after a cut-off upload: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(home, "keep.txt")); !bytes.Equal(got, old) {
		t.Fatalf("keep.txt changed: %q", got)
	}
}

func tempFiles(dir string) []string {
	var out []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".shellgate-upload-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestFilesHostileNamesRoundTrip: a file name chosen by whoever can write on the
// server — quotes, a newline, markup, emoji — must come back byte for byte and must
// not break out of the Content-Disposition header (header injection, or a name
// rendered as HTML).
func TestFilesHostileNamesRoundTrip(t *testing.T) {
	f := newFilesFixture(t)
	home := f.sshd.Home
	names := []string{`say "hi".txt`, "two\nlines.txt", "<script>alert(1)<\\script><img src=x onerror=alert(2)>.html", "🦊 fox ü.txt", `back\slash;%20.txt`}
	for _, name := range names {
		body := []byte("content of " + name)
		if code, msg := f.upload(f.alice, home, name, body, false); code != http.StatusOK {
			t.Fatalf("upload %q: %d %s", name, code, msg)
		}
		resp := f.alice.call(http.MethodGet, f.filesURL("/download?path="+url.QueryEscape(home+"/"+name)), nil)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, body) {
			t.Fatalf("%q: got %q", name, got)
		}
		cd := resp.Header.Get("Content-Disposition")
		if strings.ContainsAny(cd, "\n\r<>") {
			t.Fatalf("%q: raw characters in %q", name, cd)
		}
		_, params, err := mime.ParseMediaType(cd)
		if err != nil || params["filename"] != name {
			t.Fatalf("%q: disposition %q parsed to %q (%v)", name, cd, params["filename"], err)
		}
		if resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("%q: content type %q", name, resp.Header.Get("Content-Type"))
		}
	}
	var l listing
	f.alice.callJSON(http.MethodGet, f.filesURL(""), nil, &l)
	seen := map[string]bool{}
	for _, e := range l.Entries {
		seen[e.Name] = true
	}
	for _, name := range names {
		if !seen[name] {
			t.Errorf("%q not in the listing", name)
		}
	}
}

// TestFilesMembershipAndCSRF: the file API answers only members, only for servers
// of the stack in the path, and changes nothing without the CSRF token — a page on
// another site cannot make the victim's browser upload or delete.
func TestFilesMembershipAndCSRF(t *testing.T) {
	f := newFilesFixture(t)
	ctx := context.Background()
	other := &store.Stack{Name: "other"}
	f.store.CreateStack(ctx, other)
	f.store.AddStackMember(ctx, other.ID, f.aliceID, time.Now())
	foreign := "/stacks/" + id(other.ID) + "/servers/" + id(f.server.ID) + "/files"
	if code := f.alice.callJSON(http.MethodGet, foreign, nil, nil); code != http.StatusNotFound {
		t.Errorf("another stack's server: %d, want 404", code)
	}
	bob := f.env.browser()
	bob.signIn("bob", pw)
	for _, p := range []string{"", "/download?path=/etc/hostname", "/archive?path=/tmp", "/count?path=/tmp"} {
		if code := bob.callJSON(http.MethodGet, f.filesURL(p), nil, nil); code != http.StatusNotFound {
			t.Errorf("non-member GET %q: %d, want 404", p, code)
		}
	}
	if code, _ := f.upload(bob, "/tmp", "x", []byte("x"), false); code != http.StatusNotFound {
		t.Errorf("non-member upload: %d, want 404", code)
	}
	home := f.sshd.Home
	q := url.Values{"dir": {home}, "name": {"csrf.txt"}}
	mutations := []struct{ method, path, body string }{
		{http.MethodPut, "/upload?" + q.Encode(), "x"},
		{http.MethodPost, "/mkdir", `{"dir":"` + home + `","name":"csrf"}`},
		{http.MethodPost, "/rename", `{"path":"` + home + `/.bashrc","name":"csrf"}`},
		{http.MethodPost, "/delete", `{"path":"` + home + `"}`},
	}
	for _, m := range mutations {
		resp := f.alice.call(m.method, f.filesURL(m.path), strings.NewReader(m.body), "X-CSRF-Token", "", "Content-Type", "application/json")
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s without token: %d, want 403", m.method, m.path, resp.StatusCode)
		}
		resp = f.alice.call(m.method, f.filesURL(m.path), strings.NewReader(m.body), "Origin", "https://evil.example", "Content-Type", "application/json")
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s cross-origin: %d, want 403", m.method, m.path, resp.StatusCode)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "csrf.txt")); err == nil {
		t.Error("csrf.txt was written")
	}
	if _, err := os.Stat(filepath.Join(home, "csrf")); err == nil {
		t.Error("csrf folder was made")
	}
}

// TestFilesNeedAKeyOrATerminal: without a key shellgate holds, the file API cannot
// ask for a password; it says what to do instead (409).
func TestFilesNeedAKeyOrATerminal(t *testing.T) {
	f := newFilesFixture(t)
	ctx := context.Background()
	bob, _ := f.store.UserByName(ctx, "bob")
	f.store.AddStackMember(ctx, f.stack.ID, bob.ID, time.Now())
	b := f.env.browser()
	b.signIn("bob", pw)
	var out struct{ Error string }
	if code := b.callJSON(http.MethodGet, f.filesURL(""), nil, &out); code != http.StatusConflict || !strings.Contains(out.Error, "Open a terminal") {
		t.Fatalf("no key: %d %q", code, out.Error)
	}
}

// TestFilesBorrowTheTerminalConnection: with a terminal open, the file panel uses its
// SSH connection instead of dialing (so servers that asked for a password or a code
// work once the terminal is in).
func TestFilesBorrowTheTerminalConnection(t *testing.T) {
	mgr := terminal.NewManager(terminal.Config{})
	f := newTermFixture(t, func(c *handlers.Config) { c.Terminals = mgr })
	f.sshd.RequireThrowawayUser(t)
	ticket, _ := f.alice.ticket(f.stack.ID, f.server.ID)
	tc := f.alice.openTerminal(f.server.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("terminal not connected: %+v", tc.status)
	}
	// The server stops accepting the key (detaching it in shellgate would end the
	// terminal too): only the borrowed connection can serve the listing now.
	if err := os.WriteFile(f.sshd.AuthorizedKeysPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var l listing
	if code := f.alice.callJSON(http.MethodGet, f.filesURL(""), nil, &l); code != http.StatusOK || l.Path != f.sshd.Home {
		t.Fatalf("listing through the terminal's connection: %d %+v", code, l)
	}
	mgr.Shutdown(context.Background())
}

// TestFileStatus maps every file condition to its HTTP status once.
func TestFileStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&terminal.FileError{Op: "open", Path: "/x", Err: terminal.ErrNotExist}, 404},
		{&terminal.FileError{Op: "upload", Path: "/x", Err: terminal.ErrExists}, 409},
		{&terminal.FileError{Op: "open", Path: "/x", Err: terminal.ErrPermission}, 403},
		{&terminal.FileError{Op: "upload", Path: "/x", Err: terminal.ErrDiskFull}, 507},
		{&terminal.FileError{Op: "upload", Path: "/x", Err: terminal.ErrInvalidName}, 400},
		{&terminal.FileError{Op: "remove", Path: "/x", Err: terminal.ErrDirNotEmpty}, 409},
		{&terminal.FileError{Op: "open", Path: "/x", Err: terminal.ErrUnsupported}, 501},
		{terminal.ErrNoKeyAuth, 409},
		{handlers.ErrStalled, 408},
		{handlers.ErrDraining, 503},
		{terminal.ErrShutdown, 503},
		{fmt.Errorf("acquire: %w", terminal.ErrTooManySessions), 503},
	} {
		if got, msg := handlers.FileStatus(tc.err); got != tc.want || msg == "" {
			t.Errorf("%v: %d %q, want %d", tc.err, got, msg, tc.want)
		}
	}
}
