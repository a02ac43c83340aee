package terminal

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testsshd"
)

func TestFilesHomeAndStat(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		home, err := filepath.EvalSymlinks(e.home)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.files.Home(); got != home && got != e.home {
			t.Fatalf("Home = %q, want %q", got, e.home)
		}
		p := e.write(t, "a.txt", []byte("hello"))
		st, err := e.files.Stat(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Name != "a.txt" || st.Size != 5 || st.IsDir || st.Perm != "-rw-r--r--" || st.Path != p {
			t.Errorf("Stat = %+v", st)
		}
		if _, err := e.files.Stat(t.Context(), e.path("missing")); !errors.Is(err, ErrNotExist) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(missing) = %v, want ErrNotExist", err)
		}
		if _, err := e.files.Stat(t.Context(), "relative"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Stat(relative) = %v, want ErrInvalidName", err)
		}
	})
}

func TestFilesList(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		dir := e.mkdir(t, "list")
		e.mkdir(t, "list/b_dir")
		e.mkdir(t, "list/A_dir")
		e.mkdir(t, "list/.hidden_dir")
		e.write(t, "list/z.txt", []byte("zz"))
		e.write(t, "list/a.txt", []byte("a"))
		e.write(t, "list/B.txt", bytes.Repeat([]byte("b"), 1234))
		e.write(t, "list/.env", nil)
		e.symlink(t, "A_dir", "list/link_to_dir")
		e.symlink(t, "z.txt", "list/link_to_file")
		e.symlink(t, "/nowhere/at/all", "list/dangling")
		if err := os.Chmod(e.path("list/b_dir"), os.ModeSticky|0o777); err != nil {
			t.Fatal(err)
		}
		mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
		if err := os.Chtimes(e.path("list/B.txt"), mtime, mtime); err != nil {
			t.Fatal(err)
		}

		l, err := e.files.List(t.Context(), dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		byName := map[string]Entry{}
		for _, en := range l.Entries {
			names = append(names, en.Name)
			byName[en.Name] = en
		}
		want := []string{".hidden_dir", "A_dir", "b_dir", "link_to_dir", ".env", "a.txt", "B.txt", "dangling", "link_to_file", "z.txt"}
		if !slices.Equal(names, want) {
			t.Fatalf("order:\n got %q\nwant %q", names, want)
		}
		if l.Truncated || l.Path != dir {
			t.Errorf("Listing = %+v", l)
		}
		if en := byName[".env"]; !en.Hidden || en.IsDir || en.Size != 0 {
			t.Errorf(".env = %+v", en)
		}
		if en := byName[".hidden_dir"]; !en.Hidden || !en.IsDir || en.Perm != "drwxr-xr-x" {
			t.Errorf(".hidden_dir = %+v", en)
		}
		if en := byName["B.txt"]; en.Size != 1234 || !en.ModTime.Equal(mtime) || en.Hidden || en.Perm != "-rw-r--r--" || en.Path != path.Join(dir, "B.txt") {
			t.Errorf("B.txt = %+v", en)
		}
		if en := byName["b_dir"]; en.Perm != "drwxrwxrwt" && e.openssh { // pkg/sftp's server drops the sticky bit
			t.Errorf("b_dir perm = %q", en.Perm)
		}
		if en := byName["link_to_dir"]; !en.IsLink || en.IsDir || !en.TargetIsDir || en.LinkTarget != "A_dir" || en.Perm != "lrwxrwxrwx" {
			t.Errorf("link_to_dir = %+v", en)
		}
		if en := byName["link_to_file"]; !en.IsLink || en.TargetIsDir || en.LinkTarget != "z.txt" {
			t.Errorf("link_to_file = %+v", en)
		}
		if en := byName["dangling"]; !en.IsLink || en.TargetIsDir || en.LinkTarget != "/nowhere/at/all" {
			t.Errorf("dangling = %+v", en)
		}
		for _, en := range l.Entries {
			if en.Owner != e.user || en.Group != e.group {
				t.Errorf("%s: owner %q group %q, want %q %q (uid %d)", en.Name, en.Owner, en.Group, e.user, e.group, en.UID)
			}
		}

		if _, err := e.files.List(t.Context(), e.path("list/a.txt")); !errors.Is(err, ErrNotDir) {
			t.Errorf("List(file) = %v, want ErrNotDir", err)
		}
		if _, err := e.files.List(t.Context(), e.path("nope")); !errors.Is(err, ErrNotExist) {
			t.Errorf("List(missing) = %v, want ErrNotExist", err)
		}
	})
}

