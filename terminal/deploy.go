package terminal

// Key deployment: placing shellgate keys into authorized_keys over SSH+SFTP.
//
// The safety promise is that of ssh-copy-id and better: only lines carrying
// our marker are ever added, replaced or removed (internal/authkeys), every
// other byte of the file is preserved, and the file is replaced atomically
// (temp file in ~/.ssh, fsync, posix-rename), so a deployment cut off at any
// point leaves either the old file or the new one, never a half-written one.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/authkeys"
)

// DeployKey is one public key to place in authorized_keys.
type DeployKey struct {
	ID             int64  // shellgate key id; our line is marked with it
	Name           string // key name ([A-Za-z0-9_]{1,32}); the login name in user-per-key mode
	AuthorizedLine string // canonical "type base64" (no options)
}

// DeployMode says whose authorized_keys receives the keys.
type DeployMode int

const (
	// DeployToLogin deploys into the authorized_keys of the target's login (t.User).
	DeployToLogin DeployMode = iota
	// DeployUserPerKey deploys each key into the authorized_keys of a login
	// named after the key, created when missing. t.User must be root or
	// have passwordless sudo.
	DeployUserPerKey
)

func (m DeployMode) String() string {
	switch m {
	case DeployToLogin:
		return "login"
	case DeployUserPerKey:
		return "user-per-key"
	}
	return fmt.Sprintf("DeployMode(%d)", int(m))
}

// Conditions of a deployment. Compare with errors.Is; DeployMessage words
// them for people.
var (
	// ErrInvalidDeployKey: a key name or line that fails validation; nothing
	// was sent anywhere.
	ErrInvalidDeployKey = errors.New("invalid key for deployment")
	// ErrUnsafeAuthorizedKeys: ~/.ssh or authorized_keys is a symbolic link
	// or not a directory / regular file; shellgate refuses to edit it.
	ErrUnsafeAuthorizedKeys = errors.New("authorized_keys is not a plain file")
	// ErrNoAtomicRename: the SFTP server lacks posix-rename@openssh.com, so
	// an existing authorized_keys cannot be replaced atomically.
	ErrNoAtomicRename = errors.New("SFTP server cannot replace files atomically")
	// ErrConcurrentEdit: authorized_keys kept changing under us while we
	// edited it; nothing of ours was written.
	ErrConcurrentEdit = errors.New("authorized_keys changed during the deployment")
	// ErrNoPrivilege: user-per-key mode needs root or passwordless sudo.
	ErrNoPrivilege = errors.New("login cannot act as another user")
	// ErrSystemAccount: user-per-key refuses to deploy into root or a
	// system account (UID below 1000).
	ErrSystemAccount = errors.New("refusing to deploy into a system account")
)

// Deployer writes keys into authorized_keys over SSH+SFTP, as the gateway
// identity. Calls may run concurrently; edits of the same file by one
// process are serialised (see fileLocks).
type Deployer struct {
	Dialer   Dialer        // e.g. &net.Dialer{}
	Auth     Auth          // the gateway identity's signer
	HostKeys HostKeyPolicy // pinned keys only in practice: Unknown returns false
	Options  DialOptions

	// beforeRename, when set (tests), runs after the temp file is written
	// and synced and before it is renamed over authorized_keys.
	beforeRename func()
	// staleAfter is how old (by the server's clock) a temp file of ours
	// must be before a later run removes it; default 10 minutes.
	staleAfter time.Duration
}

// Deploy makes sure each key's line is present (adding or updating only our
// marked lines). One SSH connection serves the whole call. log receives
// plain-language lines for the stack log; it may be nil.
func (d *Deployer) Deploy(ctx context.Context, t *Target, keys []DeployKey, mode DeployMode, log func(line string)) error {
	return d.run(ctx, t, keys, mode, true, log)
}

