package terminal

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Files is the file panel's view of one server: SFTP operations on the
// pooled SSH connection the terminal uses. It opens its own "sftp"
// subsystem sessions on that connection and closes only those; the
// connection stays the caller's.
//
// Paths are remote, absolute and slash-separated; names may hold any byte
// but NUL and "/". All methods are safe for concurrent use. Errors are
// *FileError values carrying one of the Err… conditions (see FileMessage).
//
// Transfers stream: downloads through RemoteFile (io.ReadSeeker,
// io.ReaderAt, io.WriterTo), uploads from any io.Reader, folders as a zip
// stream. Each keeps a bounded number of SFTP requests in flight
// (FilesOptions.Concurrency × 32 KiB), so memory stays flat whatever the
// file size.
type Files struct {
	client *ssh.Client
	sftp   *sftp.Client
	opts   FilesOptions
	home   string

	rawMu       sync.Mutex
	raw         *rawSFTP // listing session, opened on first use
	rawFailures int      // sessions the server refused to open
	closed      bool

	// beforeUpload, when set (by the Pool, before the Files is shared), is
	// told the folder of each upload: the orphan sweep.
	beforeUpload func(dir string)
}

// FilesOptions tune Files; the zero value is the default.
type FilesOptions struct {
	// Concurrency is the number of SFTP read or write requests kept in
	// flight per transfer. Default 64, as OpenSSH's sftp -R.
	Concurrency int
	// WalkLimit bounds the entries one listing or CountTree visits.
	// Default 200000.
	WalkLimit int
}

const (
	defaultConcurrency = 64
	defaultWalkLimit   = 200_000
	// packetSize is the SFTP read/write payload. 32 KiB is what every
	// server must accept; a larger request may be answered short, and
	// pkg/sftp's pipelined WriteTo would then skip the difference.
	packetSize = 32 << 10
	// maxDepth bounds recursion into folders (PATH_MAX allows ~2048).
	maxDepth = 1024
	// nameMax is the longest file name Linux file systems accept, in bytes.
	nameMax = 255
)

// NewFiles starts an SFTP session on client and resolves the login's home
// folder. Close ends the session.
func NewFiles(client *ssh.Client, opts FilesOptions) (*Files, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultConcurrency
	}
	if opts.WalkLimit <= 0 {
		opts.WalkLimit = defaultWalkLimit
	}
	c, err := sftp.NewClient(client,
		sftp.MaxPacket(packetSize),
		sftp.MaxConcurrentRequestsPerFile(opts.Concurrency),
		sftp.UseConcurrentReads(true),
		// Writes are pipelined explicitly in Upload (ReadFromWithConcurrency),
		// where a failed upload's temporary file is removed anyway.
		sftp.UseConcurrentWrites(false),
		// WriteTo sizes its pipeline from fstat on the open handle, not a
		// second lookup of the path, which may have been replaced since.
		sftp.UseFstat(true),
	)
	if err != nil {
		return nil, fileErr("open sftp", "", err)
	}
	f := &Files{client: client, sftp: c, opts: opts}
	// The SFTP session starts in the login's home (OpenSSH: the home
	// directory, or the ChrootDirectory's).
	if f.home, err = c.RealPath("."); err != nil {
		c.Close()
		return nil, fileErr("home", ".", err)
	}
	return f, nil
}

// Close ends the SFTP sessions; transfers in progress fail with
// ErrConnectionLost. The SSH connection stays open.
func (f *Files) Close() error {
	f.rawMu.Lock()
	f.closed = true
	if f.raw != nil {
		f.raw.Close()
	}
	f.rawMu.Unlock()
	return f.sftp.Close()
}

// Home returns the login's home folder, the file panel's start folder.
func (f *Files) Home() string { return f.home }