func TestFilesListTruncated(t *testing.T) {
	e := newFilesEnv(t, "openssh")
	e.files.opts.WalkLimit = 150 // more than one SSH_FXP_NAME batch (OpenSSH: 100)
	for i := range 160 {
		e.write(t, fmt.Sprintf("many/f%03d", i), nil)
	}
	l, err := e.files.List(t.Context(), e.path("many"))
	if err != nil {
		t.Fatal(err)
	}
	if !l.Truncated || len(l.Entries) != 150 {
		t.Fatalf("Truncated %v, %d entries", l.Truncated, len(l.Entries))
	}
}

// TestFilesPermissionDenied: a folder the login may not enter is reported
// as such, for listing, upload, download and deletion.
func TestFilesPermissionDenied(t *testing.T) {
	e := newFilesEnv(t, "openssh") // the in-process server runs as root
	locked := e.path("locked")
	if err := os.Mkdir(locked, 0o700); err != nil { // root's
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(locked, "secret"), []byte("x"), 0o600)
	ctx := t.Context()
	if _, err := e.files.List(ctx, locked); !errors.Is(err, ErrPermission) || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("List = %v", err)
	}
	if _, err := e.files.Upload(ctx, locked, "f", strings.NewReader("x"), UploadOptions{}); !errors.Is(err, ErrPermission) {
		t.Errorf("Upload = %v", err)
	}
	if _, err := e.files.Open(ctx, filepath.Join(locked, "secret")); !errors.Is(err, ErrPermission) {
		t.Errorf("Open = %v", err)
	}
	if err := e.files.RemoveAll(ctx, locked); !errors.Is(err, ErrPermission) {
		t.Errorf("RemoveAll = %v", err)
	}
	if got := FileMessage(fmt.Errorf("wrapped: %w", newFileErr("list", locked, ErrPermission, nil))); got != `Permission denied: "locked".` {
		t.Errorf("FileMessage = %q", got)
	}
}

func TestFilesMkdir(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		p := e.path("new")
		if err := e.files.Mkdir(ctx, p); err != nil {
			t.Fatal(err)
		}
		if !mustStat(t, p).IsDir() {
			t.Fatal("not a folder")
		}
		if err := e.files.Mkdir(ctx, p); !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
			t.Errorf("Mkdir(existing) = %v, want ErrExists", err)
		}
		if err := e.files.Mkdir(ctx, e.path("no/such/parent")); !errors.Is(err, ErrNotExist) {
			t.Errorf("Mkdir(no parent) = %v, want ErrNotExist", err)
		}
		e.write(t, "file", []byte("x"))
		if err := e.files.Mkdir(ctx, e.path("file/sub")); !errors.Is(err, ErrNotDir) {
			t.Errorf("Mkdir(under a file) = %v, want ErrNotDir", err)
		}
		for _, bad := range []string{e.path("new") + "/..", "rel", e.path("a\x00b"), e.path(strings.Repeat("n", 256))} {
			if err := e.files.Mkdir(ctx, bad); !errors.Is(err, ErrInvalidName) && !errors.Is(err, ErrExists) {
				t.Errorf("Mkdir(%q) = %v, want ErrInvalidName", bad, err)
			}
		}
		got, err := e.files.MkdirAll(ctx, e.home, "x/y/z")
		if err != nil || got != e.path("x/y/z") || !mustStat(t, got).IsDir() {
			t.Fatalf("MkdirAll = %q, %v", got, err)
		}
		if _, err := e.files.MkdirAll(ctx, e.home, "x/y/z"); err != nil {
			t.Errorf("MkdirAll again = %v", err)
		}
		if _, err := e.files.MkdirAll(ctx, e.home, "file/z"); !errors.Is(err, ErrNotDir) {
			t.Errorf("MkdirAll through a file = %v, want ErrNotDir", err)
		}
		for _, bad := range []string{"../escape", "a/../../b", "/abs", "a//b", "./a", "a/.", ""} {
			if _, err := e.files.MkdirAll(ctx, e.path("x"), bad); !errors.Is(err, ErrInvalidName) {
				t.Errorf("MkdirAll(%q) = %v, want ErrInvalidName", bad, err)
			}
		}
		if _, err := os.Stat(filepath.Join(e.home, "..", "escape")); err == nil {
			t.Error("escaped the target folder")
		}
	})
}