// Remove deletes exactly our lines for these keys. In user-per-key mode the
// logins are left in place (their files and processes are the owner's);
// only our lines go, and a missing login is not an error.
func (d *Deployer) Remove(ctx context.Context, t *Target, keys []DeployKey, mode DeployMode, log func(line string)) error {
	return d.run(ctx, t, keys, mode, false, log)
}

// DeployMessage says in plain words why a deployment failed: connection and
// host key problems as UserMessage words them, the rest specific to
// deployment. It never contains secrets.
func DeployMessage(err error) string {
	var dial *DialError
	var hk *HostKeyError
	var de *deployError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &hk), errors.As(err, &dial):
		return UserMessage(err)
	case errors.As(err, &de):
		return de.message
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "The deployment was cancelled or timed out; authorized_keys was left as it was."
	case errors.Is(err, ErrConnectionLost), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, os.ErrClosed):
		return "The connection was lost during the deployment; authorized_keys was left as it was."
	case errors.Is(err, ErrInvalidDeployKey):
		return "The key cannot be deployed: its name or public key is not valid."
	}
	return "The deployment failed: " + err.Error()
}

// deployError carries a message fit for the stack log next to the error
// chain for errors.Is.
type deployError struct {
	message string
	err     error
}

func (e *deployError) Error() string { return e.err.Error() }
func (e *deployError) Unwrap() error { return e.err }

func deployErrf(sentinel error, message string, detail ...any) error {
	err := sentinel
	if len(detail) > 0 {
		err = fmt.Errorf("%w: %s", sentinel, fmt.Sprint(detail...))
	}
	return &deployError{message: message, err: err}
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

// validateKeys checks every key before anything is sent, and builds the
// line each will have in authorized_keys.
func validateKeys(keys []DeployKey, mode DeployMode) ([]string, error) {
	lines := make([]string, len(keys))
	for i, k := range keys {
		if !keyNameRE.MatchString(k.Name) {
			return nil, fmt.Errorf("%w: key name %q (want [A-Za-z0-9_]{1,32})", ErrInvalidDeployKey, k.Name)
		}
		if k.ID <= 0 {
			return nil, fmt.Errorf("%w: key %s: id %d", ErrInvalidDeployKey, k.Name, k.ID)
		}
		if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k.AuthorizedLine)); err != nil || len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("%w: key %s: not one public key in authorized_keys form", ErrInvalidDeployKey, k.Name)
		}
		line, err := authkeys.Line(k.AuthorizedLine, keyID(k), k.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: key %s: %w", ErrInvalidDeployKey, k.Name, err)
		}
		lines[i] = line
	}
	if mode != DeployToLogin && mode != DeployUserPerKey {
		return nil, fmt.Errorf("%w: unknown mode %d", ErrInvalidDeployKey, mode)
	}
	return lines, nil
}

func keyID(k DeployKey) string { return strconv.FormatInt(k.ID, 10) }

// hostLabel names a server in log lines: "web-1 (10.0.0.5)".
func hostLabel(t *Target) string {
	if t.Name == "" || t.Name == t.Host {
		return t.Host
	}
	return t.Name + " (" + t.Host + ")"
}

func (d *Deployer) run(ctx context.Context, t *Target, keys []DeployKey, mode DeployMode, add bool, log func(string)) (err error) {
	logf := func(format string, args ...any) {
		if log != nil {
			log(fmt.Sprintf(format, args...))
		}
	}
	defer func() {
		if err != nil {
			logf("Failed on %s: %s", t.displayName(), DeployMessage(err))
		}
	}()
	if t == nil {
		return fmt.Errorf("%w: no target", ErrInvalidDeployKey)
	}
	lines, err := validateKeys(keys, mode)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	logf("Connecting to %s", t)
	client, err := Dial(ctx, d.Dialer, t, d.Auth, d.HostKeys, d.Options)
	if err != nil {
		return err
	}
	defer client.Close()
	// Cancelling ctx cuts the connection; the atomic rename means that can
	// never leave a half-written authorized_keys behind.
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	dead := make(chan struct{})
	go func() {
		client.Wait()
		close(dead)
	}()
	err = d.apply(ctx, client, t, keys, lines, mode, add, logf)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	case connectionDead(dead):
		// SFTP reports a dropped connection as whatever write or read
		// failed first; say what happened.
		err = fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	return err
}

