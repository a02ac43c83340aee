package knownhosts

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func newKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func sshKeygen(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ssh-keygen is required under CI")
		}
		t.Skip("ssh-keygen not installed")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestParse(t *testing.T) {
	k1, k2, k3, bad := newKey(t), newKey(t), newKey(t), newKey(t)
	data := strings.Join([]string{
		"\xEF\xBB\xBF# known hosts",
		"",
		"web.example.com,10.0.0.5 " + authorized(k1) + " my comment",
		"[db.example.com]:2222 " + authorized(k2) + "\r",
		"@cert-authority *.example.com " + authorized(k3),
		"@revoked * " + authorized(bad),
		"old.example.com " + authorized(bad),
		"broken line",
		"host ssh-ed25519 !!!notbase64",
		"|1|bad|hash " + authorized(k1),
		"*.corp,!secret.corp " + authorized(k3),
		"   ",
	}, "\n")
	entries, warnings, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("entries = %+v", entries)
	}
	e := entries[0]
	if strings.Join(e.Hosts, ",") != "web.example.com,10.0.0.5" || e.Comment != "my comment" || e.Line != 3 || authorized(e.Key) != authorized(k1) {
		t.Errorf("entry 0 = %+v", e)
	}
	if entries[1].Hosts[0] != "[db.example.com]:2222" || entries[1].Line != 4 {
		t.Errorf("entry 1 = %+v", entries[1])
	}
	want := []string{
		"line 5: @cert-authority entry skipped",
		"line 6: @revoked key",
		"line 8 skipped",
		"line 9 skipped",
		"line 10 skipped: invalid host pattern",
		"line 7 dropped: its key",
	}
	if len(warnings) != len(want) {
		t.Fatalf("warnings = %q", warnings)
	}
	for i, w := range want {
		if !strings.HasPrefix(warnings[i], w) {
			t.Errorf("warning %d = %q, want prefix %q", i, warnings[i], w)
		}
	}
	if _, _, err := Parse(make([]byte, MaxInput+1)); err == nil {
		t.Error("oversized input accepted")
	}
}

func TestMatches(t *testing.T) {
	k := newKey(t)
	hashed22 := strings.Fields(HashedLine("Web.Example.com", 22, k))[0]
	hashed2222 := strings.Fields(HashedLine("web.example.com", 2222, k))[0]
	tests := []struct {
		hosts []string
		host  string
		port  int
		want  bool
	}{
		{[]string{"web.example.com"}, "web.example.com", 22, true},
		{[]string{"web.example.com"}, "WEB.example.COM", 22, true},
		{[]string{"web.example.com"}, "web.example.com", 2222, false},
		{[]string{"[web.example.com]:2222"}, "web.example.com", 2222, true},
		{[]string{"[web.example.com]:2222"}, "web.example.com", 22, false},
		{[]string{"[web.example.com]:22"}, "web.example.com", 22, false}, // ssh writes port 22 bare
		{[]string{"a", "10.0.0.5"}, "10.0.0.5", 22, true},
		{[]string{"[::1]:2200"}, "::1", 2200, true},
		{[]string{"::1"}, "::1", 22, true},
		{[]string{"*.example.com"}, "web.example.com", 22, true},
		{[]string{"*.example.com"}, "example.com", 22, false},
		{[]string{"web?.example.com"}, "web1.example.com", 22, true},
		{[]string{"web?.example.com"}, "web.example.com", 22, false},
		{[]string{"*.example.com", "!db.example.com"}, "db.example.com", 22, false},
		{[]string{"!db.example.com"}, "web.example.com", 22, false}, // negation alone never matches
		{[]string{hashed22}, "web.example.com", 22, true},
		{[]string{hashed22}, "web.example.com", 2222, false},
		{[]string{hashed22}, "db.example.com", 22, false},
		{[]string{hashed2222}, "web.example.com", 2222, true},
		{[]string{hashed2222}, "web.example.com", 22, false},
		{[]string{"!" + hashed22, "*"}, "web.example.com", 22, false},
	}
	for _, tc := range tests {
		e := Entry{Hosts: tc.hosts, Key: k}
		if got := e.Matches(tc.host, tc.port); got != tc.want {
			t.Errorf("%q.Matches(%s, %d) = %v, want %v", tc.hosts, tc.host, tc.port, got, tc.want)
		}
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"", "", true}, {"*", "", true}, {"*", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abcd", false},
		{"?", "", false}, {"??", "ab", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXcYb", false},
		{strings.Repeat("a*", 30) + "b", strings.Repeat("a", 100), false},
	}
	for _, tc := range tests {
		if got := wildcardMatch(tc.pat, tc.s); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v", tc.pat, tc.s, got)
		}
	}
}