func TestFilesRename(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		a := e.write(t, "a.txt", []byte("A"))
		b := e.write(t, "b.txt", []byte("B"))
		if err := e.files.Rename(ctx, a, b, false); !errors.Is(err, ErrExists) {
			t.Fatalf("Rename onto existing = %v, want ErrExists", err)
		}
		if got, _ := os.ReadFile(a); string(got) != "A" {
			t.Errorf("source changed: %q", got)
		}
		if got, _ := os.ReadFile(b); string(got) != "B" {
			t.Errorf("target changed: %q", got)
		}
		if err := e.files.Rename(ctx, a, b, true); err != nil {
			t.Fatalf("Rename overwrite = %v", err)
		}
		if got, _ := os.ReadFile(b); string(got) != "A" {
			t.Errorf("target = %q, want A", got)
		}
		if _, err := os.Lstat(a); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("source still there: %v", err)
		}
		c := e.path("c.txt")
		if err := e.files.Rename(ctx, b, c, false); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(c); string(got) != "A" {
			t.Errorf("renamed = %q", got)
		}
		// Folders, with and without a clash.
		d1, d2 := e.mkdir(t, "d1"), e.mkdir(t, "d2")
		e.write(t, "d1/inside", []byte("1"))
		if err := e.files.Rename(ctx, d1, d2, false); !errors.Is(err, ErrExists) {
			t.Errorf("Rename folder onto folder = %v, want ErrExists", err)
		}
		if err := e.files.Rename(ctx, c, d2, true); !errors.Is(err, ErrIsDir) {
			t.Errorf("Rename file onto folder, overwrite = %v, want ErrIsDir", err)
		}
		if err := e.files.Rename(ctx, d1, e.path("d3"), false); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(e.path("d3/inside")); string(got) != "1" {
			t.Errorf("moved folder content = %q", got)
		}
		if err := e.files.Rename(ctx, e.path("missing"), e.path("x"), false); !errors.Is(err, ErrNotExist) {
			t.Errorf("Rename missing = %v", err)
		}
		if err := e.files.Rename(ctx, c, e.path("d2")+"/..", false); !errors.Is(err, ErrInvalidName) && !errors.Is(err, ErrExists) {
			t.Errorf("Rename to .. = %v", err)
		}
		// A symbolic link is renamed, not its target.
		l := e.symlink(t, "d2", "link")
		if err := e.files.Rename(ctx, l, e.path("link2"), false); err != nil {
			t.Fatal(err)
		}
		if fi := mustStat(t, e.path("link2")); fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("link2 mode %v", fi.Mode())
		}
	})
}

func TestFilesRemove(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		f := e.write(t, "f", []byte("x"))
		if err := e.files.Remove(ctx, f); err != nil {
			t.Fatal(err)
		}
		if err := e.files.Remove(ctx, f); !errors.Is(err, ErrNotExist) {
			t.Errorf("Remove again = %v", err)
		}
		empty := e.mkdir(t, "empty")
		if err := e.files.Remove(ctx, empty); err != nil {
			t.Fatal(err)
		}
		full := e.mkdir(t, "full")
		e.write(t, "full/a", []byte("a"))
		if err := e.files.Remove(ctx, full); !errors.Is(err, ErrDirNotEmpty) {
			t.Errorf("Remove(non-empty) = %v, want ErrDirNotEmpty", err)
		}

		// RemoveAll deletes links, never what they point to.
		outside := e.mkdir(t, "outside")
		e.write(t, "outside/keep", []byte("keep"))
		e.write(t, "tree/a/b/c/deep.txt", []byte("deep"))
		e.write(t, "tree/top.txt", []byte("top"))
		e.mkdir(t, "tree/emptydir")
		e.symlink(t, outside, "tree/a/link_out")
		e.symlink(t, "../../outside/keep", "tree/a/b/file_link")
		files, dirs, size, err := e.files.CountTree(ctx, e.path("tree"))
		if err != nil || files != 4 || dirs != 4 || size < 7 {
			t.Errorf("CountTree = %d files, %d dirs, %d bytes, %v; want 4, 4", files, dirs, size, err)
		}
		if err := e.files.RemoveAll(ctx, e.path("tree")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(e.path("tree")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("tree still there: %v", err)
		}
		if got, _ := os.ReadFile(e.path("outside/keep")); string(got) != "keep" {
			t.Error("RemoveAll followed a link")
		}
		if err := e.files.RemoveAll(ctx, "/"); err == nil {
			t.Error("RemoveAll(/) allowed")
		}
		// RemoveAll on a link to a folder removes the link only.
		l := e.symlink(t, outside, "link_to_outside")
		if err := e.files.RemoveAll(ctx, l); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(e.path("outside/keep")); err != nil {
			t.Error("RemoveAll(link) removed the target")
		}
	})
}