// connectionDead reports whether dead closes soon: the SSH transport
// notices a dropped connection a moment after the request that failed.
func connectionDead(dead <-chan struct{}) bool {
	select {
	case <-dead:
		return true
	case <-time.After(500 * time.Millisecond):
		return false
	}
}

func (d *Deployer) apply(ctx context.Context, client *ssh.Client, t *Target, keys []DeployKey, lines []string, mode DeployMode, add bool, logf func(string, ...any)) error {
	if mode == DeployToLogin {
		sc, err := sftp.NewClient(client)
		if err != nil {
			return fmt.Errorf("start SFTP on %s: %w", t, err)
		}
		defer sc.Close()
		home, err := sc.Getwd()
		if err != nil {
			return fmt.Errorf("home directory of %s on %s: %w", t.User, t, err)
		}
		return d.editKeys(ctx, sc, t, t.User, home, keys, lines, add, logf)
	}
	for i, k := range keys {
		if err := d.userPerKey(ctx, client, t, k, lines[i:i+1], add, logf); err != nil {
			return err
		}
	}
	return nil
}

// editKeys adds or removes the lines of keys in home/.ssh/authorized_keys,
// in one write, and logs what happened to each key.
func (d *Deployer) editKeys(ctx context.Context, sc *sftp.Client, t *Target, login, home string, keys []DeployKey, lines []string, add bool, logf func(string, ...any)) error {
	outcomes := make([]authkeys.Outcome, len(keys))
	removed := make([]bool, len(keys))
	edit := func(content []byte) ([]byte, error) {
		for i, k := range keys {
			if add {
				out, o, err := authkeys.Add(content, lines[i], keyID(k))
				if err != nil {
					return nil, fmt.Errorf("%w: key %s: %w", ErrInvalidDeployKey, k.Name, err)
				}
				content, outcomes[i] = out, o
			} else {
				content, removed[i] = authkeys.Remove(content, keyID(k))
			}
		}
		return content, nil
	}
	lock := lockFile(t.Addr() + "\x00" + login)
	lock.Lock()
	defer lock.Unlock()
	if err := d.editFile(ctx, sc, home, add, edit); err != nil {
		return err
	}
	// In user-per-key mode the login is the key's name, so the spec's
	// plain "Key NAME deployed to web-1 (10.0.0.5)" already says where.
	where := hostLabel(t)
	for i, k := range keys {
		switch {
		case !add && removed[i]:
			logf("Key %s removed from %s", k.Name, where)
		case !add:
			logf("Key %s was not on %s", k.Name, where)
		case outcomes[i] == authkeys.OutcomeAppended:
			logf("Key %s deployed to %s", k.Name, where)
		case outcomes[i] == authkeys.OutcomeReplaced:
			logf("Key %s updated on %s", k.Name, where)
		case outcomes[i] == authkeys.OutcomePresentUnmanaged:
			logf("Key %s already present on %s, on a line shellgate does not manage; left as it is", k.Name, where)
		default:
			logf("Key %s already present on %s", k.Name, where)
		}
	}
	return nil
}

// fileLocks serialises edits of one authorized_keys (host, port, login)
// within this process: two attachments deployed at once must not both read
// the old file and the second rename drop the first one's line. Across
// processes, editFile's check before the rename catches it.
var fileLocks sync.Map // string → *sync.Mutex

func lockFile(key string) *sync.Mutex {
	m, _ := fileLocks.LoadOrStore(key, new(sync.Mutex))
	return m.(*sync.Mutex)
}

