package terminal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"time"

	"github.com/pkg/sftp"
)

// RemoteFile is an open remote file for download. It is an io.ReadSeeker
// (what http.ServeContent wants), an io.ReaderAt and an io.WriterTo;
// CopyRange serves an HTTP Range. Sequential reads and CopyRange keep up
// to FilesOptions.Concurrency requests in flight.
//
// Size and ModTime are taken when the file is opened; reads end at Size,
// and a file that shrinks meanwhile makes them fail with ErrIncomplete
// rather than return a silently short body.
//
// A RemoteFile is not safe for concurrent use, except ReadAt.
type RemoteFile struct {
	files *Files
	f     *sftp.File
	path  string
	size  int64
	mod   time.Time
	mode  fs.FileMode

	mu  sync.Mutex
	off int64   // Read/Seek offset
	st  *stream // sequential read-ahead at off, started by Read
}

// Open opens the regular file p (a symbolic link is followed) for download.
func (f *Files) Open(ctx context.Context, p string) (*RemoteFile, error) {
	const op = "download"
	p, err := checkPath(op, p)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fileErr(op, p, err)
	}
	sf, err := f.sftp.Open(p)
	if err != nil {
		if isFailure(err) {
			// Opening a folder for reading is EISDIR, a bare failure.
			if fi, serr := f.sftp.Stat(p); serr == nil && fi.IsDir() {
				return nil, newFileErr(op, p, ErrIsDir, err)
			}
		}
		return nil, fileErr(op, p, err)
	}
	// fstat the handle: the file we will read, even if p was replaced.
	fi, err := sf.Stat()
	if err != nil {
		sf.Close()
		return nil, fileErr(op, p, err)
	}
	switch {
	case fi.IsDir():
		sf.Close()
		return nil, newFileErr(op, p, ErrIsDir, nil)
	case !fi.Mode().IsRegular():
		// A FIFO or device would block or never end.
		sf.Close()
		return nil, newFileErr(op, p, ErrUnsupported, nil)
	}
	return &RemoteFile{files: f, f: sf, path: p, size: fi.Size(), mod: fi.ModTime(), mode: fi.Mode()}, nil
}

// Name is the file's base name.
func (r *RemoteFile) Name() string { return path.Base(r.path) }

// Path is the remote path the file was opened by.
func (r *RemoteFile) Path() string { return r.path }

// Size is the file's size when it was opened.
func (r *RemoteFile) Size() int64 { return r.size }

// ModTime is the file's modification time when it was opened.
func (r *RemoteFile) ModTime() time.Time { return r.mod }

// Mode is the file's mode when it was opened.
func (r *RemoteFile) Mode() fs.FileMode { return r.mode }

// Read reads sequentially from the offset, with read-ahead.
func (r *RemoteFile) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.st == nil {
		r.st = r.startStream(r.off, r.size-r.off)
	}
	n, err := r.st.pr.Read(p)
	r.off += int64(n)
	if err == io.EOF && r.off < r.size {
		err = newFileErr("download", r.path, ErrIncomplete, io.ErrUnexpectedEOF)
	}
	return n, err
}

// Seek sets the offset of the next Read. Seeking beyond Size is allowed;
// Read then returns io.EOF.
func (r *RemoteFile) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	case io.SeekStart:
	default:
		return r.off, newFileErr("seek", r.path, fs.ErrInvalid, nil)
	}
	if offset < 0 {
		return r.off, newFileErr("seek", r.path, fs.ErrInvalid, nil)
	}
	if offset != r.off {
		r.stopStream()
		r.off = offset
	}
	return offset, nil
}

