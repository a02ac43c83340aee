package terminal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/pkg/sftp"
)

// fileCondition is a sentinel for a file-panel condition. It also matches
// the io/fs sentinel of the same meaning, so callers may test with either
// errors.Is(err, terminal.ErrNotExist) or errors.Is(err, fs.ErrNotExist).
type fileCondition struct {
	msg string
	std error // the io/fs equivalent, or nil
}

func (c *fileCondition) Error() string { return c.msg }

func (c *fileCondition) Is(target error) bool { return c.std != nil && target == c.std }

// Conditions of file operations. Every error returned by Files and
// RemoteFile is a *FileError whose Err is one of these when the condition is
// known; compare with errors.Is. FileMessage turns them into plain words.
var (
	ErrNotExist    error = &fileCondition{"no such file or folder", fs.ErrNotExist}
	ErrExists      error = &fileCondition{"already exists", fs.ErrExist}
	ErrPermission  error = &fileCondition{"permission denied", fs.ErrPermission}
	ErrNotDir      error = &fileCondition{"not a folder", nil}
	ErrIsDir       error = &fileCondition{"is a folder", nil}
	ErrDirNotEmpty error = &fileCondition{"folder not empty", nil}
	// ErrDiskFull: SFTPv3 reports "no space left" as a bare SSH_FX_FAILURE,
	// so it is inferred from statvfs@openssh.com (see docs/files.md).
	ErrDiskFull    error = &fileCondition{"not enough space on the server", nil}
	ErrInvalidName error = &fileCondition{"invalid file name", fs.ErrInvalid}
	// ErrIncomplete: a transfer ended with fewer (or more) bytes than
	// announced, or the file changed size while it was read.
	ErrIncomplete error = &fileCondition{"transfer incomplete", nil}
	// ErrTooLarge: a walk (CountTree, a listing) met more entries than its bound.
	ErrTooLarge    error = &fileCondition{"too many entries", nil}
	ErrUnsupported error = &fileCondition{"not supported by the server", nil}
)

// FileError is the error of every file operation: which operation, on
// which remote path, and why. Err is one of the conditions above when it is
// known; Cause keeps what the SFTP server or library said, for logs.
type FileError struct {
	Op    string // "list", "upload", "rename", …
	Path  string // remote path the operation was about
	Err   error  // a condition (ErrNotExist, …), context.Canceled, ErrConnectionLost, or the raw cause
	Cause error  // underlying error; may be nil or equal to Err
}

func (e *FileError) Error() string {
	s := fmt.Sprintf("%s %q: %v", e.Op, e.Path, e.Err)
	if e.Cause != nil && e.Cause != e.Err {
		s += " (" + e.Cause.Error() + ")"
	}
	return s
}

func (e *FileError) Unwrap() []error {
	if e.Cause == nil || e.Cause == e.Err {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

// fileErr wraps err for op on p, classifying what can be classified from
// the status code alone. Operations that get a bare SSH_FX_FAILURE classify
// it further themselves (usually with an lstat) and call newFileErr.
func fileErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FileError
	if errors.As(err, &fe) {
		return err
	}
	return newFileErr(op, p, classify(err), err)
}

func newFileErr(op, p string, cond, cause error) error {
	return &FileError{Op: op, Path: p, Err: cond, Cause: cause}
}

// classify maps an SFTP-level error to a condition, or returns it unchanged.
func classify(err error) error {
	var status *sftp.StatusError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return ErrNotExist
	case errors.Is(err, fs.ErrPermission):
		return ErrPermission
	case errors.Is(err, sftp.ErrSSHFxConnectionLost), errors.Is(err, sftp.ErrSSHFxNoConnection):
		// pkg/sftp fails every pending and later request this way once
		// the session's channel is gone.
		return ErrConnectionLost
	case errors.Is(err, sftp.ErrSSHFxOpUnsupported):
		return ErrUnsupported
	case errors.As(err, &status):
		switch status.FxCode() {
		case sftp.ErrSSHFxNoSuchFile: // from rawSFTP, which pkg/sftp does not normalise
			return ErrNotExist
		case sftp.ErrSSHFxPermissionDenied:
			return ErrPermission
		case sftp.ErrSSHFxOpUnsupported:
			return ErrUnsupported
		case sftp.ErrSSHFxBadMessage:
			// OpenSSH's sftp-server maps ENAMETOOLONG and EINVAL here.
			return ErrInvalidName
		case sftp.ErrSSHFxConnectionLost, sftp.ErrSSHFxNoConnection:
			return ErrConnectionLost
		}
	}
	return err
}

// isFailure reports a bare SSH_FX_FAILURE, the status OpenSSH uses for every
// errno it has no code for (EEXIST, ENOTDIR, ENOTEMPTY, ENOSPC, EISDIR, …).
func isFailure(err error) bool {
	var status *sftp.StatusError
	return errors.As(err, &status) && status.FxCode() == sftp.ErrSSHFxFailure
}

// FileMessage says in plain words why a file operation failed, naming the
// file but nothing internal; log the error itself for the details.
func FileMessage(err error) string {
	if err == nil {
		return ""
	}
	name := "the file"
	var fe *FileError
	if errors.As(err, &fe) && fe.Path != "" {
		name = fmt.Sprintf("%q", displayPath(fe.Path))
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "The transfer was cancelled."
	case errors.Is(err, context.DeadlineExceeded):
		return "The operation took too long and was stopped."
	case errors.Is(err, ErrNotExist):
		return fmt.Sprintf("No such file or folder: %s.", name)
	case errors.Is(err, ErrExists):
		return fmt.Sprintf("%s already exists.", capitalize(name))
	case errors.Is(err, ErrPermission):
		return fmt.Sprintf("Permission denied: %s.", name)
	case errors.Is(err, ErrNotDir):
		return fmt.Sprintf("%s is not a folder.", capitalize(name))
	case errors.Is(err, ErrIsDir):
		return fmt.Sprintf("%s is a folder.", capitalize(name))
	case errors.Is(err, ErrDirNotEmpty):
		return fmt.Sprintf("The folder %s is not empty.", name)
	case errors.Is(err, ErrDiskFull):
		return fmt.Sprintf("There is not enough space on the server for %s.", name)
	case errors.Is(err, ErrInvalidName):
		return fmt.Sprintf("%s is not a valid name.", capitalize(name))
	case errors.Is(err, ErrIncomplete):
		return fmt.Sprintf("The transfer of %s did not complete; nothing was changed.", name)
	case errors.Is(err, ErrTooLarge):
		return fmt.Sprintf("%s holds too many entries.", capitalize(name))
	case errors.Is(err, ErrUnsupported):
		return "The server does not support this operation."
	case errors.Is(err, ErrConnectionLost):
		return "The connection to the server was lost."
	default:
		return fmt.Sprintf("The server could not complete the operation on %s.", name)
	}
}

// displayPath shortens a path to its last element for messages, keeping "/" whole.
func displayPath(p string) string {
	if b := path.Base(p); b != "." && b != "" {
		return b
	}
	return p
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	if strings.HasPrefix(s, `"`) {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
