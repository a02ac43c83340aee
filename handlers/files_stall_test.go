package handlers_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/store"
)

// stallTimeout is the progress deadline of the stall tests.
const stallTimeout = 2 * time.Second

func newStallFixture(t *testing.T) *termFixture {
	f := newTermFixture(t, func(c *handlers.Config) {
		c.Transfers = handlers.TransferConfig{StallTimeout: stallTimeout}
	})
	f.sshd.RequireThrowawayUser(t)
	return f
}

// openFDs counts this process's open descriptors, less the database's: its pool
// may keep one more idle connection after the transfer's audit write (bounded and
// tested by TestBurstOfTerminalsKeepsDatabaseDescriptorsBounded), which is not
// something a transfer left behind.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasSuffix(target, ".db") || strings.HasSuffix(target, ".db-wal") || strings.HasSuffix(target, ".db-shm")) {
			continue
		}
		n++
	}
	return n
}

// baseline is what the process holds before a transfer: goroutines,
// descriptors, and the sshd's connections.
type baseline struct{ goroutines, fds, conns int }

func takeBaseline(t *testing.T, f *termFixture) baseline {
	t.Helper()
	// The browser's keep-alive connections would come and go during the test.
	f.alice.c.CloseIdleConnections()
	waitFor(t, "sshd idle", func() bool { return f.sshd.Connections() == 0 })
	runtime.GC()
	return baseline{runtime.NumGoroutine(), openFDs(t), f.sshd.Connections()}
}

// backToBaseline waits until goroutines, descriptors and sshd connections are
// at most what they were.
func backToBaseline(t *testing.T, f *termFixture, b baseline) {
	t.Helper()
	var g, fd, c int
	ok := poll(15*time.Second, func() bool {
		g, fd, c = runtime.NumGoroutine(), openFDs(t), f.sshd.Connections()
		return g <= b.goroutines && fd <= b.fds && c <= b.conns
	})
	if !ok {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("not back to baseline: goroutines %d (was %d), fds %d (was %d), sshd connections %d (was %d)\n%s",
			g, b.goroutines, fd, b.fds, c, b.conns, buf)
	}
}