// ReadAt reads len(p) bytes at off, several requests in flight for a large
// p. Like Read, it ends at Size.
func (r *RemoteFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, newFileErr("download", r.path, fs.ErrInvalid, nil)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	// pkg/sftp serialises ReadAt behind a running read-ahead (WriteTo).
	r.mu.Lock()
	r.stopStream()
	r.mu.Unlock()
	want := min(int64(len(p)), r.size-off)
	n, err := r.f.ReadAt(p[:want], off)
	if err == io.EOF && int64(n) < want {
		return n, newFileErr("download", r.path, ErrIncomplete, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		return n, fileErr("download", r.path, err)
	}
	if int64(n) < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// WriteTo copies the file from the offset to Size into w, pipelined.
func (r *RemoteFile) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off >= r.size {
		return 0, nil
	}
	r.stopStream()
	n, err := r.copyRange(w, r.off, r.size-r.off)
	r.off += n
	return n, err
}

// CopyRange copies length bytes at offset into w (an HTTP Range), pipelined.
// It fails with ErrIncomplete when the file ends first; the range must lie
// within Size.
func (r *RemoteFile) CopyRange(w io.Writer, offset, length int64) (int64, error) {
	if offset < 0 || length < 0 || offset > r.size || length > r.size-offset {
		return 0, newFileErr("download", r.path, fs.ErrInvalid, nil)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopStream()
	return r.copyRange(w, offset, length)
}

// smallRange is the largest range fetched with one ReadAt (its requests
// all in flight at once) instead of the pipelined WriteTo, which would
// read ahead up to Concurrency packets past a small range's end.
const smallRange = 256 << 10

// errRangeDone stops pkg/sftp's WriteTo once a range is complete.
var errRangeDone = errors.New("range complete")

func (r *RemoteFile) copyRange(w io.Writer, off, n int64) (int64, error) {
	const op = "download"
	if n == 0 {
		return 0, nil
	}
	if n <= smallRange {
		buf := make([]byte, n)
		m, err := r.f.ReadAt(buf, off)
		if err != nil && !(err == io.EOF && int64(m) == n) {
			if err == io.EOF {
				err = newFileErr(op, r.path, ErrIncomplete, io.ErrUnexpectedEOF)
			}
			return 0, fileErr(op, r.path, err)
		}
		k, err := w.Write(buf)
		return int64(k), err
	}
	if _, err := r.f.Seek(off, io.SeekStart); err != nil {
		return 0, fileErr(op, r.path, err)
	}
	lw := &limitWriter{w: w, left: n}
	_, err := r.f.WriteTo(lw)
	switch {
	case lw.err != nil:
		// The destination failed (the browser went away): its error, as is.
		return lw.written, lw.err
	case errors.Is(err, errRangeDone):
		return lw.written, nil
	case err != nil:
		return lw.written, fileErr(op, r.path, err)
	case lw.left > 0:
		return lw.written, newFileErr(op, r.path, ErrIncomplete, io.ErrUnexpectedEOF)
	}
	return lw.written, nil
}

// limitWriter passes on the first left bytes and then stops the copy.
type limitWriter struct {
	w       io.Writer
	left    int64
	written int64
	err     error // from w
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errRangeDone
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.written += int64(n)
	l.left -= int64(n)
	if err != nil {
		l.err = err
		return n, err
	}
	if l.left == 0 {
		return n, errRangeDone
	}
	return n, nil
}

// stream is a read-ahead goroutine copying a range into a pipe.
type stream struct {
	pr   *io.PipeReader
	done chan struct{}
}

var errStreamStopped = errors.New("read-ahead stopped")

func (r *RemoteFile) startStream(off, n int64) *stream {
	pr, pw := io.Pipe()
	s := &stream{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_, err := r.copyRange(pw, off, n)
		pw.CloseWithError(err) // nil: readers see io.EOF
	}()
	return s
}

// stopStream ends the read-ahead and waits for it; r.mu is held.
func (r *RemoteFile) stopStream() {
	if r.st == nil {
		return
	}
	r.st.pr.CloseWithError(errStreamStopped)
	<-r.st.done
	r.st = nil
}

// Close stops any read-ahead and closes the remote handle.
func (r *RemoteFile) Close() error {
	r.mu.Lock()
	r.stopStream()
	r.mu.Unlock()
	if err := r.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fileErr("download", r.path, err)
	}
	return nil
}

// UploadOptions qualify an Upload.
type UploadOptions struct {
	// Size is the announced length (an HTTP Content-Length); when positive,
	// a body of any other length fails with ErrIncomplete and leaves
	// nothing behind, and an upload that cannot fit in the free space the
	// server reports is refused before it starts. Zero or less: unknown.
	Size int64
	// Overwrite replaces an existing file of the same name. Without it an
	// existing name fails with ErrExists before any data is sent.
	Overwrite bool
}

// UploadResult describes a completed upload.
type UploadResult struct {
	Path     string // final remote path
	Size     int64  // bytes written
	Replaced bool   // an existing file was replaced
}

// Upload writes r to the folder dir under rel — a name, or a relative path
// "sub/dir/name" for a file of a dropped folder, whose folders are created
// as needed. rel may not be absolute nor contain "..".
//
// The data goes to a temporary file in the same folder,
// ".NAME.shellgate-upload-XXXXXXXX", created exclusively, and is renamed
// to NAME only once r has reached EOF and the server confirms the full
// size. If r fails, ctx ends, the sizes disagree or a write fails, the
// temporary file is removed and an existing NAME is untouched. r must
// return when ctx is cancelled (an HTTP request body does when the client
// goes away); ctx is also checked between reads.
//
// Replacing (opts.Overwrite) keeps the old file's permission bits and is
// atomic (posix-rename@openssh.com).
func (f *Files) Upload(ctx context.Context, dir, rel string, r io.Reader, opts UploadOptions) (UploadResult, error) {
	const op = "upload"
	dir, err := checkPath(op, dir)
	if err != nil {
		return UploadResult{}, err
	}
	parts, err := checkRel(op, rel)
	if err != nil {
		return UploadResult{}, err
	}
	name := parts[len(parts)-1]
	parent := dir
	if len(parts) > 1 {
		if parent, err = f.mkdirAll(ctx, op, dir, parts[:len(parts)-1]); err != nil {
			return UploadResult{}, err
		}
	} else if fi, err := f.sftp.Stat(dir); err != nil {
		return UploadResult{}, fileErr(op, dir, err)
	} else if !fi.IsDir() {
		return UploadResult{}, newFileErr(op, dir, ErrNotDir, nil)
	}
	final := path.Join(parent, name)
	if f.beforeUpload != nil {
		f.beforeUpload(parent)
	}

	var replaced bool
	var perm fs.FileMode
	switch fi, err := f.sftp.Lstat(final); {
	case err == nil && !opts.Overwrite:
		return UploadResult{}, newFileErr(op, final, ErrExists, nil)
	case err == nil && fi.IsDir():
		return UploadResult{}, newFileErr(op, final, ErrIsDir, nil)
	case err == nil:
		replaced = true
		if fi.Mode().IsRegular() {
			perm = fi.Mode().Perm()
		}
	case !errors.Is(err, fs.ErrNotExist):
		return UploadResult{}, fileErr(op, final, err)
	}
	if _, ok := f.sftp.HasExtension("posix-rename@openssh.com"); opts.Overwrite && !ok {
		return UploadResult{}, newFileErr(op, final, ErrUnsupported, nil)
	}
	if opts.Size > 0 {
		if avail, ok := f.available(parent); ok && avail < opts.Size {
			return UploadResult{}, newFileErr(op, final, ErrDiskFull, nil)
		}
	}
	if err := ctx.Err(); err != nil {
		return UploadResult{}, fileErr(op, final, err)
	}

	tmp := path.Join(parent, tempName(name))
	tf, err := f.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return UploadResult{}, fileErr(op, final, err)
	}
	n, err := f.fill(ctx, tf, tmp, final, r, opts, perm)
	if err == nil {
		if opts.Overwrite {
			err = f.replace(op, tmp, final)
		} else {
			err = f.renameNoClobber(op, tmp, final, true)
		}
		if err != nil {
			if fe := (*FileError)(nil); errors.As(err, &fe) {
				fe.Path = final // not the temporary name
			}
		}
	}
	if err != nil {
		// Not ctx: the cleanup must happen when ctx is what ended the upload.
		tf.Close()
		f.sftp.Remove(tmp)
		return UploadResult{}, err
	}
	return UploadResult{Path: final, Size: n, Replaced: replaced}, nil
}

