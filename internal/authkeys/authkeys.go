// Package authkeys edits the content of an authorized_keys file safely: it
// adds, replaces and removes only the lines shellgate owns and preserves
// every other byte — comments, options, blank lines, CRLF line endings, a
// missing final newline, a byte order mark.
//
// A line is shellgate's when the first word of its comment is the marker of
// a key id: "shellgate:key=<id>". Our lines look like
//
//	ssh-ed25519 AAAAC3Nza... shellgate:key=42 My_office_Laptop
//
// The marker sits in the comment, which sshd ignores, so the line works as
// any other; the key name after it is only for people reading the file.
//
// Keys already present on lines we do not own: Add leaves such a line alone
// and adds nothing (OutcomePresentUnmanaged). Adding a second, unrestricted
// copy would silently bypass options the administrator put on theirs
// (from=, command=, expiry-time=), because sshd accepts the key on any line
// that allows it; and since we never add a line, a later Remove cannot take
// away access the owner granted by hand. Access then stays exactly as the
// owner configured it, and the caller can report that the key is present
// but not managed by shellgate.
//
// All functions are pure: they take and return file contents. Writing the
// file (temp file, rename, modes) is the caller's job.
package authkeys

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MarkerPrefix starts the first comment word of every line shellgate owns.
const MarkerPrefix = "shellgate:key="

var (
	// ErrInvalidKeyID is returned for a key id that could not be found again
	// as one comment word.
	ErrInvalidKeyID = errors.New("invalid key id")
	// ErrInvalidLine is returned for a line that is not a key line carrying
	// the marker of its key id, or that contains a line break.
	ErrInvalidLine = errors.New("invalid authorized_keys line")
)