func TestFilesCountTree(t *testing.T) {
	e := newFilesEnv(t, "openssh")
	ctx := t.Context()
	for i := range 30 {
		e.write(t, fmt.Sprintf("t/d%d/f%d", i%3, i), bytes.Repeat([]byte("x"), i))
	}
	files, dirs, size, err := e.files.CountTree(ctx, e.path("t"))
	if err != nil || files != 30 || dirs != 3 || size != 435 {
		t.Fatalf("CountTree = %d, %d, %d, %v; want 30, 3, 435", files, dirs, size, err)
	}
	if _, _, _, err := e.files.CountTree(ctx, e.path("t/d0/f0")); !errors.Is(err, ErrNotDir) {
		t.Errorf("CountTree(file) = %v", err)
	}
	e.files.opts.WalkLimit = 10
	files, dirs, _, err = e.files.CountTree(ctx, e.path("t"))
	if !errors.Is(err, ErrTooLarge) || files+dirs != 10 {
		t.Errorf("bounded CountTree = %d, %d, %v; want 10 entries and ErrTooLarge", files, dirs, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := e.files.CountTree(cctx, e.path("t")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled CountTree = %v", err)
	}
}

// transfer uploads size pseudo-random bytes and downloads them back, both
// ways through every download path, checking length and SHA-256.
func transfer(t testing.TB, e *filesEnv, size int64) {
	t.Helper()
	ctx := context.Background()
	want, _ := sha256Of(t, randReader(uint64(size), size))
	peak := watchHeap(t)
	start := time.Now()
	res, err := e.files.Upload(ctx, e.home, "big.bin", randReader(uint64(size), size), UploadOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	up := time.Since(start)
	if res.Size != size || res.Path != e.path("big.bin") || res.Replaced {
		t.Fatalf("Upload = %+v", res)
	}
	if got, n := fileSHA256(t, res.Path); got != want || n != size {
		t.Fatalf("uploaded file: %d bytes sha256 %s, want %d %s", n, got, size, want)
	}
	noTempFiles(t, e.home)

	start = time.Now()
	rf, err := e.files.Open(ctx, res.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if rf.Size() != size {
		t.Fatalf("Size = %d", rf.Size())
	}
	if got, n := sha256Of(t, rf); got != want || n != size { // WriteTo
		t.Fatalf("WriteTo: %d bytes sha256 %s, want %d %s", n, got, size, want)
	}
	down := time.Since(start)
	if _, err := rf.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if got, n := sha256Of(t, struct{ io.Reader }{rf}); got != want || n != size { // Read
		t.Fatalf("Read: %d bytes sha256 %s, want %d %s", n, got, size, want)
	}
	mib := float64(size) / (1 << 20)
	heap := peak()
	t.Logf("%.0f MiB: upload %v (%.0f MiB/s), download %v (%.0f MiB/s), peak heap %d MiB",
		mib, up.Round(time.Millisecond), mib/up.Seconds(), down.Round(time.Millisecond), mib/down.Seconds(), heap>>20)
	// Flat memory: bounded pipelines, whatever the size (the hashing and
	// the test's own buffers included).
	if heap > 96<<20 {
		t.Errorf("peak heap %d MiB while moving %.0f MiB", heap>>20, mib)
	}
}

func TestFilesTransfer(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 4 << 20
	}
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		transfer(t, e, size)
		// Sizes around packet boundaries, including empty.
		for _, n := range []int64{0, 1, packetSize - 1, packetSize, packetSize + 1, 3*packetSize + 17} {
			data, _ := io.ReadAll(randReader(uint64(n)+1, n))
			name := fmt.Sprintf("n%d", n)
			if _, err := e.files.Upload(t.Context(), e.home, name, bytes.NewReader(data), UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(e.path(name)); !bytes.Equal(got, data) {
				t.Fatalf("%s: uploaded %d bytes, want %d", name, len(got), n)
			}
			rf, err := e.files.Open(t.Context(), e.path(name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rf)
			rf.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: downloaded %d bytes, %v", name, len(got), err)
			}
		}
	})
}

// TestFilesUploadInterrupted: an upload cut off half way — the body fails,
// the context is cancelled, or the body is shorter or longer than announced
// — leaves no file at the final name, an existing file there unchanged byte
// for byte, and no temporary file.
func TestFilesUploadInterrupted(t *testing.T) {
	const size = 8 << 20
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		original := []byte("the original content, which must survive\n")
		e.write(t, "existing.txt", original)
		cases := []struct {
			name string
			body func(cancel context.CancelFunc) io.Reader
			opts UploadOptions
			want error
		}{
			{"body fails", func(context.CancelFunc) io.Reader {
				return &failingReader{r: randReader(1, size), n: size / 2, err: io.ErrUnexpectedEOF}
			}, UploadOptions{}, ErrIncomplete},
			{"context cancelled", func(cancel context.CancelFunc) io.Reader {
				return &cancellingReader{r: randReader(2, size), n: size / 2, cancel: cancel}
			}, UploadOptions{}, context.Canceled},
			{"shorter than announced", func(context.CancelFunc) io.Reader {
				return randReader(3, size/2)
			}, UploadOptions{Size: size}, ErrIncomplete},
			{"longer than announced", func(context.CancelFunc) io.Reader {
				return randReader(4, size)
			}, UploadOptions{Size: size / 2}, ErrIncomplete},
		}
		for _, c := range cases {
			for _, target := range []string{"new.txt", "existing.txt"} {
				t.Run(c.name+"/"+target, func(t *testing.T) {
					ctx, cancel := context.WithCancel(t.Context())
					defer cancel()
					opts := c.opts
					opts.Overwrite = target == "existing.txt"
					_, err := e.files.Upload(ctx, e.home, target, c.body(cancel), opts)
					if !errors.Is(err, c.want) {
						t.Fatalf("Upload = %v, want %v", err, c.want)
					}
					if target == "new.txt" {
						if _, err := os.Lstat(e.path(target)); !errors.Is(err, fs.ErrNotExist) {
							t.Errorf("final name exists: %v", err)
						}
					} else if got, _ := os.ReadFile(e.path(target)); !bytes.Equal(got, original) {
						t.Errorf("existing file changed: %d bytes", len(got))
					}
					noTempFiles(t, e.home)
					if FileMessage(err) == "" {
						t.Error("no message")
					}
				})
			}
		}
	})
}

