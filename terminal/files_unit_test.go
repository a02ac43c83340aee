package terminal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pkg/sftp"
)

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func TestLsMode(t *testing.T) {
	for _, c := range []struct {
		mode fs.FileMode
		want string
	}{
		{0o644, "-rw-r--r--"},
		{fs.ModeDir | 0o755, "drwxr-xr-x"},
		{fs.ModeSymlink | 0o777, "lrwxrwxrwx"},
		{fs.ModeSetuid | 0o755, "-rwsr-xr-x"},
		{fs.ModeSetuid | 0o644, "-rwSr--r--"},
		{fs.ModeSetgid | 0o2710, "-rwx--s---"},
		{fs.ModeDir | fs.ModeSticky | 0o777, "drwxrwxrwt"},
		{fs.ModeDir | fs.ModeSticky | 0o776, "drwxrwxrwT"},
		{fs.ModeNamedPipe | 0o600, "prw-------"},
		{fs.ModeSocket | 0o600, "srw-------"},
		{fs.ModeDevice | fs.ModeCharDevice | 0o666, "crw-rw-rw-"},
		{fs.ModeDevice | 0o660, "brw-rw----"},
		{0, "----------"},
	} {
		if got := lsMode(c.mode); got != c.want {
			t.Errorf("lsMode(%v) = %q, want %q", c.mode, got, c.want)
		}
	}
	// SFTP st_mode bits round-trip through fileMode.
	for _, m := range []uint32{0o100644, 0o040755, 0o120777, 0o104755, 0o041777, 0o010600, 0o140600, 0o020666, 0o060660} {
		if got := lsMode(fileMode(m)); got[0] == '?' {
			t.Errorf("%o: %q", m, got)
		}
	}
}

func TestOwnerFromLongname(t *testing.T) {
	e := rawEntry{flags: attrSize | attrUIDGID | attrPermissions, size: 1234, uid: 1000, gid: 1001, perm: 0o100644}
	for _, c := range []struct {
		long         string
		owner, group string
	}{
		{"-rw-r--r--    1 alice    staff        1234 Jan  1 12:00 name", "alice", "staff"},
		{"-rw-r--r--    1 alice    staff        1234 Jan  1 12:00 name with   spaces", "alice", "staff"},
		{"-rw-r--r--    1 1000     1001         1234 Jan  1 12:00 name", "", ""},      // no passwd entries
		{"-rw-r--r--    1 alice    1001         1234 Jan  1 12:00 name", "alice", ""}, // no group entry
		{"-rw-r--r--    1 alice    staff        9999 Jan  1 12:00 name", "", ""},      // size disagrees
		{"drwxr-xr-x    1 alice    staff        1234 Jan  1 12:00 name", "", ""},      // mode disagrees
		{"name", "", ""},
		{"", "", ""},
	} {
		o, g := ownerFromLongname(c.long, e)
		if o != c.owner || g != c.group {
			t.Errorf("%q: %q %q, want %q %q", c.long, o, g, c.owner, c.group)
		}
	}
}

func FuzzOwnerFromLongname(f *testing.F) {
	f.Add("-rw-r--r--    1 alice    staff        1234 Jan  1 12:00 name", uint32(0o100644), uint64(1234))
	f.Fuzz(func(t *testing.T, long string, perm uint32, size uint64) {
		o, g := ownerFromLongname(long, rawEntry{flags: attrSize | attrPermissions, perm: perm, size: size})
		if strings.ContainsAny(o+g, " \t\n") {
			t.Errorf("names with spaces: %q %q", o, g)
		}
	})
}

func TestTempName(t *testing.T) {
	for _, name := range []string{"a.txt", strings.Repeat("x", 255), strings.Repeat("é", 127), strings.Repeat("🚀", 63) + "x"} {
		tn := tempName(name)
		if len(tn) > nameMax || !strings.HasPrefix(tn, ".") || !strings.Contains(tn, ".shellgate-upload-") {
			t.Errorf("tempName(%d bytes) = %q (%d bytes)", len(name), tn, len(tn))
		}
		if utf8.ValidString(name) && !utf8.ValidString(tn) {
			t.Errorf("tempName split a character: %q", tn)
		}
	}
	if tempName("a") == tempName("a") {
		t.Error("temporary names repeat")
	}
}

