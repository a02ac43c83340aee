package terminal

// User-per-key deployment.
//
// Mechanism: shellgate's login (t.User) must be root or have passwordless
// sudo. Over one SSH connection it
//
//  1. looks the login up with `getent passwd NAME` (like `id NAME`, but it
//     also gives the home directory), and creates it when missing with
//     `useradd -m -s /bin/bash NAME` (through `sudo -n` unless root);
//  2. starts the system's sftp-server AS THAT USER on an exec channel
//     (`runuser -u NAME` as root, `sudo -n -u NAME` otherwise) and speaks
//     SFTP to it, so the very same editing code as DeployToLogin runs.
//
// Running the edit as the user, rather than as root followed by chown, is
// the robust choice: files get the right owner by construction, and a user
// who turns ~/.ssh or authorized_keys into a link to /root/.ssh or
// /etc/shadow gains nothing, because the kernel checks the writes against
// the user's own permissions (root writing into a user-controlled directory
// is the classic privilege escalation). Links are refused anyway.
//
// Names are validated against [A-Za-z0-9_]{1,32} immediately before any
// command line is built, so they can never carry shell syntax. root and
// system accounts (UID below 1000) are refused: a key named "root" or
// "daemon" must not become a way into those accounts.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// minUserUID is the lowest UID user-per-key mode deploys into; below it
// are system accounts on every mainstream distribution.
const minUserUID = 1000

// sftpServerScript starts the first sftp-server found at the usual places
// (Debian/Ubuntu, RHEL/Fedora, Arch/SUSE, Alpine). It contains no single
// quote, so it can be wrapped in one.
const sftpServerScript = `for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server; do if [ -x "$p" ]; then exec "$p"; fi; done; echo "sftp-server not found" >&2; exit 127`

// userName re-validates a login name right before it goes into a command
// line: the check that makes quoting unnecessary.
func userName(name string) (string, error) {
	if !keyNameRE.MatchString(name) {
		return "", fmt.Errorf("%w: user name %q", ErrInvalidDeployKey, name)
	}
	return name, nil
}

// passwdEntry is the part of a passwd line we use.
type passwdEntry struct {
	uid  int
	home string
}

// parsePasswd parses one getent passwd line for name.
func parsePasswd(out, name string) (passwdEntry, error) {
	line, _, _ := strings.Cut(strings.TrimRight(out, "\r\n"), "\n")
	f := strings.Split(line, ":")
	if len(f) != 7 || f[0] != name {
		return passwdEntry{}, fmt.Errorf("unexpected passwd entry for %s: %q", name, line)
	}
	uid, err := strconv.Atoi(f[2])
	if err != nil || uid < 0 {
		return passwdEntry{}, fmt.Errorf("unexpected UID for %s: %q", name, f[2])
	}
	home := f[5]
	if !strings.HasPrefix(home, "/") || strings.ContainsAny(home, "\x00\r\n") {
		return passwdEntry{}, fmt.Errorf("unexpected home directory for %s: %q", name, home)
	}
	return passwdEntry{uid: uid, home: home}, nil
}

// privileged returns the command prefix that runs a command as root.
func privileged(t *Target) string {
	if t.User == "root" {
		return ""
	}
	return "sudo -n "
}

// asUserCommand runs script (no single quotes) as user name.
func asUserCommand(t *Target, name, script string) string {
	if t.User == "root" {
		// runuser is util-linux's su for root (no PAM prompt, no
		// password); su is the fallback where util-linux is absent.
		return "if command -v runuser >/dev/null 2>&1; then exec runuser -u " + name + " -- /bin/sh -c '" + script +
			"'; else exec su -s /bin/sh -c '" + script + "' " + name + "; fi"
	}
	return "exec sudo -n -u " + name + " -- /bin/sh -c '" + script + "'"
}