func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawRequest writes a request's head on a fresh TCP connection, as the signed-in
// browser would send it, and returns the connection for the body (or reading).
func (b *browser) rawRequest(t *testing.T, method, path string, contentLength int64) net.Conn {
	t.Helper()
	if b.csrf == "" {
		b.get("/stacks")
	}
	u, _ := url.Parse(b.env.srv.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var cookies []string
	for _, c := range b.c.Jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nX-CSRF-Token: %s\r\nCookie: %s\r\nAccept: application/json\r\n",
		method, path, u.Host, b.env.srv.URL, b.csrf, strings.Join(cookies, "; "))
	if contentLength >= 0 {
		head += fmt.Sprintf("Content-Type: application/octet-stream\r\nContent-Length: %d\r\n", contentLength)
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// auditReason returns the reason of the newest event of kind, once there is one
// with a reason.
func (f *termFixture) auditReason(t *testing.T, kind string) string {
	t.Helper()
	var reason string
	if !poll(15*time.Second, func() bool {
		evs, err := f.store.ListEvents(context.Background(), store.EventFilter{Kind: kind, Limit: 5})
		if err != nil || len(evs) == 0 {
			return false
		}
		reason = evs[0].Detail["reason"]
		return reason != ""
	}) {
		t.Fatalf("no %s event with a reason within 15s", kind)
	}
	return reason
}

// TestStalledUploadIsEnded: a client sends 1 MiB of a 10 MiB upload and goes
// silent (a dead laptop, or someone holding shellgate's sessions open on purpose).
// Within the progress deadline the upload is ended, its temporary file removed,
// its SFTP session and SSH connection released, the audit says "stalled", and
// the process holds no more goroutines or descriptors than before.
func TestStalledUploadIsEnded(t *testing.T) {
	f := newStallFixture(t)
	home := f.sshd.Home
	base := takeBaseline(t, f)

	q := url.Values{"dir": {home}, "name": {"big.bin"}}
	conn := f.alice.rawRequest(t, http.MethodPut, f.filesURL("/upload?"+q.Encode()), 10<<20)
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	if _, err := conn.Write(chunk); err != nil {
		t.Fatal(err)
	}
	// shellgate reads the last byte at this moment or after it: its deadline
	// runs from then.
	silentFrom := time.Now()
	waitFor(t, "temporary file appears", func() bool { return len(tempFiles(home)) == 1 })

	// The client says nothing more; shellgate answers (408) and closes.
	conn.SetReadDeadline(time.Now().Add(stallTimeout + 10*time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the stalled upload was still held after %s", time.Since(silentFrom))
	}
	if took := time.Since(silentFrom); took < stallTimeout-100*time.Millisecond { // progress is counted per KiB
		t.Errorf("ended after %s, before the deadline of %s", took, stallTimeout)
	}
	conn.Close()

	if got := f.auditReason(t, "file.upload"); got != "stalled" {
		t.Errorf("audit reason %q, want stalled", got)
	}
	waitFor(t, "temporary file removed", func() bool { return len(tempFiles(home)) == 0 })
	if _, err := os.Stat(filepath.Join(home, "big.bin")); !os.IsNotExist(err) {
		t.Errorf("a partial upload became the file: %v", err)
	}
	backToBaseline(t, f, base)
}

// TestStalledDownloadIsEnded: a client starts a 64 MiB download and stops
// reading. Within the progress deadline the download is ended, its SFTP session
// and SSH connection released, the audit says "stalled", and goroutines and
// descriptors are back to what they were.
func TestStalledDownloadIsEnded(t *testing.T) {
	f := newStallFixture(t)
	home := f.sshd.Home
	data := make([]byte, 64<<20)
	rand.Read(data[:1<<20])
	if err := os.WriteFile(filepath.Join(home, "large.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	base := takeBaseline(t, f)

	q := url.Values{"path": {home + "/large.bin"}}
	conn := f.alice.rawRequest(t, http.MethodGet, f.filesURL("/download?"+q.Encode()), -1)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10) // fills at once: the server's writes block
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %v %v", resp, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// Then nothing is read: the socket buffers fill and shellgate's writes block.
	if got := f.auditReason(t, "file.download"); got != "stalled" {
		t.Errorf("audit reason %q, want stalled", got)
	}
	conn.Close()
	backToBaseline(t, f, base)
}

// TestOrphanedUploadsAreSwept: temporary upload files orphaned by a crash (older
// than a day) are removed when shellgate next opens an SFTP session on the server;
// a younger one (an upload may still be writing it) and files that only look
// similar are left alone, and a folder is swept at most once an hour.
func TestOrphanedUploadsAreSwept(t *testing.T) {
	f := newFilesFixture(t)
	home := f.sshd.Home
	old := time.Now().Add(-48 * time.Hour)
	write := func(name string, mtime time.Time) string {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	orphan := write(".report.pdf.shellgate-upload-0123abcd", old)
	young := write(".data.csv.shellgate-upload-89abcdef", time.Now().Add(-time.Hour))
	lookalike := write(".notes.shellgate-upload-backup", old)
	mine := write("report.shellgate-upload-0123abcd", old) // not hidden: not ours

	var l listing
	if code := f.alice.callJSON(http.MethodGet, f.filesURL(""), nil, &l); code != http.StatusOK {
		t.Fatalf("listing: %d", code)
	}
	waitFor(t, "orphan swept", func() bool { _, err := os.Stat(orphan); return os.IsNotExist(err) })
	for _, p := range []string{young, lookalike, mine} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}

	// Within the hour the home folder is not swept again, not even before an
	// upload; a folder uploaded to for the first time is. The sweeps run in the
	// background, in order: once the second folder's orphan is gone, a sweep of
	// home started before it would have been done too.
	second := write(".later.bin.shellgate-upload-00000000", old)
	if code, msg := f.upload(f.alice, home, "new.txt", []byte("hello"), false); code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, msg)
	}
	if code := f.alice.callJSON(http.MethodPost, f.filesURL("/mkdir"), map[string]string{"dir": home, "name": "sub"}, nil); code != http.StatusOK {
		t.Fatalf("mkdir: %d", code)
	}
	subOrphan := write("sub/.x.shellgate-upload-11111111", old)
	if code, msg := f.upload(f.alice, home+"/sub", "new.txt", []byte("hello"), false); code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, msg)
	}
	waitFor(t, "orphan in the uploaded-to folder swept", func() bool { _, err := os.Stat(subOrphan); return os.IsNotExist(err) })
	if _, err := os.Stat(second); err != nil {
		t.Errorf("home swept twice within the hour: %v", err)
	}
}

// TestTransfersPerUserAreCapped: one person cannot hold more transfers at once than
// the cap (each holds up to 2 MiB of SFTP requests); the next is refused with 503
// and works again once one has finished.
func TestTransfersPerUserAreCapped(t *testing.T) {
	f := newTermFixture(t, func(c *handlers.Config) {
		c.Transfers = handlers.TransferConfig{MaxPerUser: 1}
	})
	f.sshd.RequireThrowawayUser(t)
	home := f.sshd.Home
	q := url.Values{"dir": {home}, "name": {"slow.bin"}}
	conn := f.alice.rawRequest(t, http.MethodPut, f.filesURL("/upload?"+q.Encode()), 1<<20)
	conn.Write(make([]byte, 64<<10))
	waitFor(t, "first upload running", func() bool { return len(tempFiles(home)) == 1 })
	if code, msg := f.upload(f.alice, home, "second.txt", []byte("hi"), false); code != http.StatusServiceUnavailable {
		t.Fatalf("second transfer at the cap: %d %s, want 503", code, msg)
	}
	conn.Close()
	waitFor(t, "first upload ended", func() bool { return len(tempFiles(home)) == 0 })
	if !poll(10*time.Second, func() bool {
		code, _ := f.upload(f.alice, home, "second.txt", []byte("hi"), true)
		return code == http.StatusOK
	}) {
		t.Fatal("uploads still refused after the first one ended")
	}
}
