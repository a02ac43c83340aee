package handlers

import "testing"

// TestDescribeEvent: the audit page's What column reads as words a person can scan
// (login, key, bytes, duration, exit status, why it ended), never key=value text.
func TestDescribeEvent(t *testing.T) {
	cases := []struct {
		kind   string
		detail map[string]string
		want   string
	}{
		{"terminal.start", map[string]string{"session": "S", "login": "deploy", "key": "laptop", "keys": "SHA256:a", "local": "127.0.0.1:5"},
			"Terminal opened as deploy with key laptop"},
		{"terminal.end", map[string]string{"session": "S", "login": "deploy", "key": "laptop", "keys": "SHA256:a", "bytes_in": "1536",
			"bytes_out": "4194304", "duration": "3m12s", "exit_status": "0", "recording": "yes"},
			"Terminal as deploy with key laptop, lasted 3m12s, exit status 0, 1.5 KiB typed, 4.0 MiB shown, recorded"},
		{"terminal.end", map[string]string{"login": "root", "keys": "SHA256:a,SHA256:b", "bytes_in": "0", "bytes_out": "20", "duration": "5s",
			"ended": "closed by the browser"},
			"Terminal as root offering 2 keys, lasted 5s, closed by the browser, 0 B typed, 20 B shown"},
		{"terminal.end", map[string]string{"login": "root", "duration": "1m0s", "reason": "Session ended: you signed out."},
			"Terminal as root, lasted 1m0s, Session ended: you signed out"},
		{"file.download", map[string]string{"path": "/srv/a.tar", "size": "10485760", "range": "bytes=0-"},
			"Downloaded /srv/a.tar (10.0 MiB), range bytes=0-"},
		{"file.upload", map[string]string{"path": "/srv/b", "size": "12", "replaced": "true"}, "Uploaded /srv/b (12 B), replaced the existing file"},
		{"file.archive", map[string]string{"path": "/srv", "files": "1", "bytes": "2048"}, "Downloaded folder /srv as a zip (1 file, 2.0 KiB)"},
		{"file.delete", map[string]string{"path": "/srv/x", "folder": "true"}, "Deleted folder /srv/x and everything in it"},
		{"file.rename", map[string]string{"path": "/a", "to": "/b"}, "Renamed /a to /b"},
		{"file.revoked", map[string]string{"path": "/big", "reason": "Session ended: you signed out."}, "Transfer of /big cut off, Session ended: you signed out"},
		{"key.add", map[string]string{"fingerprint": "SHA256:x", "type": "ED25519"}, "Fingerprint SHA256:x, type ED25519"},
		{"login", map[string]string{"reason": "throttled"}, "Throttled"},
		{"server.sshlog", map[string]string{"ssh_log_file": "/var/log/auth.log"}, "Ssh log file /var/log/auth.log"},
		{"user.disable", nil, ""},
	}
	for _, c := range cases {
		if got := describeEvent(c.kind, c.detail); got != c.want {
			t.Errorf("describeEvent(%s, %v)\n got %q\nwant %q", c.kind, c.detail, got, c.want)
		}
	}
}
