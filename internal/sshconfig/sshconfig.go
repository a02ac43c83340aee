// Package sshconfig imports servers from a pasted OpenSSH client
// configuration (~/.ssh/config).
//
// Each concrete alias of a Host line becomes one Host, with the values ssh
// itself would use for it: the first value obtained wins, across every
// block that matches the alias, including "Host *" defaults. Lines are
// parsed by github.com/kevinburke/ssh_config.
//
// The text comes from a user and is parsed on the server, so nothing in it
// may reach the server's file system or run anything: Include lines are
// removed before parsing (the library would otherwise read the named files
// on this machine), Match blocks are skipped (Match exec would run a
// command), and ProxyCommand is never used. Each of these is reported as a
// warning, as are Host blocks made only of wildcard or negated patterns.
package sshconfig

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// MaxInput bounds the pasted text.
const MaxInput = 1 << 20

var (
	// ErrSyntax is returned when the text is not a valid ssh_config.
	ErrSyntax = errors.New("ssh config syntax error")
	// ErrTooLarge is returned for text longer than MaxInput.
	ErrTooLarge = errors.New("ssh config too large")
)

// Host is a server found in the config.
type Host struct {
	// Alias is the name after Host, the one people type after ssh.
	Alias string
	// HostName is the address to connect to; the alias when not set.
	HostName string
	// User is the login user; empty when the config does not set one.
	User string
	// Port defaults to 22.
	Port int
	// ProxyJump is the chain of jump hosts, first hop first; nil for none.
	// A hop's Host may be another alias of the same config.
	ProxyJump []Jump
	// IdentityFiles lists IdentityFile paths, for information only: the
	// files are on the user's machine, not here.
	IdentityFiles []string
}

// Jump is one hop of a ProxyJump chain: [user@]host[:port].
type Jump struct {
	User string
	Host string
	Port int // 0 when not given
}

func (j Jump) String() string {
	s := j.Host
	if j.Port != 0 {
		s = net.JoinHostPort(j.Host, strconv.Itoa(j.Port))
	}
	if j.User != "" {
		s = j.User + "@" + s
	}
	return s
}

var errIncludeSlipped = errors.New("sshconfig: an Include line reached the parser")

func hasInclude(cfg *ssh_config.Config) bool {
	for _, h := range cfg.Hosts {
		for _, n := range h.Nodes {
			if _, ok := n.(*ssh_config.Include); ok {
				return true
			}
		}
	}
	return false
}

// placeholder replaces a Match line so that the keywords under it attach to
// a block that never matches ("!*" negates everything) and are ignored.
const placeholder = "Host !* shellgate-skipped-match"

// Parse reads a pasted ssh config. It returns the hosts in file order, and
// warnings about what was skipped; err is set only when the text cannot be
// parsed at all.
func Parse(text string) (hosts []Host, warnings []string, err error) {
	if len(text) > MaxInput {
		return nil, nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(text), MaxInput)
	}
	text = strings.TrimPrefix(text, "\uFEFF")
	// The library's lexer ends a line at "\r" as well as "\n"; split the
	// same way so that no Include or Match line hides behind a bare CR.
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(strings.ReplaceAll(text, "\r", "\n"), "\n")
	for i, line := range lines {
		// Mirror the library's lexer: a key runs from the first non-blank
		// to the next blank or '='; keys are compared lower-cased.
		rest := strings.TrimLeft(line, " \t")
		end := strings.IndexAny(rest, " \t=")
		if end < 0 {
			end = len(rest)
		}
		arg := strings.TrimSpace(strings.TrimPrefix(strings.TrimLeft(rest[end:], " \t"), "="))
		switch strings.ToLower(rest[:end]) {
		case "include":
			warnings = append(warnings, fmt.Sprintf("line %d: Include %s not followed: paste the included file's content instead", i+1, arg))
			lines[i] = "#"
		case "match":
			warnings = append(warnings, fmt.Sprintf("line %d: Match %s block skipped: only Host blocks are imported", i+1, arg))
			lines[i] = placeholder
		}
	}
	cfg, err := ssh_config.DecodeBytes([]byte(strings.Join(lines, "\n")))
	if err != nil {
		return nil, warnings, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if hasInclude(cfg) {
		// Defence in depth: the pre-pass above must have removed them all.
		return nil, warnings, errIncludeSlipped
	}

	seen := map[string]bool{}
	// cfg.Hosts[0] is the library's implicit "Host *" holding the lines
	// before the first Host: defaults that resolve() sees through cfg.Get.
	for _, h := range cfg.Hosts[1:] {
		if len(h.Patterns) == 0 || h.Patterns[0].String() == "!*" {
			continue // a skipped Match block
		}
		var aliases, skipped []string
		for _, p := range h.Patterns {
			s := p.String()
			if strings.ContainsAny(s, "*?!") {
				skipped = append(skipped, s)
			} else {
				aliases = append(aliases, s)
			}
		}
		if len(skipped) > 0 {
			all := make([]string, len(h.Patterns))
			for i, p := range h.Patterns {
				all[i] = p.String()
			}
			warnings = append(warnings, fmt.Sprintf("Host %s: pattern %s skipped: wildcard and negated patterns are not single servers (their settings still apply to the hosts they match)",
				strings.Join(all, " "), strings.Join(skipped, " ")))
		}
		for _, alias := range aliases {
			if seen[alias] {
				continue // ssh uses the first block for values; one server per alias
			}
			seen[alias] = true
			host, warn, err := resolve(cfg, alias)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("Host %s skipped: %v", alias, err))
				continue
			}
			warnings = append(warnings, warn...)
			hosts = append(hosts, host)
		}
	}
	return hosts, warnings, nil
}