func TestCheckRel(t *testing.T) {
	for rel, ok := range map[string]bool{
		"a": true, "a/b/c.txt": true, "..a/b..": true, "a b/c d": true, "ü/🚀": true,
		"": false, "/a": false, "a/": false, "a//b": false, "..": false, "a/../b": false, "./a": false,
		"a/./b": false, "a\x00b": false, strings.Repeat("x", 256): false,
	} {
		_, err := checkRel("upload", rel)
		if (err == nil) != ok {
			t.Errorf("checkRel(%q) = %v, want ok=%v", rel, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("checkRel(%q) = %v, want ErrInvalidName", rel, err)
		}
	}
}

func FuzzCheckRel(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/../../b", "/abs", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		parts, err := checkRel("upload", rel)
		if err != nil {
			return
		}
		// Whatever is accepted stays inside the target.
		joined := "/target/" + strings.Join(parts, "/")
		if got := cleanJoin("/target", rel); got != joined || !strings.HasPrefix(got, "/target/") {
			t.Errorf("%q escapes or changes: %q vs %q", rel, got, joined)
		}
	})
}

func cleanJoin(base, rel string) string {
	p, _ := checkPath("x", base+"/"+rel)
	return p
}

func TestLinkInside(t *testing.T) {
	for _, c := range []struct {
		rel, target string
		want        bool
	}{
		{"proj/link", "a.txt", true},
		{"proj/link", "sub/../a.txt", true},
		{"proj/sub/link", "../a.txt", true},
		{"proj/sub/link", "..", true},
		{"proj/link", ".", true},
		{"proj/link", "../outside", false},
		{"proj/sub/link", "../../outside", false},
		{"proj/link", "../proj/a.txt", true}, // lexically back inside
		{"proj/link", "../projX/a", false},
		{"proj/link", "/etc/passwd", false},
		{"proj/link", "", false},
	} {
		if got := linkInside(c.rel, c.target); got != c.want {
			t.Errorf("linkInside(%q, %q) = %v, want %v", c.rel, c.target, got, c.want)
		}
	}
}

func TestFileErrorsAndMessages(t *testing.T) {
	for _, c := range []struct {
		err  error
		is   []error
		want string
	}{
		{fileErr("list", "/home/a/x", fs.ErrNotExist), []error{ErrNotExist, fs.ErrNotExist}, `No such file or folder: "x".`},
		{fileErr("list", "/x", fs.ErrPermission), []error{ErrPermission, fs.ErrPermission}, `Permission denied: "x".`},
		{fileErr("upload", "/d/f", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxOpUnsupported)}), []error{ErrUnsupported}, "The server does not support this operation."},
		{fileErr("mkdir", "/d/f", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxBadMessage)}), []error{ErrInvalidName}, `"f" is not a valid name.`},
		{fileErr("list", "/", sftp.ErrSSHFxConnectionLost), []error{ErrConnectionLost}, "The connection to the server was lost."},
		{fileErr("upload", "/f", context.Canceled), []error{context.Canceled}, "The transfer was cancelled."},
		{newFileErr("upload", "/f", ErrExists, nil), []error{ErrExists, fs.ErrExist}, `"f" already exists.`},
		{newFileErr("upload", "/f", ErrDiskFull, errors.New("x")), []error{ErrDiskFull}, `There is not enough space on the server for "f".`},
		{newFileErr("delete", "/d", ErrDirNotEmpty, nil), []error{ErrDirNotEmpty}, `The folder "d" is not empty.`},
		{fileErr("rename", "/f", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxFailure)}), nil, `The server could not complete the operation on "f".`},
		{fmt.Errorf("handler: %w", newFileErr("upload", "/d/<script>", ErrIncomplete, nil)), []error{ErrIncomplete}, `The transfer of "<script>" did not complete; nothing was changed.`},
	} {
		for _, target := range c.is {
			if !errors.Is(c.err, target) {
				t.Errorf("%v: not %v", c.err, target)
			}
		}
		if got := FileMessage(c.err); got != c.want {
			t.Errorf("FileMessage(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if errors.Is(ErrNotExist, ErrExists) || errors.Is(ErrNotDir, fs.ErrNotExist) {
		t.Error("conditions overlap")
	}
	if FileMessage(nil) != "" {
		t.Error("message for nil")
	}
}
