package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/terminal"
)

// SSHLogin is one login attempt found in a server's own SSH log.
type SSHLogin struct {
	At          time.Time // zero when the line carries no time (sshd -E files)
	Result      string    // "accepted", "failed" or "invalid user"
	Method      string    // publickey, password, keyboard-interactive/pam, … ("" for invalid user, last)
	User        string
	From        string
	Port        int    // source port; 0 when unknown (last)
	KeyType     string // e.g. ED25519, for accepted public keys
	Fingerprint string // SHA256:…
	Raw         string // the log line as read
}

var (
	reAccepted = regexp.MustCompile(`^Accepted (\S+) for (\S+) from (\S+) port (\d+)(?: ssh2)?(?:: (\S+) (SHA256:\S+|MD5:\S+))?`)
	reFailed   = regexp.MustCompile(`^Failed (\S+) for (invalid user )?(\S*) from (\S+) port (\d+)`)
	reInvalid  = regexp.MustCompile(`^Invalid user (\S*) from (\S+) port (\d+)`)
	// "host sshd[123]: " or "host sshd-session[123]: " (OpenSSH ≥ 9.8) after the time.
	reProgram = regexp.MustCompile(`^\S+ (?:sshd|sshd-session|sshd-auth)(?:\[\d+\])?: `)
)

// ParseSSHLogLine reads one line of an OpenSSH log: journalctl -o short-iso, syslog
// (traditional "Nov 21 10:00:00" or RFC 3339 timestamps) or sshd -E (no timestamp).
// Lines that are not a login attempt return false. now supplies the year of
// traditional syslog timestamps (which have none).
func ParseSSHLogLine(line string, now time.Time) (SSHLogin, bool) {
	line = strings.TrimRight(line, "\r\n")
	rest := line
	var at time.Time
	if f, r, ok := strings.Cut(rest, " "); ok {
		for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339Nano, "2006-01-02T15:04:05.000000-0700"} {
			if t, err := time.Parse(layout, f); err == nil {
				at, rest = t, r
				break
			}
		}
	}
	if at.IsZero() && len(rest) > 16 && rest[3] == ' ' && rest[15] == ' ' {
		if t, err := time.ParseInLocation("Jan _2 15:04:05", rest[:15], now.Location()); err == nil {
			t = t.AddDate(now.Year(), 0, 0)
			if t.After(now.Add(24 * time.Hour)) { // December's lines read in January
				t = t.AddDate(-1, 0, 0)
			}
			at, rest = t, rest[16:]
		}
	}
	if !at.IsZero() {
		loc := reProgram.FindStringIndex(rest)
		if loc == nil {
			return SSHLogin{}, false
		}
		rest = rest[loc[1]:]
	}
	l := SSHLogin{At: at, Raw: line}
	if m := reAccepted.FindStringSubmatch(rest); m != nil {
		l.Result, l.Method, l.User, l.From = "accepted", m[1], m[2], m[3]
		l.Port, _ = strconv.Atoi(m[4])
		l.KeyType, l.Fingerprint = m[5], m[6]
		return l, true
	}
	if m := reFailed.FindStringSubmatch(rest); m != nil {
		l.Result, l.Method, l.User, l.From = "failed", m[1], m[3], m[4]
		if m[2] != "" {
			l.Result = "invalid user"
		}
		l.Port, _ = strconv.Atoi(m[5])
		return l, true
	}
	if m := reInvalid.FindStringSubmatch(rest); m != nil {
		l.Result, l.User, l.From = "invalid user", m[1], m[2]
		l.Port, _ = strconv.Atoi(m[3])
		return l, true
	}
	return SSHLogin{}, false
}