// fill copies r into the open temporary file and closes it, verifying the
// length; on error the caller removes the file.
func (f *Files) fill(ctx context.Context, tf *sftp.File, tmp, final string, r io.Reader, opts UploadOptions, perm fs.FileMode) (int64, error) {
	const op = "upload"
	if perm != 0 {
		tf.Chmod(perm) // best effort: the new file gets the default mode otherwise
	}
	cr := &uploadReader{ctx: ctx, r: r, limit: opts.Size}
	n, err := tf.ReadFromWithConcurrency(cr, f.opts.Concurrency)
	switch {
	case cr.err != nil:
		// The source failed or ctx ended: not the server's fault.
		if errors.Is(cr.err, context.Canceled) || errors.Is(cr.err, context.DeadlineExceeded) {
			return 0, newFileErr(op, final, cr.err, nil)
		}
		if errors.Is(cr.err, ErrIncomplete) {
			return 0, cr.err
		}
		return 0, newFileErr(op, final, ErrIncomplete, cr.err)
	case err != nil:
		if isFailure(err) && f.diskFull(tmp) {
			return 0, newFileErr(op, final, ErrDiskFull, err)
		}
		return 0, fileErr(op, final, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, newFileErr(op, final, err, nil)
	}
	if opts.Size > 0 && n != opts.Size {
		return 0, newFileErr(op, final, ErrIncomplete,
			fmt.Errorf("received %d bytes, announced %d", n, opts.Size))
	}
	// The server's word that every byte landed, not just that each write
	// was acknowledged.
	fi, err := tf.Stat()
	if err != nil {
		return 0, fileErr(op, final, err)
	}
	if fi.Size() != n {
		return 0, newFileErr(op, final, ErrIncomplete,
			fmt.Errorf("server holds %d bytes, sent %d", fi.Size(), n))
	}
	if err := tf.Close(); err != nil {
		if isFailure(err) && f.diskFull(tmp) {
			return 0, newFileErr(op, final, ErrDiskFull, err)
		}
		return 0, fileErr(op, final, err)
	}
	return n, nil
}

// uploadReader checks ctx before each read, stops a body longer than
// announced, and remembers the source's error (to tell it from the
// server's).
type uploadReader struct {
	ctx   context.Context
	r     io.Reader
	limit int64 // announced size, or ≤ 0
	n     int64
	err   error
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if err := u.ctx.Err(); err != nil {
		u.err = err
		return 0, err
	}
	n, err := u.r.Read(p)
	u.n += int64(n)
	if u.limit > 0 && u.n > u.limit {
		u.err = &FileError{Op: "upload", Err: ErrIncomplete,
			Cause: fmt.Errorf("body longer than the announced %d bytes", u.limit)}
		return n, u.err
	}
	if err != nil && err != io.EOF {
		u.err = err
	}
	return n, err
}

// diskSlack is how little free space, after a failed write, counts as
// "the disk is full": what the writes in flight may have been missing.
const diskSlack = 4 << 20

// diskFull reports whether the file system holding p is (nearly) out of
// space for the login, according to statvfs@openssh.com. SFTPv3 reports
// ENOSPC as a bare failure, so this is inference; it is asked before the
// temporary file is removed, while it still occupies what it got.
func (f *Files) diskFull(p string) bool {
	avail, ok := f.available(p)
	return ok && avail < diskSlack
}

// available returns the bytes the login may still write on p's file
// system, when the server offers statvfs@openssh.com.
func (f *Files) available(p string) (int64, bool) {
	if _, ok := f.sftp.HasExtension("statvfs@openssh.com"); !ok {
		return 0, false
	}
	st, err := f.sftp.StatVFS(p)
	if err != nil {
		return 0, false
	}
	avail := st.Bavail * st.Frsize
	if st.Frsize != 0 && avail/st.Frsize != st.Bavail || avail > 1<<62 {
		return 1 << 62, true
	}
	return int64(avail), true
}

// tempName is the hidden name an upload is written under: ".NAME" plus a
// marker and a random suffix, NAME shortened (on a character boundary) so
// the whole stays within nameMax bytes.
func tempName(name string) string {
	const marker = ".shellgate-upload-"
	var rnd [4]byte
	rand.Read(rnd[:])
	suffix := marker + hex.EncodeToString(rnd[:])
	if room := nameMax - 1 - len(suffix); len(name) > room {
		cut := room
		for i := 0; i < 3 && cut > 0 && name[cut]&0xC0 == 0x80; i++ {
			cut-- // do not split a UTF-8 sequence
		}
		name = name[:cut]
	}
	return "." + name + suffix
}