// Entry describes one file or folder.
type Entry struct {
	Name    string      `json:"name"`
	Path    string      `json:"path"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"-"`
	Perm    string      `json:"perm"` // as ls -l shows it: "-rw-r--r--", "drwxr-xr-x", "lrwxrwxrwx"
	UID     uint32      `json:"uid"`
	GID     uint32      `json:"gid"`
	Owner   string      `json:"owner,omitempty"` // user name, when the server reports one (List only)
	Group   string      `json:"group,omitempty"` // group name, likewise
	ModTime time.Time   `json:"modTime"`
	IsDir   bool        `json:"isDir"`
	IsLink  bool        `json:"isLink"`
	// LinkTarget is what a symbolic link points to, as stored; TargetIsDir
	// reports that it resolves to a folder (the panel shows it as one).
	LinkTarget  string `json:"linkTarget,omitempty"`
	TargetIsDir bool   `json:"targetIsDir,omitempty"`
	Hidden      bool   `json:"hidden"` // name starts with "."
}

// Listing is the content of one folder.
type Listing struct {
	Path    string  `json:"path"`
	Entries []Entry `json:"entries"` // folders (and links to folders) first, then by name
	// Truncated reports that the folder holds more than WalkLimit entries
	// and only the first ones read are listed.
	Truncated bool `json:"truncated"`
}

// List lists the folder dir. Symbolic links are resolved (target and
// whether it is a folder) but never followed further.
func (f *Files) List(ctx context.Context, dir string) (*Listing, error) {
	const op = "list"
	dir, err := checkPath(op, dir)
	if err != nil {
		return nil, err
	}
	l := &Listing{Path: dir}
	listed := false
	// A listing session that broke since the last listing is replaced
	// once; if that fails too, pkg/sftp's session lists without owner
	// names, or tells that the connection is gone.
	for attempt := 0; attempt < 2 && !listed; attempt++ {
		raw := f.rawClient()
		if raw == nil {
			break
		}
		ents, truncated, err := raw.readDir(ctx, dir, f.opts.WalkLimit)
		var status *sftp.StatusError
		switch {
		case err == nil:
			l.Truncated, listed = truncated, true
			l.Entries = make([]Entry, 0, len(ents))
			for _, e := range ents {
				l.Entries = append(l.Entries, entryFromRaw(dir, e))
			}
		case errors.As(err, &status), ctx.Err() != nil:
			return nil, f.dirErr(op, dir, err)
		}
	}
	if !listed {
		infos, err := f.sftp.ReadDirContext(ctx, dir)
		if err != nil {
			return nil, f.dirErr(op, dir, err)
		}
		if len(infos) > f.opts.WalkLimit {
			infos, l.Truncated = infos[:f.opts.WalkLimit], true
		}
		l.Entries = make([]Entry, 0, len(infos))
		for _, fi := range infos {
			l.Entries = append(l.Entries, entryFromInfo(path.Join(dir, fi.Name()), fi))
		}
	}
	f.resolveLinks(ctx, l.Entries)
	if err := ctx.Err(); err != nil {
		return nil, fileErr(op, dir, err)
	}
	sortEntries(l.Entries)
	return l, nil
}

// maxRawFailures is how often a refused listing session is retried
// before listings go on without owner names for good.
const maxRawFailures = 3

// rawClient returns the longname-capable listing session, (re)opening it
// when needed. A server that refuses a second session (MaxSessions 1)
// gets listings without owner names rather than no listings.
func (f *Files) rawClient() *rawSFTP {
	f.rawMu.Lock()
	defer f.rawMu.Unlock()
	if f.closed {
		return nil
	}
	if f.raw != nil && f.raw.usable() {
		return f.raw
	}
	if f.raw != nil {
		f.raw.Close()
		f.raw = nil
	}
	if f.rawFailures >= maxRawFailures {
		return nil
	}
	raw, err := openRawSFTP(f.client)
	if err != nil {
		f.rawFailures++
		return nil
	}
	f.raw = raw
	return raw
}