// TestSSHKeygenHashed hashes a file with ssh-keygen -H and checks that the
// hashed entries match exactly the hosts and ports they were made from.
func TestSSHKeygenHashed(t *testing.T) {
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	file := filepath.Join(t.TempDir(), "known_hosts")
	plain := "web.example.com " + authorized(k1) + "\n" +
		"[db.example.com]:2222 " + authorized(k2) + "\n" +
		"10.1.2.3 " + authorized(k3) + "\n"
	if err := os.WriteFile(file, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, "-H", "-f", file)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "example.com") {
		t.Fatalf("ssh-keygen did not hash: %s", data)
	}
	entries, warnings, err := Parse(data)
	if err != nil || len(warnings) != 0 || len(entries) != 3 {
		t.Fatalf("Parse: %d entries, warnings %q, err %v", len(entries), warnings, err)
	}
	type hp struct {
		host string
		port int
	}
	want := []hp{{"web.example.com", 22}, {"db.example.com", 2222}, {"10.1.2.3", 22}}
	probes := append(want, hp{"web.example.com", 2222}, hp{"db.example.com", 22}, hp{"10.1.2.4", 22})
	for i, e := range entries {
		if !strings.HasPrefix(e.Hosts[0], "|1|") {
			t.Fatalf("entry %d not hashed: %q", i, e.Hosts)
		}
		for _, p := range probes {
			if got := e.Matches(p.host, p.port); got != (p == want[i]) {
				t.Errorf("entry %d (%v).Matches(%v) = %v", i, want[i], p, got)
			}
		}
	}
}

// TestLineReadBySSHKeygen exports lines and looks them up with ssh-keygen -F,
// which uses OpenSSH's own matching.
func TestLineReadBySSHKeygen(t *testing.T) {
	k := newKey(t)
	file := filepath.Join(t.TempDir(), "known_hosts")
	lines := Line("Web.Example.com", 22, k) + "\n" + Line("db.example.com", 2222, k) + "\n" +
		Line("::1", 2200, k) + "\n" + HashedLine("hidden.example.com", 22, k) + "\n"
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Line("Web.Example.com", 22, k); got != "web.example.com "+authorized(k) {
		t.Errorf("Line = %q", got)
	}
	if got := Line("db.example.com", 2222, k); !strings.HasPrefix(got, "[db.example.com]:2222 ") {
		t.Errorf("Line = %q", got)
	}
	for _, q := range []string{"web.example.com", "[db.example.com]:2222", "[::1]:2200", "hidden.example.com"} {
		out := sshKeygen(t, "-F", q, "-f", file)
		if !strings.Contains(out, authorized(k)) {
			t.Errorf("ssh-keygen -F %s found nothing: %s", q, out)
		}
	}
	entries, warnings, err := Parse([]byte(lines))
	if err != nil || len(warnings) != 0 || len(entries) != 4 {
		t.Fatalf("re-import: %d entries, %q, %v", len(entries), warnings, err)
	}
	if !entries[3].Matches("hidden.example.com", 22) || !entries[2].Matches("::1", 2200) {
		t.Error("exported lines do not match their hosts")
	}
}

func FuzzParse(f *testing.F) {
	k := newKey(f)
	f.Add([]byte("web.example.com,[x]:22 " + authorized(k) + " c\n@revoked * " + authorized(k) + "\n"))
	f.Add([]byte(HashedLine("a", 22, k) + "\n!*.x,|1|AAAA|AAAA " + authorized(k)))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Key == nil || len(e.Hosts) == 0 {
				t.Fatalf("incomplete entry %+v", e)
			}
			e.Matches("web.example.com", 22)
			e.Matches("::1", 2222)
		}
	})
}