func resolve(cfg *ssh_config.Config, alias string) (Host, []string, error) {
	var warnings []string
	get := func(key string) string {
		v, _ := cfg.Get(alias, key) // errors only for Include nodes, which we removed
		return strings.TrimSpace(v)
	}
	h := Host{Alias: alias, HostName: alias, User: get("User"), Port: 22}
	if hn := get("HostName"); hn != "" {
		h.HostName = expandTokens(hn, alias)
		if strings.Contains(h.HostName, "%") {
			return h, nil, fmt.Errorf("HostName %q uses %% tokens other than %%h", hn)
		}
	}
	if strings.ContainsAny(h.HostName, " \t") || h.HostName == "" {
		return h, nil, fmt.Errorf("invalid HostName %q", h.HostName)
	}
	if p := get("Port"); p != "" {
		port, err := parsePort(p)
		if err != nil {
			return h, nil, err
		}
		h.Port = port
	}
	if pj := get("ProxyJump"); pj != "" && !strings.EqualFold(pj, "none") {
		for _, hop := range strings.Split(pj, ",") {
			j, err := parseJump(strings.TrimSpace(hop))
			if err != nil {
				return h, nil, fmt.Errorf("ProxyJump %q: %w", pj, err)
			}
			h.ProxyJump = append(h.ProxyJump, j)
		}
	}
	if pc := get("ProxyCommand"); pc != "" && !strings.EqualFold(pc, "none") {
		if h.ProxyJump == nil {
			warnings = append(warnings, fmt.Sprintf("Host %s: ProxyCommand is not supported and was ignored; use ProxyJump or set a jump server", alias))
		}
	}
	files, _ := cfg.GetAll(alias, "IdentityFile")
	for _, f := range files {
		if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "none") {
			h.IdentityFiles = append(h.IdentityFiles, f)
		}
	}
	return h, warnings, nil
}

func expandTokens(s, alias string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+1 < len(s) {
			switch s[i+1] {
			case 'h':
				b.WriteString(alias)
				i++
				continue
			case '%':
				b.WriteString("%%") // keep escaped: the caller checks for leftovers below
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return strings.ReplaceAll(b.String(), "%%", "%")
}

func parsePort(s string) (int, error) {
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return port, nil
}

// parseJump parses [user@]host[:port], [user@][v6addr]:port or the
// ssh://[user@]host[:port] URI form.
func parseJump(s string) (Jump, error) {
	var j Jump
	s = strings.TrimPrefix(s, "ssh://")
	if s == "" {
		return j, errors.New("empty hop")
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		j.User, s = s[:at], s[at+1:]
		if j.User == "" {
			return j, errors.New("empty user before @")
		}
	}
	switch {
	case strings.HasPrefix(s, "["):
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			// "[v6addr]" without port
			if strings.HasSuffix(s, "]") && !strings.Contains(s[1:len(s)-1], "]") {
				j.Host = s[1 : len(s)-1]
				break
			}
			return j, fmt.Errorf("invalid host %q", s)
		}
		j.Host = host
		if j.Port, err = parsePort(port); err != nil {
			return j, err
		}
	case strings.Count(s, ":") == 1:
		host, port, _ := strings.Cut(s, ":")
		j.Host = host
		var err error
		if j.Port, err = parsePort(port); err != nil {
			return j, err
		}
	default:
		j.Host = s // a bare IPv6 address has several colons and no port
	}
	if j.Host == "" || strings.ContainsAny(j.Host, " \t/@[]") {
		return j, fmt.Errorf("invalid host %q", j.Host)
	}
	return j, nil
}