// dirErr classifies a failure to open a folder: OpenSSH answers opendir on
// a file (ENOTDIR) with a bare failure or, since 9.x, "no such file".
func (f *Files) dirErr(op, dir string, err error) error {
	if isFailure(err) || errors.Is(err, fs.ErrNotExist) || errors.Is(classify(err), ErrNotExist) {
		if fi, lerr := f.sftp.Stat(dir); lerr == nil && !fi.IsDir() {
			return newFileErr(op, dir, ErrNotDir, err)
		}
	}
	return fileErr(op, dir, err)
}

// resolveLinks fills LinkTarget and TargetIsDir of the symbolic links in
// entries, a few requests in flight at a time.
func (f *Files) resolveLinks(ctx context.Context, entries []Entry) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range entries {
		if !entries[i].IsLink || ctx.Err() != nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			e := &entries[i]
			e.LinkTarget, _ = f.sftp.ReadLink(e.Path)
			if fi, err := f.sftp.Stat(e.Path); err == nil { // a dangling link is just a link
				e.TargetIsDir = fi.IsDir()
			}
		})
	}
	wg.Wait()
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		ad, bd := a.IsDir || a.TargetIsDir, b.IsDir || b.TargetIsDir
		if ad != bd {
			if ad {
				return -1
			}
			return 1
		}
		return cmp.Or(
			strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)),
			strings.Compare(a.Name, b.Name))
	})
}

func entryFromRaw(dir string, e rawEntry) Entry {
	mode := fileMode(e.perm)
	en := Entry{
		Name:    e.name,
		Path:    path.Join(dir, e.name),
		Size:    int64(e.size),
		Mode:    mode,
		Perm:    lsMode(mode),
		UID:     e.uid,
		GID:     e.gid,
		ModTime: time.Unix(int64(e.mtime), 0),
		IsDir:   mode.IsDir(),
		IsLink:  mode&fs.ModeSymlink != 0,
		Hidden:  strings.HasPrefix(e.name, "."),
	}
	en.Owner, en.Group = ownerFromLongname(e.longname, e)
	return en
}

func entryFromInfo(p string, fi fs.FileInfo) Entry {
	e := Entry{
		Name:    fi.Name(),
		Path:    p,
		Size:    fi.Size(),
		Mode:    fi.Mode(),
		Perm:    lsMode(fi.Mode()),
		ModTime: fi.ModTime(),
		IsDir:   fi.IsDir(),
		IsLink:  fi.Mode()&fs.ModeSymlink != 0,
		Hidden:  strings.HasPrefix(fi.Name(), "."),
	}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		e.UID, e.GID = st.UID, st.GID
	}
	return e
}

// ownerFromLongname takes the owner and group names from an ls -l style
// longname, "-rw-r--r--    1 alice    staff        1234 Jan  1 12:00 name",
// the format OpenSSH and pkg/sftp use. The spec leaves longname free-form,
// so the line is trusted only when its permission and size columns agree
// with the attributes; a name that is just the numeric id (no passwd
// entry) is not a name.
func ownerFromLongname(long string, e rawEntry) (owner, group string) {
	fs := strings.Fields(long)
	if len(fs) < 8 || len(fs[0]) < 10 || fs[0][1:10] != lsMode(fileMode(e.perm))[1:10] {
		return "", ""
	}
	if e.flags&attrSize != 0 && fs[4] != strconv.FormatUint(e.size, 10) {
		return "", ""
	}
	if fs[2] != strconv.FormatUint(uint64(e.uid), 10) {
		owner = fs[2]
	}
	if fs[3] != strconv.FormatUint(uint64(e.gid), 10) {
		group = fs[3]
	}
	return owner, group
}