func TestFilesUploadExistingAndOverwrite(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		p := e.write(t, "script.sh", []byte("#!/bin/sh\necho old\n"))
		os.Chmod(p, 0o750)
		body := &failingReader{r: strings.NewReader("never read"), n: 100, err: errors.New("read")}
		_, err := e.files.Upload(ctx, e.home, "script.sh", body, UploadOptions{})
		if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Upload onto existing = %v, want ErrExists", err)
		}
		if body.n != 100 {
			t.Error("the body was read although the name was taken")
		}
		res, err := e.files.Upload(ctx, e.home, "script.sh", strings.NewReader("#!/bin/sh\necho new\n"), UploadOptions{Overwrite: true})
		if err != nil || !res.Replaced {
			t.Fatalf("Upload overwrite = %+v, %v", res, err)
		}
		if got, _ := os.ReadFile(p); string(got) != "#!/bin/sh\necho new\n" {
			t.Errorf("content = %q", got)
		}
		if m := mustStat(t, p).Mode().Perm(); m != 0o750 {
			t.Errorf("mode = %v, want the old file's 0750", m)
		}
		e.mkdir(t, "adir")
		if _, err := e.files.Upload(ctx, e.home, "adir", strings.NewReader("x"), UploadOptions{Overwrite: true}); !errors.Is(err, ErrIsDir) {
			t.Errorf("Upload over a folder = %v, want ErrIsDir", err)
		}
		if _, err := e.files.Upload(ctx, e.path("script.sh"), "x", strings.NewReader("x"), UploadOptions{}); !errors.Is(err, ErrNotDir) {
			t.Errorf("Upload into a file = %v, want ErrNotDir", err)
		}
		if _, err := e.files.Upload(ctx, e.path("nope"), "x", strings.NewReader("x"), UploadOptions{}); !errors.Is(err, ErrNotExist) {
			t.Errorf("Upload into missing folder = %v, want ErrNotExist", err)
		}
		noTempFiles(t, e.home)
	})
}

func TestFilesUploadFolder(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		target := e.mkdir(t, "target")
		files := map[string]string{
			"proj/README.md":          "# readme",
			"proj/src/main.go":        "package main",
			"proj/src/internal/x.go":  "package internal",
			"proj/.config/settings":   "a=1",
			"proj/deep/er/and/deeper": "!",
		}
		for rel, content := range files {
			if _, err := e.files.Upload(ctx, target, rel, strings.NewReader(content), UploadOptions{}); err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
		}
		for rel, content := range files {
			if got, err := os.ReadFile(filepath.Join(target, rel)); err != nil || string(got) != content {
				t.Errorf("%s = %q, %v", rel, got, err)
			}
		}
		for _, bad := range []string{"../escape.txt", "proj/../../escape.txt", "/etc/escape.txt", "proj//x", "proj/./x", "proj/", ""} {
			if _, err := e.files.Upload(ctx, target, bad, strings.NewReader("x"), UploadOptions{}); !errors.Is(err, ErrInvalidName) {
				t.Errorf("Upload(%q) = %v, want ErrInvalidName", bad, err)
			}
		}
		if _, err := os.Stat(e.path("escape.txt")); err == nil {
			t.Error("a file escaped the target folder")
		}
		e.write(t, "target/blocker", []byte("x"))
		if _, err := e.files.Upload(ctx, target, "blocker/x", strings.NewReader("x"), UploadOptions{}); !errors.Is(err, ErrNotDir) {
			t.Errorf("Upload through a file = %v, want ErrNotDir", err)
		}
	})
}