// ParseLastLine reads one line of `last -F -w`:
// "alice    pts/0        203.0.113.7      Sat Nov 21 21:05:12 2026 - Sat Nov 21 21:07:00 2026  (00:01)".
func ParseLastLine(line string) (SSHLogin, bool) {
	f := strings.Fields(line)
	if len(f) < 8 || f[0] == "reboot" || f[0] == "wtmp" || f[0] == "btmp" || f[0] == "shutdown" {
		return SSHLogin{}, false
	}
	// A local console login has no host column: the date starts at once.
	if _, err := time.Parse("Mon", f[2]); err == nil {
		return SSHLogin{}, false
	}
	const i = 3 // user, tty, host, then the date
	if len(f) < i+5 {
		return SSHLogin{}, false
	}
	at, err := time.ParseInLocation("Mon Jan _2 15:04:05 2006", strings.Join(f[i:i+5], " "), time.Local)
	if err != nil {
		at, err = time.ParseInLocation("Mon Jan 2 15:04:05 2006", strings.Join(f[i:i+5], " "), time.Local)
		if err != nil {
			return SSHLogin{}, false
		}
	}
	return SSHLogin{At: at, Result: "accepted", User: f[0], From: f[2], Raw: strings.TrimSpace(line)}, true
}

// SSHLogReader reads servers' own SSH login history over SSH, as the gateway identity.
type SSHLogReader struct {
	Dialer  terminal.Dialer
	Auth    terminal.Auth // the gateway identity's signer
	Options terminal.DialOptions
	// MaxBytes bounds what is read from one source (default 4 MiB).
	MaxBytes int
}

// ErrNoSSHLog means none of the places tried held a readable SSH log.
var ErrNoSSHLog = errors.New("no readable SSH log on the server")

// Read returns the login attempts on t since a time (lines without a time are all
// returned), trying the override file first if set, then the journal, auth.log,
// secure, and last. source names where they came from.
func (r *SSHLogReader) Read(ctx context.Context, t *terminal.Target, override string, since, now time.Time) ([]SSHLogin, string, error) {
	client, err := terminal.Dial(ctx, r.Dialer, t, r.Auth, nil, r.Options)
	if err != nil {
		return nil, "", err
	}
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	max := r.MaxBytes
	if max <= 0 {
		max = 4 << 20
	}
	type source struct{ name, cmd string }
	var sources []source
	if override != "" {
		if !validLogPath(override) {
			return nil, "", fmt.Errorf("SSH log file %q: want an absolute path without shell characters", override)
		}
		sources = append(sources, source{override, "tail -n 20000 -- '" + override + "'"})
	}
	sources = append(sources,
		source{"journal", "journalctl -u ssh -u sshd --since '" + since.UTC().Format("2006-01-02 15:04:05") + " UTC' -o short-iso --no-pager -q"},
		source{"/var/log/auth.log", "tail -n 20000 /var/log/auth.log"},
		source{"/var/log/secure", "tail -n 20000 /var/log/secure"},
		source{"last", "last -F -w"},
	)
	for _, src := range sources {
		out, err := runCapped(client, src.cmd, max)
		if ctx.Err() != nil {
			return nil, "", context.Cause(ctx)
		}
		if err != nil && len(out) == 0 {
			continue
		}
		var logins []SSHLogin
		for _, line := range strings.Split(string(out), "\n") {
			var l SSHLogin
			var ok bool
			if src.name == "last" {
				l, ok = ParseLastLine(line)
			} else {
				l, ok = ParseSSHLogLine(line, now)
			}
			if ok && (l.At.IsZero() || !l.At.Before(since)) {
				logins = append(logins, l)
			}
		}
		if len(logins) > 0 || src.name == override {
			return logins, src.name, nil
		}
	}
	return nil, "", ErrNoSSHLog
}

func validLogPath(p string) bool {
	return strings.HasPrefix(p, "/") && len(p) <= 512 && !strings.ContainsAny(p, "\x00\n'\"`$\\;&|<>")
}

// capBuffer keeps the first max bytes written to it and drops the rest.
type capBuffer struct {
	bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func runCapped(client *ssh.Client, cmd string, max int) ([]byte, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	out := &capBuffer{max: max}
	sess.Stdout = out
	err = sess.Run(cmd)
	return out.Bytes(), err
}
