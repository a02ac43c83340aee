package jobs

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/store"
)

// knownHostsName is how OpenSSH names a host in known_hosts: "host" on port 22,
// "[host]:port" otherwise.
func knownHostsName(host string, port int) string {
	if port == 0 || port == 22 {
		return host
	}
	return "[" + host + "]:" + strconv.Itoa(port)
}

// KnownHostsFile renders the pinned keys of servers as a known_hosts file.
func KnownHostsFile(stackName string, servers []store.Server) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# known_hosts for the shellgate stack %q\n", stackName)
	for _, sv := range servers {
		for _, k := range sv.HostKeys {
			fmt.Fprintf(&b, "%s %s %s\n", knownHostsName(sv.Host, sv.Port), k, sv.Name)
		}
	}
	return b.Bytes()
}

// MatchKnownHosts finds, for each server without a pinned key, the keys a
// known_hosts file lists for it (plain or hashed names; @revoked and
// @cert-authority lines are ignored with a warning). It returns keys by server id.
// To be replaced by internal/knownhosts once merged.
func MatchKnownHosts(data []byte, servers []store.Server) (map[int64][]string, []string, error) {
	found := map[int64][]string{}
	var warnings []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("Line %d is not a known_hosts entry; skipped.", n))
			continue
		}
		if marker != "" {
			warnings = append(warnings, fmt.Sprintf("Line %d is marked @%s; skipped.", n, marker))
			continue
		}
		for i := range servers {
			sv := &servers[i]
			if matchesAny(hosts, sv.Host, sv.Port) {
				kl := KeyLine(key)
				if !contains(found[sv.ID], kl) {
					found[sv.ID] = append(found[sv.ID], kl)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, warnings, fmt.Errorf("read known_hosts: %w", err)
	}
	return found, warnings, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func matchesAny(patterns []string, host string, port int) bool {
	want := knownHostsName(host, port)
	for _, p := range patterns {
		if strings.HasPrefix(p, "|1|") {
			if hashedMatch(p, want) {
				return true
			}
			continue
		}
		if strings.ContainsAny(p, "*?!") {
			continue // wildcards never pin a specific server
		}
		h, pt, err := net.SplitHostPort(p)
		if err == nil && strings.HasPrefix(p, "[") {
			if strings.EqualFold(h, host) && pt == strconv.Itoa(portOr22(port)) {
				return true
			}
			continue
		}
		if strings.EqualFold(p, want) {
			return true
		}
	}
	return false
}

func portOr22(p int) int {
	if p == 0 {
		return 22
	}
	return p
}

// hashedMatch checks a HashKnownHosts entry: |1|base64(salt)|base64(HMAC-SHA1(salt, name)).
func hashedMatch(entry, name string) bool {
	parts := strings.Split(entry, "|")
	if len(parts) != 4 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	sum, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	m := hmac.New(sha1.New, salt)
	m.Write([]byte(name))
	return hmac.Equal(m.Sum(nil), sum)
}