// fileMode converts SFTP permission bits (POSIX st_mode) to fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & 0o170000 {
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		mode |= fs.ModeDevice
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	}
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// lsMode renders mode as ls -l does (fs.FileMode.String differs: "L" for
// links, "u"/"g"/"t" prefixes for special bits).
func lsMode(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(set bool, i int, lower, upper byte) {
		if set {
			if b[i] == 'x' || b[i] == lower {
				b[i] = lower
			} else {
				b[i] = upper
			}
		}
	}
	special(m&fs.ModeSetuid != 0, 3, 's', 'S')
	special(m&fs.ModeSetgid != 0, 6, 's', 'S')
	special(m&fs.ModeSticky != 0, 9, 't', 'T')
	return string(b)
}

// Stat describes p; a symbolic link is described itself, with its target
// resolved. Owner and Group names stay empty (only listings carry them).
func (f *Files) Stat(ctx context.Context, p string) (Entry, error) {
	const op = "stat"
	p, err := checkPath(op, p)
	if err != nil {
		return Entry{}, err
	}
	fi, err := f.sftp.Lstat(p)
	if err != nil {
		return Entry{}, fileErr(op, p, err)
	}
	e := []Entry{entryFromInfo(p, fi)}
	if p == "/" {
		e[0].Name = "/"
	}
	f.resolveLinks(ctx, e)
	return e[0], nil
}

// Mkdir creates the folder p; its parent must exist.
func (f *Files) Mkdir(ctx context.Context, p string) error {
	const op = "mkdir"
	p, err := checkPath(op, p)
	if err != nil {
		return err
	}
	if err := checkName(op, p, path.Base(p)); err != nil {
		return err
	}
	return f.mkdir(op, p)
}

func (f *Files) mkdir(op, p string) error {
	err := f.sftp.Mkdir(p)
	if err == nil {
		return nil
	}
	// EEXIST comes back as a bare failure; ENOTDIR as a failure or, from
	// OpenSSH 9, as "no such file".
	if isFailure(err) {
		if _, lerr := f.sftp.Lstat(p); lerr == nil {
			return newFileErr(op, p, ErrExists, err)
		}
	}
	if isFailure(err) || errors.Is(err, fs.ErrNotExist) {
		if fi, serr := f.sftp.Stat(path.Dir(p)); serr == nil && !fi.IsDir() {
			return newFileErr(op, path.Dir(p), ErrNotDir, err)
		}
	}
	return fileErr(op, p, err)
}

// MkdirAll creates the folders of the relative path rel inside the folder
// base ("a/b/c" for a dropped folder) and returns the full path. Existing
// folders are fine; rel may not be absolute nor hold "..", ".", empty or
// over-long components.
func (f *Files) MkdirAll(ctx context.Context, base, rel string) (string, error) {
	const op = "mkdir"
	base, err := checkPath(op, base)
	if err != nil {
		return "", err
	}
	parts, err := checkRel(op, rel)
	if err != nil {
		return "", err
	}
	return f.mkdirAll(ctx, op, base, parts)
}

func (f *Files) mkdirAll(ctx context.Context, op, base string, parts []string) (string, error) {
	p := base
	for _, part := range parts {
		if err := ctx.Err(); err != nil {
			return "", fileErr(op, p, err)
		}
		p = path.Join(p, part)
		err := f.mkdir(op, p)
		if errors.Is(err, ErrExists) {
			// A folder, or a link to one, is what we want.
			if fi, serr := f.sftp.Stat(p); serr == nil && fi.IsDir() {
				continue
			}
			return "", newFileErr(op, p, ErrNotDir, err)
		}
		if err != nil {
			return "", err
		}
	}
	return p, nil
}

// Rename moves from to to. An existing to is replaced only when overwrite
// is set (with posix-rename@openssh.com, atomically); otherwise the result
// is ErrExists and nothing changes.
func (f *Files) Rename(ctx context.Context, from, to string, overwrite bool) error {
	const op = "rename"
	from, err := checkPath(op, from)
	if err != nil {
		return err
	}
	to, err = checkPath(op, to)
	if err != nil {
		return err
	}
	if err := checkName(op, to, path.Base(to)); err != nil {
		return err
	}
	if from == "/" || from == to {
		return newFileErr(op, from, ErrInvalidName, nil)
	}
	fi, err := f.sftp.Lstat(from)
	if err != nil {
		return fileErr(op, from, err)
	}
	if overwrite {
		return f.replace(op, from, to)
	}
	return f.renameNoClobber(op, from, to, fi.Mode().IsRegular())
}