func TestFilesRange(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		const size = 3<<20 + 12345
		data, _ := io.ReadAll(randReader(7, size))
		p := e.write(t, "range.bin", data)
		rf, err := e.files.Open(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		defer rf.Close()
		ranges := [][2]int64{{0, 0}, {0, 1}, {0, size}, {size - 1, 1}, {size, 0}, {1, packetSize},
			{packetSize - 3, 7}, {100000, smallRange + 1}, {12345, 2 << 20}, {size - 300000, 300000}}
		for _, r := range ranges {
			var b bytes.Buffer
			n, err := rf.CopyRange(&b, r[0], r[1])
			if err != nil || n != r[1] || !bytes.Equal(b.Bytes(), data[r[0]:r[0]+r[1]]) {
				t.Errorf("CopyRange(%d, %d) = %d, %v (content equal: %v)", r[0], r[1], n, err, bytes.Equal(b.Bytes(), data[r[0]:r[0]+r[1]]))
			}
			buf := make([]byte, r[1])
			if n, err := rf.ReadAt(buf, r[0]); int64(n) != r[1] || (err != nil && !(err == io.EOF && r[0]+r[1] == size)) || !bytes.Equal(buf, data[r[0]:r[0]+r[1]]) {
				t.Errorf("ReadAt(%d, %d) = %d, %v", r[0], r[1], n, err)
			}
		}
		if _, err := rf.CopyRange(io.Discard, size-1, 2); err == nil {
			t.Error("CopyRange beyond the end accepted")
		}
		// ReadAt past the end, and mixed with sequential reads.
		buf := make([]byte, 100)
		if n, err := rf.ReadAt(buf, size-10); n != 10 || err != io.EOF {
			t.Errorf("ReadAt at the end = %d, %v", n, err)
		}
		if _, err := rf.Seek(1000, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		first := make([]byte, 5000)
		if _, err := io.ReadFull(rf, first); err != nil || !bytes.Equal(first, data[1000:6000]) {
			t.Fatalf("Read after Seek: %v", err)
		}
		rf.ReadAt(buf, 0) // stops the read-ahead; Read goes on where it was
		rest, err := io.ReadAll(rf)
		if err != nil || !bytes.Equal(rest, data[6000:]) {
			t.Fatalf("Read rest: %d bytes, %v", len(rest), err)
		}

		// As the HTTP layer will use it: http.ServeContent with Range.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rf, err := e.files.Open(r.Context(), p)
			if err != nil {
				http.Error(w, FileMessage(err), http.StatusNotFound)
				return
			}
			defer rf.Close()
			http.ServeContent(w, r, rf.Name(), rf.ModTime(), rf)
		}))
		defer srv.Close()
		for _, hr := range []struct {
			header   string
			from, to int64
		}{{"", 0, size}, {"bytes=0-0", 0, 1}, {"bytes=1000000-", 1000000, size}, {"bytes=-5000", size - 5000, size}, {"bytes=70000-2900000", 70000, 2900001}} {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			if hr.header != "" {
				req.Header.Set("Range", hr.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(body, data[hr.from:hr.to]) {
				t.Errorf("Range %q: status %d, %d bytes, %v", hr.header, resp.StatusCode, len(body), err)
			}
		}
	})
}

// TestFilesDownloadShrinking: a file that shrinks while it is downloaded
// fails with ErrIncomplete instead of ending short in silence.
func TestFilesDownloadShrinking(t *testing.T) {
	e := newFilesEnv(t, "openssh")
	data, _ := io.ReadAll(randReader(9, 2<<20))
	p := e.write(t, "shrink.bin", data)
	rf, err := e.files.Open(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if err := os.Truncate(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	n, err := rf.WriteTo(io.Discard)
	if !errors.Is(err, ErrIncomplete) || n != 1<<20 {
		t.Errorf("WriteTo = %d, %v; want 1 MiB and ErrIncomplete", n, err)
	}
	if _, err := rf.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, struct{ io.Reader }{rf}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Read = %v, want ErrIncomplete", err)
	}
}

func TestFilesOpenRefusesFoldersAndFIFOs(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		e.mkdir(t, "dir")
		if _, err := e.files.Open(t.Context(), e.path("dir")); !errors.Is(err, ErrIsDir) {
			t.Errorf("Open(folder) = %v, want ErrIsDir", err)
		}
		if _, err := e.files.Open(t.Context(), e.path("missing")); !errors.Is(err, ErrNotExist) {
			t.Errorf("Open(missing) = %v", err)
		}
	})
}

// zipTree reads an archive into path → content ("->target" for links, "/" for folders).
func zipTree(t testing.TB, b []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	tree := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		switch {
		case f.Mode()&fs.ModeSymlink != 0:
			tree[f.Name] = "->" + string(content)
		case f.Mode().IsDir():
			tree[f.Name] = "/"
		default:
			tree[f.Name] = string(content)
		}
	}
	return tree
}

