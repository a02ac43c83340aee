package terminal

import (
	"archive/zip"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// ArchiveResult describes a folder archive once written.
type ArchiveResult struct {
	Files int   // regular files archived
	Dirs  int   // folders archived, the root included
	Links int   // symbolic links stored as links
	Bytes int64 // file content, uncompressed
	// Skipped lists what was left out and why: symbolic links pointing
	// outside the folder, special files, unreadable files or folders. The
	// archive carries the same list in SkippedNoteName at its root.
	Skipped []SkippedEntry
}

// SkippedEntry is one path (relative to the archived folder) left out of an archive.
type SkippedEntry struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// SkippedNoteName is the text file added at the root of an archive from
// which something was left out, so the person who unpacks it learns what
// and why, long after the HTTP response has gone.
const SkippedNoteName = "SKIPPED-BY-SHELLGATE.txt"

// maxSkippedListed bounds ArchiveResult.Skipped and the note.
const maxSkippedListed = 1000

// WriteZip streams the folder dir into w as a zip archive whose entries
// sit under the folder's own name ("logs/app/x.log"), with modification
// times and permissions. The total size is not known in advance (entries
// use data descriptors and zip64 where needed).
//
// Symbolic links are never followed. One whose target stays inside the
// folder is stored as a link (unzip, macOS and Linux restore it); one
// pointing outside, or to an absolute path, is left out, as are FIFOs,
// sockets and devices. Files that cannot be read are left out too (a file
// failing half-way keeps what was read). What was left out is listed in
// the result and in SkippedNoteName inside the archive. Already
// compressed files are stored, others deflated at the fastest level.
//
// It fails on the first error from w, from ctx, or the connection.
func (f *Files) WriteZip(ctx context.Context, dir string, w io.Writer) (ArchiveResult, error) {
	const op = "archive"
	dir, err := checkPath(op, dir)
	if err != nil {
		return ArchiveResult{}, err
	}
	fi, err := f.sftp.Stat(dir) // the folder itself may be reached through a link
	if err != nil {
		return ArchiveResult{}, fileErr(op, dir, err)
	}
	if !fi.IsDir() {
		return ArchiveResult{}, newFileErr(op, dir, ErrNotDir, nil)
	}
	root := path.Base(dir)
	if dir == "/" {
		root = "root"
	}
	a := &archiver{files: f, ctx: ctx, zw: zip.NewWriter(w), w: w}
	var fw *flate.Writer
	a.zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		// Entries are written one after the other; one compressor serves all.
		if fw == nil {
			var err error
			fw, err = flate.NewWriter(out, flate.BestSpeed)
			return fw, err
		}
		fw.Reset(out)
		return fw, nil
	})
	rootNames, err := a.dir(dir, root, fi, 0)
	if err == nil && len(a.res.Skipped) > 0 {
		err = a.note(root, rootNames)
	}
	if err == nil {
		err = a.zw.Close()
	}
	if err != nil {
		return a.res, a.fail(op, dir, err)
	}
	return a.res, nil
}

type archiver struct {
	files   *Files
	ctx     context.Context
	zw      *zip.Writer
	w       io.Writer
	res     ArchiveResult
	skipped int // including those beyond maxSkippedListed
}

// writeError marks an error from the destination, which ends the archive.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// fail returns err as the archive's error: the destination's errors as
// they are, others as a FileError.
func (a *archiver) fail(op, dir string, err error) error {
	var we *writeError
	if errors.As(err, &we) {
		return we.err
	}
	return fileErr(op, dir, err)
}

func (a *archiver) skip(rel, reason string) {
	a.skipped++
	if len(a.res.Skipped) < maxSkippedListed {
		a.res.Skipped = append(a.res.Skipped, SkippedEntry{Path: rel, Reason: reason})
	}
}

// fatal reports errors that end the whole archive rather than one entry.
func fatal(err error) bool {
	var we *writeError
	return errors.As(err, &we) || errors.Is(err, ErrConnectionLost) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(classify(err), ErrConnectionLost)
}

// dir archives the folder p as rel (relative to the zip root, which is
// the folder's name) and returns the names of its entries.
func (a *archiver) dir(p, rel string, fi fs.FileInfo, depth int) ([]string, error) {
	if err := a.ctx.Err(); err != nil {
		return nil, err
	}
	if err := a.header(rel+"/", fi, zip.Store); err != nil {
		return nil, err
	}
	a.res.Dirs++
	if depth > maxDepth {
		a.skip(rel, "folders nested too deeply")
		return nil, nil
	}
	infos, err := a.files.readDir(a.ctx, "archive", p)
	if err != nil {
		if fatal(err) {
			return nil, err
		}
		a.skip(rel+"/", "folder could not be read: "+FileMessage(err))
		return nil, nil
	}
	names := make([]string, 0, len(infos))
	for _, ci := range infos {
		names = append(names, ci.Name())
		cp, crel := path.Join(p, ci.Name()), rel+"/"+ci.Name()
		mode := ci.Mode()
		switch {
		case mode.IsDir():
			_, err = a.dir(cp, crel, ci, depth+1)
		case mode.IsRegular():
			err = a.file(cp, crel, ci)
		case mode&fs.ModeSymlink != 0:
			err = a.link(cp, crel, ci)
		default:
			a.skip(crel, "not a regular file ("+lsMode(mode)[:1]+")")
		}
		if err != nil {
			return nil, err
		}
	}
	return names, nil
}