func (d *Deployer) userPerKey(ctx context.Context, client *ssh.Client, t *Target, k DeployKey, lines []string, add bool, logf func(string, ...any)) error {
	name, err := userName(k.Name)
	if err != nil {
		return err
	}
	entry, found, err := lookupUser(ctx, client, t, name)
	if err != nil {
		return err
	}
	if !found {
		if !add {
			logf("Key %s was not on %s: user %s does not exist", k.Name, hostLabel(t), name)
			return nil
		}
		logf("Adding user: %s", name)
		out, code, err := runCommand(ctx, client, privileged(t)+"useradd -m -s /bin/bash "+name)
		if err != nil {
			return fmt.Errorf("add user %s on %s: %w", name, t, err)
		}
		if code != 0 {
			return privilegeError(t, "add user "+name, code, out)
		}
		if entry, found, err = lookupUser(ctx, client, t, name); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("add user %s on %s: user still missing after useradd", name, t)
		}
	}
	if entry.uid < minUserUID {
		return deployErrf(ErrSystemAccount,
			fmt.Sprintf("%s on %s is a system account (UID %d); shellgate does not deploy keys into it.", name, t.displayName(), entry.uid),
			name)
	}

	sc, closeSFTP, err := sftpAsUser(ctx, client, t, name)
	if err != nil {
		return err
	}
	err = d.editKeys(ctx, sc, t, name, entry.home, []DeployKey{k}, lines, add, logf)
	if cerr := closeSFTP(); err == nil && cerr != nil {
		return cerr
	}
	return err
}

// lookupUser runs getent passwd NAME. getent exits 2 when the name is not
// found.
func lookupUser(ctx context.Context, client *ssh.Client, t *Target, name string) (passwdEntry, bool, error) {
	out, code, err := runCommand(ctx, client, "getent passwd "+name)
	switch {
	case err != nil:
		return passwdEntry{}, false, fmt.Errorf("look up user %s on %s: %w", name, t, err)
	case code == 2:
		return passwdEntry{}, false, nil
	case code != 0:
		return passwdEntry{}, false, fmt.Errorf("look up user %s on %s: getent exited with %d: %s", name, t, code, firstLine(out))
	}
	e, err := parsePasswd(out, name)
	if err != nil {
		return passwdEntry{}, false, fmt.Errorf("look up user %s on %s: %w", name, t, err)
	}
	return e, true, nil
}

func privilegeError(t *Target, what string, code int, out string) error {
	msg := firstLine(out)
	if t.User != "root" && (strings.Contains(out, "sudo") || code == 127) {
		return deployErrf(ErrNoPrivilege,
			fmt.Sprintf("Could not %s on %s: the login %s needs root or passwordless sudo for user-per-key mode (%s).",
				what, t.displayName(), t.User, msg), what, ": ", msg)
	}
	return deployErrf(fmt.Errorf("%s: exit status %d", what, code),
		fmt.Sprintf("Could not %s on %s: %s", what, t.displayName(), msg))
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

// maxCommandOutput bounds what runCommand keeps of a command's output.
const maxCommandOutput = 64 << 10

// runCommand runs cmd on an exec channel and returns its combined output
// (bounded) and exit status. err is set only when no exit status came back.
func runCommand(ctx context.Context, client *ssh.Client, cmd string) (string, int, error) {
	s, err := client.NewSession()
	if err != nil {
		return "", -1, err
	}
	defer s.Close()
	out := &capBuffer{max: maxCommandOutput}
	s.Stdout, s.Stderr = out, out
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	err = s.Run(cmd)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return out.String(), 0, nil
	case errors.As(err, &exit):
		return out.String(), exit.ExitStatus(), nil
	}
	return out.String(), -1, err
}

// sftpAsUser starts sftp-server as name on an exec channel and returns an
// SFTP client on it, and a function that closes both and reports what the
// server said on stderr if it failed.
func sftpAsUser(ctx context.Context, client *ssh.Client, t *Target, name string) (*sftp.Client, func() error, error) {
	s, err := client.NewSession()
	if err != nil {
		return nil, nil, fmt.Errorf("open session on %s: %w", t, err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	stderr := &capBuffer{max: maxCommandOutput}
	s.Stderr = stderr
	if err := s.Start(asUserCommand(t, name, sftpServerScript)); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("start sftp-server as %s on %s: %w", name, t, err)
	}
	sc, err := sftp.NewClientPipe(stdout, stdin)
	if err != nil {
		// The command failed before speaking SFTP (sudo refused, no
		// sftp-server): its stderr says why.
		werr := waitSession(ctx, s)
		s.Close()
		code := -1
		var exit *ssh.ExitError
		if errors.As(werr, &exit) {
			code = exit.ExitStatus()
		}
		return nil, nil, privilegeError(t, "act as user "+name, code, stderr.String())
	}
	closeFn := func() error {
		// The edit's outcome is already known; how the channel ends
		// afterwards does not change it.
		sc.Close()
		stdin.Close()
		waitSession(ctx, s)
		s.Close()
		return nil
	}
	return sc, closeFn, nil
}

// waitSession waits for the remote command, or gives up when ctx ends.
func waitSession(ctx context.Context, s *ssh.Session) error {
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// capBuffer keeps the first max bytes written to it and discards the rest.
type capBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