const (
	// tempPrefix and tempSuffix frame the names of our temp files in
	// ~/.ssh: ".authorized_keys.shellgate-<16 hex>.tmp". Hidden, unique per
	// attempt, and recognisable so a later run can remove stale ones.
	tempPrefix = ".authorized_keys.shellgate-"
	tempSuffix = ".tmp"
	// maxAuthorizedKeys bounds what we read; sshd files are kilobytes.
	maxAuthorizedKeys = 16 << 20
	// editAttempts bounds retries when the file changes under us.
	editAttempts = 3
)

var tempNameRE = regexp.MustCompile(`^` + regexp.QuoteMeta(tempPrefix) + `[0-9a-f]{16}` + regexp.QuoteMeta(tempSuffix) + `$`)

// editFile applies edit to home/.ssh/authorized_keys through sc: creates
// ~/.ssh (0700) when missing, refuses symbolic links, writes nothing when
// edit changes nothing, and otherwise replaces the file atomically with a
// 0600 temp file renamed over it. create=false (removal) never creates
// anything.
func (d *Deployer) editFile(ctx context.Context, sc *sftp.Client, home string, create bool, edit func([]byte) ([]byte, error)) error {
	sshDir := path.Join(home, ".ssh")
	akPath := path.Join(sshDir, "authorized_keys")
	fi, err := sc.Lstat(sshDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !create {
			return nil
		}
		if err := sc.Mkdir(sshDir); err != nil {
			return fmt.Errorf("create %s: %w", sshDir, err)
		}
		if err := sc.Chmod(sshDir, 0o700); err != nil {
			return fmt.Errorf("chmod %s: %w", sshDir, err)
		}
	case err != nil:
		return fmt.Errorf("stat %s: %w", sshDir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return deployErrf(ErrUnsafeAuthorizedKeys,
			fmt.Sprintf("%s is a symbolic link; shellgate does not edit keys through links. Replace it with a directory, or manage the keys by hand.", sshDir), sshDir)
	case !fi.IsDir():
		return deployErrf(ErrUnsafeAuthorizedKeys, fmt.Sprintf("%s is not a directory.", sshDir), sshDir)
	}

	for range editAttempts {
		if err := ctx.Err(); err != nil {
			return err
		}
		before, content, err := readAuthorizedKeys(sc, akPath)
		if err != nil {
			return err
		}
		if before == nil && !create {
			return nil
		}
		updated, err := edit(content)
		if err != nil {
			return err
		}
		if bytes.Equal(updated, content) {
			return nil // nothing to do: write nothing, create nothing
		}
		err = d.replace(sc, sshDir, akPath, before, updated)
		if errors.Is(err, ErrConcurrentEdit) {
			continue
		}
		return err
	}
	return deployErrf(ErrConcurrentEdit, "authorized_keys kept changing while shellgate edited it; nothing was written. Try again.")
}

// readAuthorizedKeys returns the file's stat (nil when missing) and content.
func readAuthorizedKeys(sc *sftp.Client, akPath string) (fs.FileInfo, []byte, error) {
	fi, err := sc.Lstat(akPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("stat %s: %w", akPath, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		// Following it could edit a file shared with other accounts or
		// managed elsewhere (configuration management); sshd would read
		// the target, so silently replacing the link with a file would
		// also drop every key in it. Refuse and say so.
		return nil, nil, deployErrf(ErrUnsafeAuthorizedKeys,
			fmt.Sprintf("%s is a symbolic link; shellgate does not edit keys through links. Replace it with a plain file, or manage the keys by hand.", akPath), akPath)
	case !fi.Mode().IsRegular():
		return nil, nil, deployErrf(ErrUnsafeAuthorizedKeys, fmt.Sprintf("%s is not a regular file.", akPath), akPath)
	case fi.Size() > maxAuthorizedKeys:
		return nil, nil, deployErrf(ErrUnsafeAuthorizedKeys, fmt.Sprintf("%s is larger than %d MiB.", akPath, maxAuthorizedKeys>>20), akPath)
	}
	f, err := sc.Open(akPath)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", akPath, err)
	}
	defer f.Close()
	content, err := io.ReadAll(io.LimitReader(f, maxAuthorizedKeys+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", akPath, err)
	}
	if len(content) > maxAuthorizedKeys {
		return nil, nil, deployErrf(ErrUnsafeAuthorizedKeys, fmt.Sprintf("%s is larger than %d MiB.", akPath, maxAuthorizedKeys>>20), akPath)
	}
	if content == nil {
		content = []byte{}
	}
	return fi, content, nil
}

// replace writes content to a fresh temp file in sshDir and renames it over
// akPath. before is akPath's stat when it was read (nil: it did not exist);
// if the file changed since, nothing is renamed and ErrConcurrentEdit is
// returned so the caller can start over from the new content.
func (d *Deployer) replace(sc *sftp.Client, sshDir, akPath string, before fs.FileInfo, content []byte) (err error) {
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); !ok && before != nil {
		return deployErrf(ErrNoAtomicRename,
			"The server's SFTP does not support atomic replacement (posix-rename@openssh.com); authorized_keys was not changed.")
	}
	var suffix [8]byte
	rand.Read(suffix[:])
	tmp := path.Join(sshDir, tempPrefix+hex.EncodeToString(suffix[:])+tempSuffix)
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			// Best effort: if the connection is gone the next run
			// removes it (cleanStale).
			sc.Remove(tmp)
		}
	}()
	// Mode first, while the file is still empty: no moment where the keys
	// sit in a file readable by others.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil && !isUnsupported(err) {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	tfi, err := sc.Lstat(tmp)
	if err != nil {
		return fmt.Errorf("stat %s: %w", tmp, err)
	}
	if tfi.Size() != int64(len(content)) {
		return fmt.Errorf("write %s: %d bytes on disk, want %d", tmp, tfi.Size(), len(content))
	}
	// Our fresh temp file's mtime is the server's "now".
	d.cleanStale(sc, sshDir, tfi.ModTime(), path.Base(tmp))

	if d.beforeRename != nil {
		d.beforeRename()
	}
	now, err := sc.Lstat(akPath)
	switch {
	case before == nil && err == nil, before != nil && err != nil && errors.Is(err, fs.ErrNotExist):
		return ErrConcurrentEdit
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("stat %s: %w", akPath, err)
	case before != nil && (now.Size() != before.Size() || !now.ModTime().Equal(before.ModTime()) || now.Mode() != before.Mode()):
		return ErrConcurrentEdit
	}
	if before == nil {
		// Plain SFTP rename refuses to overwrite, which is what we want
		// for a file that must not exist yet.
		err = sc.Rename(tmp, akPath)
	} else {
		err = sc.PosixRename(tmp, akPath)
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, akPath, err)
	}
	renamed = true
	return nil
}

// cleanStale removes temp files of ours that a deployment cut off earlier
// left behind: names matching tempNameRE other than keep, regular files,
// last modified staleAfter or longer before now. now is the server's clock
// (the mtime of the temp file just written), so clock skew between
// shellgate and the server does not matter; the age keeps a concurrent
// deployment's temp file alive. Errors are ignored: leftovers are harmless
// to sshd and the next run tries again.
func (d *Deployer) cleanStale(sc *sftp.Client, sshDir string, now time.Time, keep string) {
	age := d.staleAfter
	if age == 0 {
		age = 10 * time.Minute
	}
	cutoff := now.Add(-age)
	entries, err := sc.ReadDir(sshDir)
	if err != nil {
		return
	}
	for i, e := range entries {
		if i >= 10000 {
			return
		}
		if e.Name() == keep || !tempNameRE.MatchString(e.Name()) || !e.Mode().IsRegular() || e.ModTime().After(cutoff) {
			continue
		}
		sc.Remove(path.Join(sshDir, e.Name()))
	}
}

func isUnsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}