var (
	idRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_]{0,32}$`)
)

// Marker returns the comment word that marks the line of keyID.
func Marker(keyID string) string { return MarkerPrefix + keyID }

func checkID(keyID string) error {
	if !idRE.MatchString(keyID) {
		return fmt.Errorf("%w: %q (want 1-64 letters, digits, '_', '.', '-')", ErrInvalidKeyID, keyID)
	}
	return nil
}

// Line builds the line shellgate deploys for a key: authorizedKey is "type
// base64" with an optional comment (which is dropped), name an optional key
// name ([A-Za-z0-9_]{0,32}) written after the marker for readers of the file.
func Line(authorizedKey, keyID, name string) (string, error) {
	if err := checkID(keyID); err != nil {
		return "", err
	}
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("%w: key name %q", ErrInvalidLine, name)
	}
	if strings.ContainsAny(authorizedKey, "\r\n") {
		return "", fmt.Errorf("%w: line break in key", ErrInvalidLine)
	}
	f := strings.Fields(authorizedKey)
	if len(f) < 2 || !isKeyType(f[0]) {
		return "", fmt.Errorf("%w: want \"type base64 [comment]\"", ErrInvalidLine)
	}
	line := f[0] + " " + f[1] + " " + Marker(keyID)
	if name != "" {
		line += " " + name
	}
	return line, nil
}

// Outcome says what Add did.
type Outcome int

const (
	// OutcomeUnchanged: our line for the key was already there, identical.
	OutcomeUnchanged Outcome = iota
	// OutcomeAppended: our line was added at the end.
	OutcomeAppended
	// OutcomeReplaced: our line for the key was there but different (for
	// example renamed); it was replaced in place. Duplicate lines of ours
	// for the same key id were removed.
	OutcomeReplaced
	// OutcomePresentUnmanaged: the same public key is already on a line
	// that shellgate does not own; nothing was changed (see package doc).
	OutcomePresentUnmanaged
)

func (o Outcome) String() string {
	switch o {
	case OutcomeUnchanged:
		return "unchanged"
	case OutcomeAppended:
		return "appended"
	case OutcomeReplaced:
		return "replaced"
	case OutcomePresentUnmanaged:
		return "present-unmanaged"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Changed reports whether the content was modified.
func (o Outcome) Changed() bool { return o == OutcomeAppended || o == OutcomeReplaced }

// ManagedLine is a line owned by shellgate.
type ManagedLine struct {
	KeyID string
	Line  int // 1-based line number
}

var bom = []byte("\xEF\xBB\xBF")

// segment is one line of the file with its line ending ("\n" or "\r\n"),
// or without one if it is the last line.
type segment []byte

func (s segment) text() string {
	t := []byte(s)
	if bytes.HasSuffix(t, []byte("\n")) {
		t = t[:len(t)-1]
		t = bytes.TrimSuffix(t, []byte("\r"))
	}
	return string(t)
}

func (s segment) eol() []byte { return s[len(s.text()):] }

func split(content []byte) (prefix []byte, segs []segment) {
	body := content
	if bytes.HasPrefix(body, bom) {
		prefix, body = bom, body[len(bom):]
	}
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			segs = append(segs, segment(body))
			break
		}
		segs = append(segs, segment(body[:i+1]))
		body = body[i+1:]
	}
	return prefix, segs
}

// usesCRLF reports the file's line-ending style: that of its first line
// ending. Add and Remove agree on this rule, which makes Remove undo Add
// byte for byte even for a file without a final newline.
func usesCRLF(body []byte) bool {
	i := bytes.IndexByte(body, '\n')
	if i < 0 {
		// No line ending yet: a trailing CR will become CRLF once Add
		// appends "\n", so count it as CRLF already.
		return bytes.HasSuffix(body, []byte("\r"))
	}
	return i > 0 && body[i-1] == '\r'
}

func join(prefix []byte, segs []segment) []byte {
	n := len(prefix)
	for _, s := range segs {
		n += len(s)
	}
	out := make([]byte, 0, n)
	out = append(out, prefix...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return out
}

// Add makes sure content holds line, the line of keyID (built by Line or
// carrying Marker(keyID) as its first comment word). See Outcome for what
// can happen; every byte outside the line it adds or replaces is kept.
// When content lacks a final newline one is inserted before the new line and
// the new line gets none, so Remove restores content exactly.
func Add(content []byte, line, keyID string) ([]byte, Outcome, error) {
	if err := checkID(keyID); err != nil {
		return nil, 0, err
	}
	if strings.ContainsAny(line, "\r\n") {
		return nil, 0, fmt.Errorf("%w: line break in line", ErrInvalidLine)
	}
	want, ok := parseLine(line)
	if !ok || want.marker != Marker(keyID) || want.options != "" {
		return nil, 0, fmt.Errorf("%w: want \"type base64 %s [name]\"", ErrInvalidLine, Marker(keyID))
	}
	prefix, segs := split(content)

	first := -1
	var dups []int
	for i, s := range segs {
		if p, ok := parseLine(s.text()); ok && p.marker == want.marker {
			if first < 0 {
				first = i
			} else {
				dups = append(dups, i)
			}
		}
	}
	if first >= 0 {
		outcome := OutcomeUnchanged
		out := append([]segment(nil), segs...)
		if segs[first].text() != line {
			out[first] = segment(append([]byte(line), segs[first].eol()...))
			outcome = OutcomeReplaced
		}
		if len(dups) > 0 {
			out = removeSegments(out, dups, usesCRLF(content[len(prefix):]))
			outcome = OutcomeReplaced
		}
		if outcome == OutcomeUnchanged {
			return content, outcome, nil
		}
		return join(prefix, out), outcome, nil
	}

	for _, s := range segs {
		if p, ok := parseLine(s.text()); ok && p.blob == want.blob && !strings.HasPrefix(p.marker, MarkerPrefix) {
			return content, OutcomePresentUnmanaged, nil
		}
	}

	body := content[len(prefix):]
	eol := "\n"
	if usesCRLF(body) {
		eol = "\r\n"
	}
	out := make([]byte, 0, len(content)+len(line)+4)
	out = append(out, content...)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		out = append(append(out, eol...), line...)
	} else {
		out = append(append(out, line...), eol...)
	}
	return out, OutcomeAppended, nil
}

// Remove deletes every line of keyID, each with its line ending, and
// nothing else. If the removed line was the last one and had no line ending,
// the line ending before it goes too, so the file again ends without one:
// this undoes Add exactly. An invalid key id matches nothing.
func Remove(content []byte, keyID string) ([]byte, bool) {
	if checkID(keyID) != nil {
		return content, false
	}
	prefix, segs := split(content)
	var idx []int
	for i, s := range segs {
		if p, ok := parseLine(s.text()); ok && p.marker == Marker(keyID) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return content, false
	}
	return join(prefix, removeSegments(segs, idx, usesCRLF(content[len(prefix):]))), true
}

// removeSegments drops segs[idx...] (idx ascending). If the last segment is
// dropped and had no line ending, the new last segment loses its own ending.
func removeSegments(segs []segment, idx []int, crlf bool) []segment {
	drop := make(map[int]bool, len(idx))
	for _, i := range idx {
		drop[i] = true
	}
	out := make([]segment, 0, len(segs))
	for i, s := range segs {
		if !drop[i] {
			out = append(out, s)
		}
	}
	last := len(segs) - 1
	if drop[last] && len(segs[last].eol()) == 0 && len(out) > 0 {
		s := out[len(out)-1]
		s = s[:len(s)-1] // its "\n": it was not the last segment
		if crlf && bytes.HasSuffix(s, []byte("\r")) {
			s = s[:len(s)-1]
		}
		out[len(out)-1] = s
	}
	return out
}

// Managed lists the lines shellgate owns, in file order.
func Managed(content []byte) []ManagedLine {
	_, segs := split(content)
	var out []ManagedLine
	for i, s := range segs {
		p, ok := parseLine(s.text())
		if !ok {
			continue
		}
		if id, found := strings.CutPrefix(p.marker, MarkerPrefix); found && idRE.MatchString(id) {
			out = append(out, ManagedLine{KeyID: id, Line: i + 1})
		}
	}
	return out
}

type parsed struct {
	options, keyType, blob string
	marker                 string // first word of the comment
}

// parseLine splits an authorized_keys line as sshd does: optional options
// (a word that may contain quoted spaces), key type, base64 blob, comment.
// ok is false for blank lines, comments and lines without a key blob.
func parseLine(text string) (p parsed, ok bool) {
	s := strings.TrimLeft(text, " \t")
	if s == "" || s[0] == '#' {
		return p, false
	}
	tok, rest := nextWord(s)
	if !isKeyType(tok) {
		p.options = tok
		tok, rest = nextWord(rest)
		if !isKeyType(tok) {
			return p, false
		}
	}
	p.keyType = tok
	p.blob, rest = nextWord(rest)
	if p.blob == "" {
		return p, false
	}
	p.marker, _ = nextWord(rest)
	return p, true
}

// nextWord returns the first word of s, honouring double quotes (with
// backslash escapes) as sshd does for options, and the rest after blanks.
func nextWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t\r")
	quoted := false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quoted && i+1 < len(s):
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ' ' || c == '\t' || c == '\r'):
			return s[:i], strings.TrimLeft(s[i:], " \t\r")
		}
	}
	return s, ""
}

func isKeyType(t string) bool {
	for _, p := range []string{"ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-", "rsa-sha2-"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}
