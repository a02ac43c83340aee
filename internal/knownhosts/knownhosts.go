// Package knownhosts imports and exports OpenSSH known_hosts content, so an
// administrator can pin the host keys users already trust, and take
// shellgate's pins back to OpenSSH.
//
// Import is lenient line by line, as OpenSSH is: a line it cannot read is
// reported as a warning and the rest is still imported. @cert-authority
// lines are skipped (shellgate pins keys, not CAs). @revoked lines are not
// imported either, but they are honoured: an entry in the same file whose
// key is revoked is dropped, as ssh would refuse it.
//
// Lines are parsed by golang.org/x/crypto/ssh.ParseKnownHosts; matching,
// including hashed hosts (|1|salt|HMAC-SHA1), follows OpenSSH.
package knownhosts

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// MaxInput bounds the imported data.
const MaxInput = 4 << 20

// ErrTooLarge is returned for data longer than MaxInput.
var ErrTooLarge = errors.New("known_hosts data too large")

// Entry is one imported known_hosts line.
type Entry struct {
	// Hosts are the patterns as written: "host", "[host]:port", hashed
	// "|1|salt|hash", wildcards ("*.example.com") and negations ("!x").
	Hosts   []string
	Key     ssh.PublicKey
	Comment string
	// Line is the 1-based line number in the imported data.
	Line int
}

// Parse reads known_hosts data. It returns the entries in file order and a
// warning for every line skipped; err is set only when the input is refused
// as a whole.
func Parse(data []byte) ([]Entry, []string, error) {
	if len(data) > MaxInput {
		return nil, nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(data), MaxInput)
	}
	var (
		entries  []Entry
		warnings []string
		revoked  = map[string]bool{}
	)
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line = bytes.TrimSuffix(line, []byte("\r"))
		if i == 0 {
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
		}
		marker, hosts, key, comment, _, err := ssh.ParseKnownHosts(line)
		if errors.Is(err, io.EOF) {
			continue // blank or comment line
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("line %d skipped: %v", n, strings.TrimPrefix(err.Error(), "ssh: ")))
			continue
		}
		switch marker {
		case "revoked":
			revoked[string(key.Marshal())] = true
			warnings = append(warnings, fmt.Sprintf("line %d: @revoked key %s not imported; entries with this key are dropped", n, ssh.FingerprintSHA256(key)))
			continue
		case "cert-authority":
			warnings = append(warnings, fmt.Sprintf("line %d: @cert-authority entry skipped: shellgate pins host keys, not certificate authorities", n))
			continue
		case "":
		default:
			warnings = append(warnings, fmt.Sprintf("line %d: unknown marker @%s, entry skipped", n, marker))
			continue
		}
		if bad := badPattern(hosts); bad != "" {
			warnings = append(warnings, fmt.Sprintf("line %d skipped: invalid host pattern %q", n, bad))
			continue
		}
		entries = append(entries, Entry{Hosts: hosts, Key: key, Comment: comment, Line: n})
	}
	kept := entries[:0]
	for _, e := range entries {
		if revoked[string(e.Key.Marshal())] {
			warnings = append(warnings, fmt.Sprintf("line %d dropped: its key %s is @revoked in the same file", e.Line, ssh.FingerprintSHA256(e.Key)))
			continue
		}
		kept = append(kept, e)
	}
	return kept, warnings, nil
}

func badPattern(hosts []string) string {
	for _, h := range hosts {
		p := strings.TrimPrefix(h, "!")
		if p == "" {
			return h
		}
		if strings.HasPrefix(p, "|") {
			if _, _, err := decodeHash(p); err != nil {
				return h
			}
		}
	}
	return ""
}

// decodeHash splits "|1|salt|hash". Only type 1 (HMAC-SHA1) exists.
func decodeHash(p string) (salt, hash []byte, err error) {
	parts := strings.Split(p, "|")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "1" {
		return nil, nil, errors.New("want |1|salt|hash")
	}
	if salt, err = base64.StdEncoding.DecodeString(parts[2]); err != nil {
		return nil, nil, fmt.Errorf("salt: %w", err)
	}
	if hash, err = base64.StdEncoding.DecodeString(parts[3]); err != nil {
		return nil, nil, fmt.Errorf("hash: %w", err)
	}
	if len(hash) != sha1.Size {
		return nil, nil, errors.New("hash is not 20 bytes")
	}
	return salt, hash, nil
}

// address returns the string OpenSSH looks up for a host and port:
// "host" for port 22, "[host]:port" otherwise, lower-cased as ssh does.
func address(host string, port int) string {
	return strings.ToLower(xknownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port))))
}

// Matches reports whether the entry applies to host:port, as OpenSSH
// decides: some pattern matches (hashed, exact or wildcard, case-insensitive)
// and no negated pattern does.
func (e Entry) Matches(host string, port int) bool {
	addr := address(host, port)
	found := false
	for _, h := range e.Hosts {
		negated := strings.HasPrefix(h, "!")
		p := strings.TrimPrefix(h, "!")
		var match bool
		if strings.HasPrefix(p, "|") {
			salt, hash, err := decodeHash(p)
			if err != nil {
				continue
			}
			mac := hmac.New(sha1.New, salt)
			mac.Write([]byte(addr))
			match = hmac.Equal(mac.Sum(nil), hash)
		} else {
			match = wildcardMatch(strings.ToLower(p), addr)
		}
		if match && negated {
			return false
		}
		found = found || match
	}
	return found
}

// wildcardMatch matches s against a pattern where '*' matches any run of
// characters and '?' exactly one, like OpenSSH's match_pattern.
func wildcardMatch(pat, s string) bool {
	// Iterative with single backtrack point: linear in practice, no
	// exponential blow-up on patterns like "a*a*a*a*b".
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pat) && (pat[p] == '?' || pat[p] == s[i]):
			p++
			i++
		case p < len(pat) && pat[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == '*' {
		p++
	}
	return p == len(pat)
}

// Line returns a known_hosts line (without line ending) pinning key for
// host:port, in the form ssh writes: "host" for port 22, "[host]:port"
// otherwise.
func Line(host string, port int, key ssh.PublicKey) string {
	return xknownhosts.Line([]string{address(host, port)}, key)
}

// HashedLine is Line with the host hashed as ssh-keygen -H does, so the file
// does not list the servers it knows.
func HashedLine(host string, port int, key ssh.PublicKey) string {
	return xknownhosts.HashHostname(address(host, port)) + " " +
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}