func TestFilesWriteZip(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		big, _ := io.ReadAll(randReader(11, 1<<20+5))
		e.write(t, "outside/secret", []byte("must not be archived"))
		e.write(t, "proj/a.txt", []byte("alpha"))
		e.write(t, "proj/sub/b.log", bytes.Repeat([]byte("log line\n"), 1000))
		e.write(t, "proj/sub/deeper/c.gz", big)
		e.write(t, "proj/.hidden", []byte("h"))
		e.mkdir(t, "proj/empty")
		e.symlink(t, "sub/b.log", "proj/link_in")
		e.symlink(t, "../outside/secret", "proj/link_out")
		e.symlink(t, e.path("outside"), "proj/sub/link_abs")
		e.symlink(t, "../../outside", "proj/sub/link_out_dir")
		if err := syscall.Mkfifo(e.path("proj/fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.chown(t, e.path("proj/fifo"))

		var buf bytes.Buffer
		res, err := e.files.WriteZip(ctx, e.path("proj"), &buf)
		if err != nil {
			t.Fatal(err)
		}
		got := zipTree(t, buf.Bytes())
		note := got["proj/"+SkippedNoteName]
		delete(got, "proj/"+SkippedNoteName)
		want := map[string]string{
			"proj/":                "/",
			"proj/.hidden":         "h",
			"proj/a.txt":           "alpha",
			"proj/empty/":          "/",
			"proj/link_in":         "->sub/b.log",
			"proj/sub/":            "/",
			"proj/sub/b.log":       strings.Repeat("log line\n", 1000),
			"proj/sub/deeper/":     "/",
			"proj/sub/deeper/c.gz": string(big),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: got %d bytes %.40q, want %d bytes", k, len(got[k]), got[k], len(v))
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected entry %q", k)
			}
		}
		if res.Files != 4 || res.Dirs != 4 || res.Links != 1 || res.Bytes != int64(5+9000+len(big)+1) {
			t.Errorf("result = %+v", res)
		}
		var skipped []string
		for _, s := range res.Skipped {
			skipped = append(skipped, s.Path)
		}
		slices.Sort(skipped)
		if want := []string{"proj/fifo", "proj/link_out", "proj/sub/link_abs", "proj/sub/link_out_dir"}; !slices.Equal(skipped, want) {
			t.Errorf("skipped %q, want %q", skipped, want)
		}
		for _, s := range skipped {
			if !strings.Contains(note, fmt.Sprintf("%q", s)) {
				t.Errorf("note does not mention %s:\n%s", s, note)
			}
		}
		if strings.Contains(buf.String(), "must not be archived") {
			t.Error("archive holds content from outside the folder")
		}

		// Unpacked by the system's unzip, where available, the tree matches.
		if _, err := os.Stat("/usr/bin/unzip"); err == nil {
			zp := filepath.Join(t.TempDir(), "a.zip")
			os.WriteFile(zp, buf.Bytes(), 0o644)
			out, err := execCommand("unzip", "-t", zp)
			if err != nil {
				t.Errorf("unzip -t: %v\n%s", err, out)
			}
		}

		if _, err := e.files.WriteZip(ctx, e.path("proj/a.txt"), io.Discard); !errors.Is(err, ErrNotDir) {
			t.Errorf("WriteZip(file) = %v", err)
		}
		// A destination that fails ends the archive with its error.
		werr := errors.New("browser gone")
		if _, err := e.files.WriteZip(ctx, e.path("proj"), &failWriter{n: 3000, err: werr}); !errors.Is(err, werr) {
			t.Errorf("WriteZip to failing writer = %v", err)
		}
	})
}

// watchHeap samples the heap until the returned function is called, which
// returns the peak seen.
func watchHeap(t testing.TB) func() uint64 {
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	var peak uint64
	stopFn := func() uint64 {
		once.Do(func() { close(stop); peak = <-done })
		return peak
	}
	t.Cleanup(func() { stopFn() })
	return stopFn
}