func (a *archiver) header(name string, fi fs.FileInfo, method uint16) error {
	_, err := a.create(name, fi, method)
	return err
}

func (a *archiver) create(name string, fi fs.FileInfo, method uint16) (io.Writer, error) {
	h := &zip.FileHeader{Name: name, Method: method, Modified: fi.ModTime()}
	h.SetMode(fi.Mode())
	w, err := a.zw.CreateHeader(h)
	if err != nil {
		return nil, &writeError{err}
	}
	return w, nil
}

func (a *archiver) file(p, rel string, fi fs.FileInfo) error {
	rf, err := a.files.Open(a.ctx, p)
	if err != nil {
		if fatal(err) {
			return err
		}
		a.skip(rel, "could not be opened: "+FileMessage(err))
		return nil
	}
	defer rf.Close()
	w, err := a.create(rel, fi, compressionFor(rel))
	if err != nil {
		return err
	}
	ew := &errWriter{w: w}
	n, err := rf.WriteTo(ew)
	a.res.Bytes += n
	switch {
	case ew.err != nil:
		return &writeError{ew.err}
	case err != nil && fatal(err):
		return err
	case err != nil:
		a.skip(rel, fmt.Sprintf("read failed after %d bytes; the archived copy is incomplete: %s", n, FileMessage(err)))
	}
	a.res.Files++
	return nil
}

// errWriter remembers the destination's error, to tell it from the source's.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func (a *archiver) link(p, rel string, fi fs.FileInfo) error {
	target, err := a.files.sftp.ReadLink(p)
	if err != nil {
		if fatal(err) {
			return err
		}
		a.skip(rel, "symbolic link could not be read")
		return nil
	}
	if !linkInside(rel, target) {
		a.skip(rel, "symbolic link to "+target+", outside the folder")
		return nil
	}
	w, err := a.create(rel, fi, zip.Store)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, target); err != nil {
		return &writeError{err}
	}
	a.res.Links++
	return nil
}

// linkInside reports whether a link at rel (inside the archive, whose
// first element is the archived folder) with this target resolves inside
// that folder, lexically: absolute targets never do.
func linkInside(rel, target string) bool {
	if target == "" || path.IsAbs(target) {
		return false
	}
	root, _, _ := strings.Cut(rel, "/")
	resolved := path.Join(path.Dir(rel), target)
	return resolved == root || strings.HasPrefix(resolved, root+"/")
}

// note adds SkippedNoteName at the root, under a name not already taken.
func (a *archiver) note(root string, taken []string) error {
	name := SkippedNoteName
	for i := 2; slices.Contains(taken, name) && i < 1000; i++ {
		name = fmt.Sprintf("SKIPPED-BY-SHELLGATE-%d.txt", i)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "shellgate left %d item(s) out of this archive of %q:\n\n", a.skipped, root)
	for _, s := range a.res.Skipped {
		fmt.Fprintf(&b, "%q: %s\n", s.Path, s.Reason)
	}
	if a.skipped > len(a.res.Skipped) {
		fmt.Fprintf(&b, "… and %d more.\n", a.skipped-len(a.res.Skipped))
	}
	h := &zip.FileHeader{Name: root + "/" + name, Method: zip.Deflate}
	h.SetMode(0o644)
	w, err := a.zw.CreateHeader(h)
	if err == nil {
		_, err = io.WriteString(w, b.String())
	}
	if err != nil {
		return &writeError{err}
	}
	return nil
}

// compressionFor stores files that are compressed already (deflating them
// again costs CPU for nothing) and deflates the rest.
func compressionFor(name string) uint16 {
	switch strings.ToLower(path.Ext(name)) {
	case ".gz", ".tgz", ".bz2", ".xz", ".zst", ".lz4", ".7z", ".zip", ".jar", ".war", ".rar",
		".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".heic",
		".mp3", ".mp4", ".m4a", ".mkv", ".mov", ".webm", ".ogg", ".opus", ".flac",
		".pdf", ".woff", ".woff2", ".docx", ".xlsx", ".pptx", ".odt", ".apk", ".deb", ".rpm":
		return zip.Store
	}
	return zip.Deflate
}
