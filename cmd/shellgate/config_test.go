package main

import (
	"io"
	"regexp"
	"testing"

	"github.com/shellgate/shellgate/terminal"
)

func TestMaxTerminalsPerUserConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want int // 0: an error
	}{
		{nil, "", 10},
		{[]string{"--max-terminals-per-user", "3"}, "", 3},
		{nil, "5", 5},
		{[]string{"--max-terminals-per-user=4"}, "5", 4}, // the flag wins
		{[]string{"--max-terminals-per-user", "0"}, "", 0},
		{[]string{"--max-terminals-per-user", "-1"}, "", 0},
		{nil, "lots", 0},
	} {
		cfg, err := parseConfig("serve", tc.args, func(k string) string {
			if k == "SHELLGATE_MAX_TERMINALS_PER_USER" {
				return tc.env
			}
			return ""
		}, io.Discard)
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("%v env %q: no error, got %d", tc.args, tc.env, cfg.MaxTerminalsPerUser)
		case tc.want != 0 && (err != nil || cfg.MaxTerminalsPerUser != tc.want):
			t.Errorf("%v env %q: %v %v, want %d", tc.args, tc.env, cfg, err, tc.want)
		}
	}
}

// TestMaxTerminalsPerUserReachesTheManager: the flag is what the terminal manager
// enforces: with a cap of 2, two terminals open and the third is refused with 4006.
func TestMaxTerminalsPerUserReachesTheManager(t *testing.T) {
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": "correct horse battery staple 42"}
	base, _, _ := startServe(t, []string{"--demo", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--max-terminals-per-user", "2"}, env)
	w := signIn(t, base, "admin", env["SHELLGATE_ADMIN_PASSWORD"])
	list := w.get("/stacks")
	stack := regexp.MustCompile(`href="/stacks/(\d+)"`).FindStringSubmatch(list)
	m := regexp.MustCompile(`/stacks/(\d+)/servers/(\d+)/terminal`).FindStringSubmatch(w.get("/stacks/" + stack[1]))
	if m == nil {
		t.Fatal("no terminal link")
	}
	connected := func(_ string, st *terminal.StatusMessage) bool {
		return st != nil && st.State == terminal.StateConnected
	}
	for i := range 2 {
		ws := w.openTerminalSocket(m[1], m[2])
		if _, code := readSocket(t, ws, connected); code != 0 {
			t.Fatalf("terminal %d: closed with %d", i+1, code)
		}
	}
	ws := w.openTerminalSocket(m[1], m[2])
	if _, code := readSocket(t, ws, connected); code != terminal.CloseTooManySessions {
		t.Fatalf("third terminal: close %d, want %d", code, terminal.CloseTooManySessions)
	}
}

// TestDatabaseURLConfig: the flag and SHELLGATE_DATABASE_URL choose the engine, and a
// URL that is refused is not echoed back (it may carry a password).
func TestDatabaseURLConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string // "": an error
	}{
		{nil, "", "sqlite:data/shellgate.db"},
		{[]string{"--database-url", "sqlite:/var/lib/sg.db"}, "", "sqlite:/var/lib/sg.db"},
		{nil, "postgres://sg@db.internal/shellgate?sslmode=verify-full", "postgres://sg@db.internal/shellgate?sslmode=verify-full"},
		{[]string{"--database-url=postgresql://sg@db/sg"}, "sqlite:x.db", "postgresql://sg@db/sg"}, // the flag wins
		{nil, "mysql://root:hunter2@db/sg", ""},
	} {
		cfg, err := parseConfig("serve", append([]string{"--data-dir", "data"}, tc.args...), func(k string) string {
			if k == "SHELLGATE_DATABASE_URL" {
				return tc.env
			}
			return ""
		}, io.Discard)
		if err != nil {
			t.Fatalf("%v %q: %v", tc.args, tc.env, err)
		}
		got, err := cfg.databaseURL()
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%v %q: accepted as %q", tc.args, tc.env, got)
		case tc.want == "" && regexp.MustCompile(`hunter2`).MatchString(err.Error()):
			t.Errorf("the error repeats the password: %v", err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%v %q: %q %v, want %q", tc.args, tc.env, got, err, tc.want)
		}
	}
}

func TestRecordingsDirConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", "data/recordings"},
		{nil, "/mnt/shared/recordings", "/mnt/shared/recordings"},
		{[]string{"--recordings-dir", "/srv/rec"}, "/mnt/shared/recordings", "/srv/rec"},
	} {
		cfg, err := parseConfig("serve", append([]string{"--data-dir", "data"}, tc.args...), func(k string) string {
			if k == "SHELLGATE_RECORDINGS_DIR" {
				return tc.env
			}
			return ""
		}, io.Discard)
		if err != nil || cfg.RecordingsDir != tc.want {
			t.Errorf("%v %q: %q %v, want %q", tc.args, tc.env, cfg.RecordingsDir, err, tc.want)
		}
	}
}