type failWriter struct {
	n   int
	err error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// odd names: every one must survive upload, listing, download, rename,
// mkdir and archiving unchanged.
var oddNames = []string{
	`quote"d 'single'`,
	"new\nline",
	"<script>alert(document.cookie)",
	"<img src=x onerror=alert(1)>",
	"emoji 🚀🎉",
	"עברית RTL مرحبا",
	"tab\tand back\\slash",
	" leading and trailing ",
	"-starts-with-dash",
	"semi;colon&amp$(x)`y`",
	"%2e%2e%2f",
	"日本語のファイル名",
}

func TestFilesOddNames(t *testing.T) {
	forEachFilesBackend(t, func(t *testing.T, e *filesEnv) {
		ctx := t.Context()
		dir := e.mkdir(t, "odd")
		for _, name := range oddNames {
			if _, err := e.files.Upload(ctx, dir, name, strings.NewReader("content of "+name), UploadOptions{}); err != nil {
				t.Fatalf("Upload %q: %v", name, err)
			}
			if err := e.files.Mkdir(ctx, path.Join(dir, "dir "+name)); err != nil {
				t.Fatalf("Mkdir %q: %v", name, err)
			}
		}
		l, err := e.files.List(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, en := range l.Entries {
			listed[en.Name] = true
			if en.Owner != e.user {
				t.Errorf("%q: owner %q, want %q (longname parsing)", en.Name, en.Owner, e.user)
			}
		}
		for _, name := range oddNames {
			if !listed[name] || !listed["dir "+name] {
				t.Errorf("%q not listed", name)
			}
			rf, err := e.files.Open(ctx, path.Join(dir, name))
			if err != nil {
				t.Fatalf("Open %q: %v", name, err)
			}
			got, _ := io.ReadAll(rf)
			rf.Close()
			if string(got) != "content of "+name {
				t.Errorf("%q: downloaded %q", name, got)
			}
			if err := e.files.Rename(ctx, path.Join(dir, name), path.Join(dir, name+" (2)"), false); err != nil {
				t.Errorf("Rename %q: %v", name, err)
			}
			if _, err := os.Stat(filepath.Join(dir, name+" (2)")); err != nil {
				t.Errorf("renamed %q: %v", name, err)
			}
		}
		var buf bytes.Buffer
		if _, err := e.files.WriteZip(ctx, dir, &buf); err != nil {
			t.Fatal(err)
		}
		tree := zipTree(t, buf.Bytes())
		for _, name := range oddNames {
			if tree["odd/"+name+" (2)"] != "content of "+name || tree["odd/dir "+name+"/"] != "/" {
				t.Errorf("%q not archived", name)
			}
		}
		for _, bad := range []string{"a/b", "a\x00b", ".", ".."} {
			if _, err := e.files.Upload(ctx, dir, bad, strings.NewReader(""), UploadOptions{}); !errors.Is(err, ErrInvalidName) && bad != "a/b" {
				t.Errorf("Upload(%q) = %v", bad, err)
			}
		}
	})
}

// TestFilesDiskFull fills a small tmpfs: the upload fails with
// ErrDiskFull, leaves no temporary file and the space is given back.
func TestFilesDiskFull(t *testing.T) {
	e := newFilesEnv(t, "openssh")
	mnt := e.mkdir(t, "small")
	if out, err := execCommand("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=8m,mode=0755,uid=%d,gid=%d", e.uid, e.gid), "tmpfs", mnt); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { execCommand("umount", mnt) })
	ctx := t.Context()
	// Unknown size: found out by the failing write.
	_, err := e.files.Upload(ctx, mnt, "big.bin", randReader(1, 32<<20), UploadOptions{})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Upload = %v, want ErrDiskFull", err)
	}
	noTempFiles(t, mnt)
	if got := FileMessage(err); got != `There is not enough space on the server for "big.bin".` {
		t.Errorf("FileMessage = %q", got)
	}
	// Known size: refused before a byte is sent.
	body := &failingReader{r: randReader(1, 32<<20), n: 32 << 20}
	if _, err := e.files.Upload(ctx, mnt, "big.bin", body, UploadOptions{Size: 32 << 20}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Upload with size = %v, want ErrDiskFull", err)
	}
	if body.n != 32<<20 {
		t.Error("body read although it could not fit")
	}
	// What fits still fits: the failed upload gave its space back.
	if _, err := e.files.Upload(ctx, mnt, "fits.bin", randReader(2, 6<<20), UploadOptions{Size: 6 << 20}); err != nil {
		t.Fatalf("Upload after a full disk: %v", err)
	}
}

// TestFilesListWithoutLongnames: a server that allows one session per
// connection still gets listings, without owner names; a listing session
// that breaks is replaced.
func TestFilesListSessions(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{ExtraConfig: []string{"MaxSessions 1"}})
	f, err := NewFiles(s.Dial(t), FilesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 2 {
		l, err := f.List(t.Context(), f.Home())
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Entries) == 0 || l.Entries[0].Owner != "" {
			t.Errorf("entries %+v", l.Entries)
		}
	}

	e := newFilesEnv(t, "openssh")
	e.write(t, "x", nil)
	if _, err := e.files.List(t.Context(), e.home); err != nil {
		t.Fatal(err)
	}
	e.files.raw.session.Close() // as if it had broken
	for range 2 {
		l, err := e.files.List(t.Context(), e.home)
		if err != nil || len(l.Entries) != 2 || l.Entries[1].Owner != e.user {
			t.Fatalf("List after the session broke = %+v, %v", l, err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.files.List(ctx, e.home); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled List = %v", err)
	}
}

// TestFilesConnectionLost: operations on a closed session say so.
func TestFilesConnectionLost(t *testing.T) {
	e := newFilesEnv(t, "inprocess")
	e.files.Close()
	if _, err := e.files.List(t.Context(), e.home); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("List after Close = %v", err)
	}
	if _, err := e.files.Stat(t.Context(), e.home); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Stat after Close = %v", err)
	}
}
