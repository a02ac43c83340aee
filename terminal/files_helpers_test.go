package terminal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/sshserver"
	"github.com/shellgate/shellgate/internal/testsshd"
)

// filesEnv is a Files on a server running on this machine, so remote paths
// are local paths and fixtures are made with the os package.
type filesEnv struct {
	files    *Files
	client   *ssh.Client
	home     string
	uid, gid int // owner for fixtures; -1 keeps the test's own
	user     string
	group    string
	openssh  bool
	sshd     *testsshd.SSHD // nil for the in-process server
}

// filesBackends are the servers the file tests run against: real OpenSSH
// (what users connect to) and the in-process pkg/sftp server, held to
// the same behaviour.
var filesBackends = []string{"openssh", "inprocess"}

func forEachFilesBackend(t *testing.T, fn func(t *testing.T, e *filesEnv)) {
	for _, b := range filesBackends {
		t.Run(b, func(t *testing.T) { fn(t, newFilesEnv(t, b)) })
	}
}

func newFilesEnv(t testing.TB, backend string) *filesEnv {
	t.Helper()
	e := &filesEnv{uid: -1, gid: -1}
	switch backend {
	case "openssh":
		s := testsshd.Start(t, testsshd.Options{})
		s.RequireThrowawayUser(t)
		e.sshd, e.openssh = s, true
		e.client = s.Dial(t)
		e.home = s.Home
		u, err := user.Lookup(s.User)
		if err != nil {
			t.Fatal(err)
		}
		e.uid, _ = strconv.Atoi(u.Uid)
		e.gid, _ = strconv.Atoi(u.Gid)
		e.user = s.User
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			e.group = g.Name
		}
	case "inprocess":
		dir := t.TempDir()
		signer := newSigner(t)
		srv, err := sshserver.Start(sshserver.Config{
			Dir: dir,
			PublicKey: func(_ string, k ssh.PublicKey) bool {
				return bytes.Equal(k.Marshal(), signer.PublicKey().Marshal())
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		c, err := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
			User: "tester", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		e.client = c
		e.home = dir
		u, _ := user.Current()
		e.user = u.Username
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			e.group = g.Name
		}
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	f, err := NewFiles(e.client, FilesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	e.files = f
	return e
}

// path returns the absolute path of rel in the home folder.
func (e *filesEnv) path(rel string) string { return filepath.Join(e.home, rel) }

func (e *filesEnv) chown(t testing.TB, p string) {
	t.Helper()
	if e.uid < 0 {
		return
	}
	if err := os.Lchown(p, e.uid, e.gid); err != nil {
		t.Fatal(err)
	}
}

// mkdir creates rel and its parents in the home folder, owned by the login.
func (e *filesEnv) mkdir(t testing.TB, rel string) string {
	t.Helper()
	p := e.path(rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := p; d != e.home && strings.HasPrefix(d, e.home); d = filepath.Dir(d) {
		e.chown(t, d)
	}
	return p
}

// write creates the file rel in the home folder, owned by the login.
func (e *filesEnv) write(t testing.TB, rel string, data []byte) string {
	t.Helper()
	e.mkdir(t, filepath.Dir(rel))
	p := e.path(rel)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.chown(t, p)
	return p
}

func (e *filesEnv) symlink(t testing.TB, target, rel string) string {
	t.Helper()
	p := e.path(rel)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	e.chown(t, p)
	return p
}

// noTempFiles fails if an upload's temporary file is left in dir.
func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		if strings.Contains(de.Name(), ".shellgate-upload-") {
			t.Errorf("temporary file left behind: %q", de.Name())
		}
	}
}

// randReader yields n pseudo-random bytes from seed, quickly.
func randReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(seedBytes(seed)), n)
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// sha256Of hashes what r yields.
func sha256Of(t testing.TB, r io.Reader) (string, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

func fileSHA256(t testing.TB, p string) (string, int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return sha256Of(t, f)
}

// failingReader yields data until n bytes, then fails with err.
type failingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// cancellingReader cancels ctx once n bytes have been read, and goes on
// yielding data, like a body whose client has not noticed yet.
type cancellingReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func mustStat(t testing.TB, p string) fs.FileInfo {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}
