package jobs

import (
	"testing"
	"time"
)

func TestParseSSHLogLine(t *testing.T) {
	now := time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		line string
		ok   bool
		want SSHLogin
	}{
		{"2026-11-21T21:05:12+0000 web-1 sshd[812]: Accepted publickey for deploy from 203.0.113.7 port 51234 ssh2: ED25519 SHA256:3X3TwG6HColAirHIvMSkuk/EFtYRbfWmNUizryI9XJQ", true,
			SSHLogin{At: time.Date(2026, 11, 21, 21, 5, 12, 0, time.UTC), Result: "accepted", Method: "publickey", User: "deploy", From: "203.0.113.7", Port: 51234, KeyType: "ED25519", Fingerprint: "SHA256:3X3TwG6HColAirHIvMSkuk/EFtYRbfWmNUizryI9XJQ"}},
		{"Nov 21 21:06:00 web-1 sshd[900]: Failed password for root from 198.51.100.9 port 40000 ssh2", true,
			SSHLogin{At: time.Date(2026, 11, 21, 21, 6, 0, 0, time.UTC), Result: "failed", Method: "password", User: "root", From: "198.51.100.9", Port: 40000}},
		{"Nov  3 01:02:03 web-1 sshd[900]: Failed password for invalid user admin from 198.51.100.9 port 40001 ssh2", true,
			SSHLogin{At: time.Date(2026, 11, 3, 1, 2, 3, 0, time.UTC), Result: "invalid user", Method: "password", User: "admin", From: "198.51.100.9", Port: 40001}},
		{"Dec 31 23:59:59 web-1 sshd[1]: Invalid user oracle from 2001:db8::1 port 22222", true, // last year's December
			SSHLogin{At: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), Result: "invalid user", User: "oracle", From: "2001:db8::1", Port: 22222}},
		{"2026-11-21T21:07:00.123456+00:00 web-1 sshd-session[77]: Accepted password for alice from 10.0.0.2 port 5555 ssh2", true,
			SSHLogin{At: time.Date(2026, 11, 21, 21, 7, 0, 123456000, time.UTC), Result: "accepted", Method: "password", User: "alice", From: "10.0.0.2", Port: 5555}},
		{"Accepted publickey for sgt1 from 127.0.0.1 port 49836 ssh2: ED25519 SHA256:abc", true, // sshd -E: no time
			SSHLogin{Result: "accepted", Method: "publickey", User: "sgt1", From: "127.0.0.1", Port: 49836, KeyType: "ED25519", Fingerprint: "SHA256:abc"}},
		{"Failed keyboard-interactive/pam for bob from 10.0.0.3 port 1 ssh2", true,
			SSHLogin{Result: "failed", Method: "keyboard-interactive/pam", User: "bob", From: "10.0.0.3", Port: 1}},
		{"Accepted key ED25519 SHA256:abc found at /home/x/.ssh/authorized_keys:1", false, SSHLogin{}},
		{"Postponed publickey for sgt1 from 127.0.0.1 port 49836 ssh2 [preauth]", false, SSHLogin{}},
		{"Nov 21 21:06:00 web-1 CRON[9]: Accepted publickey for x from 1.2.3.4 port 1 ssh2", false, SSHLogin{}},
		{"", false, SSHLogin{}},
	}
	for _, tt := range tests {
		got, ok := ParseSSHLogLine(tt.line, now)
		if ok != tt.ok {
			t.Errorf("%q: ok %v", tt.line, ok)
			continue
		}
		if !ok {
			continue
		}
		tt.want.Raw = tt.line
		if !got.At.Equal(tt.want.At) {
			t.Errorf("%q: at %v, want %v", tt.line, got.At, tt.want.At)
		}
		got.At, tt.want.At = time.Time{}, time.Time{}
		if got != tt.want {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.line, got, tt.want)
		}
	}
}

func TestParseLastLine(t *testing.T) {
	l, ok := ParseLastLine("alice    pts/0        203.0.113.7      Sat Nov 21 21:05:12 2026 - Sat Nov 21 21:07:00 2026  (00:01)")
	if !ok || l.User != "alice" || l.From != "203.0.113.7" || l.At.Day() != 21 || l.Result != "accepted" {
		t.Fatalf("%+v %v", l, ok)
	}
	for _, s := range []string{"reboot   system boot  6.1.0 Sat Nov 21 20:00:00 2026   still running", "", "wtmp begins Sat Nov  1 00:00:00 2026"} {
		if _, ok := ParseLastLine(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

func FuzzParseSSHLogLine(f *testing.F) {
	f.Add("Nov 21 21:06:00 web-1 sshd[900]: Failed password for root from 198.51.100.9 port 40000 ssh2")
	f.Add("Accepted publickey for a from b port 1 ssh2: X SHA256:y")
	f.Fuzz(func(t *testing.T, s string) {
		ParseSSHLogLine(s, time.Now())
		ParseLastLine(s)
	})
}
