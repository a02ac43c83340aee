package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNonLoopbackListenNeedsPublicURL: an operator starts shellgate with --listen
// 0.0.0.0 (or a LAN address) and no --public-url. Issue 12: it then accepted any Host
// with only a log line, which silently turned off the DNS-rebinding and WebSocket
// origin protections. Start-up is refused unless a public URL anchors Host and Origin
// or --allow-any-host says the operator knows; loopback needs neither.
func TestNonLoopbackListenNeedsPublicURL(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		ok   bool
	}{
		{[]string{"--listen", "0.0.0.0:8080"}, nil, false},
		{[]string{"--listen", ":8080"}, nil, false},
		{[]string{"--listen", "[::]:8080"}, nil, false},
		{[]string{"--listen", "192.0.2.10:8080"}, nil, false},
		{[]string{"--listen", "shell.example.com:8080"}, nil, false},
		{nil, map[string]string{"SHELLGATE_LISTEN": "0.0.0.0:80"}, false},
		{[]string{"--listen", "0.0.0.0:8080", "--public-url", "https://shell.example.com"}, nil, true},
		{[]string{"--listen", "0.0.0.0:8080", "--allow-any-host"}, nil, true},
		{[]string{"--listen", ":8080"}, map[string]string{"SHELLGATE_ALLOW_ANY_HOST": "true"}, true},
		{[]string{"--listen", "127.0.0.1:0"}, nil, true},
		{[]string{"--listen", "[::1]:8080"}, nil, true},
		{[]string{"--listen", "localhost:8080"}, nil, true},
		{nil, nil, true}, // the default, 127.0.0.1:8080
	} {
		_, err := parseConfig("serve", tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if tc.ok && err != nil {
			t.Errorf("%v %v: refused: %v", tc.args, tc.env, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--public-url")) {
			t.Errorf("%v %v: err %v, want a refusal naming --public-url", tc.args, tc.env, err)
		}
	}
}

// TestAllowAnyHostIsLoggedLoudly: the escape hatch works and says so at error level.
func TestAllowAnyHostIsLoggedLoudly(t *testing.T) {
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": "correct horse battery staple 42"}
	_, stderr, stop := startServe(t, []string{"--listen", "127.0.0.1:0", "--allow-any-host", "--data-dir", t.TempDir()}, env)
	stop()
	if log := stderr.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "UNSAFE: --allow-any-host") {
		t.Fatalf("no loud warning in the log:\n%s", log)
	}
}

// TestMissingMasterKeyBesideDatabaseRefused: an operator restores the database from a
// backup but not master.key. Issue 12: shellgate created a new key before refusing,
// leaving two keys and sealed secrets nobody can open. Start-up (and the user
// commands) must refuse without writing anything, and say what to restore.
func TestMissingMasterKeyBesideDatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": "correct horse battery staple 42"}
	_, _, stop := startServe(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dir}, env)
	stop()
	if err := os.Remove(filepath.Join(dir, "master.key")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	for _, args := range [][]string{
		{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir},
		{"user", "list", "--data-dir", dir},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "restore master.key") {
			t.Fatalf("%v: err %v, want a refusal saying to restore master.key", args, err)
		}
		if after := snapshot(t, dir); after != before {
			t.Fatalf("%v wrote to the data dir:\nbefore %s\nafter  %s", args, before, after)
		}
	}
}

// snapshot describes every file of dir: name, size, modification time.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + fi.ModTime().String())
		if !fi.IsDir() {
			b.WriteString(" " + itoa(fi.Size()))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func itoa(n int64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(buf[i:])
}