// replace renames from to to, replacing to.
func (f *Files) replace(op, from, to string) error {
	if _, ok := f.sftp.HasExtension("posix-rename@openssh.com"); !ok {
		return newFileErr(op, to, ErrUnsupported, nil)
	}
	err := f.sftp.PosixRename(from, to)
	if err != nil && isFailure(err) {
		if fi, lerr := f.sftp.Lstat(to); lerr == nil && fi.IsDir() {
			// rename(2) refuses a file onto a folder (EISDIR) and a folder
			// onto a non-empty folder (ENOTEMPTY).
			return newFileErr(op, to, ErrIsDir, err)
		}
	}
	return fileErr(op, from, err)
}

// renameNoClobber renames from to to unless to exists. For a regular file
// it uses hardlink@openssh.com (link(2) fails atomically on an existing
// name) and then removes from — the same thing OpenSSH's sftp-server does
// for a plain SSH_FXP_RENAME. Otherwise, and where links are not possible,
// it checks first and renames: OpenSSH's rename still refuses an existing
// target, other servers may replace one created in between.
func (f *Files) renameNoClobber(op, from, to string, regular bool) error {
	if _, ok := f.sftp.HasExtension("hardlink@openssh.com"); ok && regular {
		err := f.sftp.Link(from, to)
		if err == nil {
			if err := f.sftp.Remove(from); err != nil {
				return fileErr(op, from, err)
			}
			return nil
		}
		if _, lerr := f.sftp.Lstat(to); lerr == nil {
			return newFileErr(op, to, ErrExists, err)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fileErr(op, to, err)
		}
		// EXDEV, EPERM on file systems without hard links, …: rename.
	}
	if _, err := f.sftp.Lstat(to); err == nil {
		return newFileErr(op, to, ErrExists, nil)
	}
	err := f.sftp.Rename(from, to)
	if err != nil && isFailure(err) {
		if _, lerr := f.sftp.Lstat(to); lerr == nil {
			return newFileErr(op, to, ErrExists, err)
		}
	}
	return fileErr(op, from, err)
}

// Remove deletes a file, a symbolic link (not its target) or an empty folder.
func (f *Files) Remove(ctx context.Context, p string) error {
	const op = "delete"
	p, err := checkPath(op, p)
	if err != nil {
		return err
	}
	fi, err := f.sftp.Lstat(p)
	if err != nil {
		return fileErr(op, p, err)
	}
	return f.remove(op, p, fi.IsDir())
}

func (f *Files) remove(op, p string, dir bool) error {
	if !dir {
		return fileErr(op, p, f.sftp.Remove(p))
	}
	err := f.sftp.RemoveDirectory(p)
	if err != nil && isFailure(err) {
		return newFileErr(op, p, ErrDirNotEmpty, err)
	}
	return fileErr(op, p, err)
}

// RemoveAll deletes p and, for a folder, everything inside it, depth
// first. Symbolic links are deleted, never followed. It stops at the first
// error, leaving what it has not reached yet.
func (f *Files) RemoveAll(ctx context.Context, p string) error {
	const op = "delete"
	p, err := checkPath(op, p)
	if err != nil {
		return err
	}
	if p == "/" {
		return newFileErr(op, p, ErrPermission, nil)
	}
	fi, err := f.sftp.Lstat(p)
	if err != nil {
		return fileErr(op, p, err)
	}
	if !fi.IsDir() {
		return f.remove(op, p, false)
	}
	return f.removeTree(ctx, op, p, 0)
}

func (f *Files) removeTree(ctx context.Context, op, dir string, depth int) error {
	if depth > maxDepth {
		return newFileErr(op, dir, ErrTooLarge, nil)
	}
	// Read the whole folder before deleting from it: deleting while
	// reading may make the server skip entries.
	infos, err := f.readDir(ctx, op, dir)
	if err != nil {
		return err
	}
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return fileErr(op, dir, err)
		}
		p := path.Join(dir, fi.Name())
		if fi.IsDir() {
			err = f.removeTree(ctx, op, p, depth+1)
		} else {
			err = f.remove(op, p, false)
		}
		if err != nil {
			return err
		}
	}
	return f.remove(op, dir, true)
}

// readDir reads a folder for a walk, bounded by WalkLimit.
func (f *Files) readDir(ctx context.Context, op, dir string) ([]os.FileInfo, error) {
	infos, err := f.sftp.ReadDirContext(ctx, dir)
	if err == nil {
		err = ctx.Err() // ReadDirContext returns what it has when cancelled
	}
	if err != nil {
		return nil, f.dirErr(op, dir, err)
	}
	if len(infos) > f.opts.WalkLimit {
		return nil, newFileErr(op, dir, ErrTooLarge, nil)
	}
	slices.SortFunc(infos, func(a, b os.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return infos, nil
}

// CountTree counts what is inside the folder p, for a confirmation such
// as "Delete logs and the 1,234 files and 56 folders in it (7.8 GB)?".
// Symbolic links count as files of their own size and are not followed.
// After WalkLimit entries it stops and returns the counts so far with
// ErrTooLarge ("more than …").
func (f *Files) CountTree(ctx context.Context, p string) (files, dirs int, bytes int64, err error) {
	const op = "count"
	p, err = checkPath(op, p)
	if err != nil {
		return 0, 0, 0, err
	}
	fi, err := f.sftp.Lstat(p)
	if err != nil {
		return 0, 0, 0, fileErr(op, p, err)
	}
	if !fi.IsDir() {
		return 0, 0, 0, newFileErr(op, p, ErrNotDir, nil)
	}
	// Iterative, so the bound is on the entries visited, not on the stack.
	stack := []string{p}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		infos, err := f.sftp.ReadDirContext(ctx, dir)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return files, dirs, bytes, f.dirErr(op, dir, err)
		}
		for _, fi := range infos {
			if files+dirs >= f.opts.WalkLimit {
				return files, dirs, bytes, newFileErr(op, p, ErrTooLarge, nil)
			}
			if fi.IsDir() {
				dirs++
				stack = append(stack, path.Join(dir, fi.Name()))
				continue
			}
			files++
			bytes += fi.Size()
		}
	}
	return files, dirs, bytes, nil
}

// checkPath accepts an absolute remote path without NUL and cleans it.
func checkPath(op, p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return "", newFileErr(op, p, ErrInvalidName, nil)
	}
	return path.Clean(p), nil
}

// checkName accepts a single file name: not empty, ".", "..", and without
// "/" or NUL, at most nameMax bytes. Everything else (quotes, newlines,
// markup, any Unicode) is a valid Unix file name.
func checkName(op, p, name string) error {
	if name == "" || name == "." || name == ".." || len(name) > nameMax || strings.ContainsAny(name, "/\x00") {
		return newFileErr(op, p, ErrInvalidName, nil)
	}
	return nil
}

// checkRel splits a relative path ("dir/sub/file.txt", as a browser
// reports a dropped folder's files) into names, refusing absolute paths,
// "..", "." and empty components, so nothing lands outside the target.
func checkRel(op, rel string) ([]string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return nil, newFileErr(op, rel, ErrInvalidName, nil)
	}
	parts := strings.Split(rel, "/")
	for _, part := range parts {
		if err := checkName(op, rel, part); err != nil {
			return nil, err
		}
	}
	return parts, nil
}
