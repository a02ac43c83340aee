// Command testsshd runs one internal/testsshd instance outside `go test`, for the
// browser tests: a real OpenSSH sshd on a free loopback port with a throwaway user
// (when run as root). It prints one JSON line on stdout:
//
//	{"addr":"127.0.0.1:40123","host":"127.0.0.1","port":40123,"user":"sgt…",
//	 "hostKeyFingerprint":"SHA256:…","authorizedKeysPath":"…","clientKeyPath":"…",
//	 "clientPublicKey":"ssh-ed25519 AAAA…","throwaway":true}
//
// and runs until SIGTERM, SIGINT or its stdin closes; then it stops sshd and deletes
// the throwaway user and the temporary directory. Restart with a new host key on
// SIGHUP, printing the JSON line again.
//
// It drives the testsshd package through a stand-in for testing.TB, so the package's
// API stays what the Go tests use.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// tb is the part of testing.TB that testsshd uses. The embedded interface is nil:
// a method testsshd starts using later panics loudly instead of misbehaving.
type tb struct {
	testing.TB
	base     string
	cleanups []func()
	failed   bool
}

type fatal struct{ msg string }

func (t *tb) Helper()                         {}
func (t *tb) Name() string                    { return "testsshd" }
func (t *tb) Failed() bool                    { return t.failed }
func (t *tb) Cleanup(f func())                { t.cleanups = append(t.cleanups, f) }
func (t *tb) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *tb) Errorf(format string, args ...any) {
	t.failed = true
	t.Logf(format, args...)
}
func (t *tb) Fatalf(format string, args ...any) {
	t.failed = true
	panic(fatal{fmt.Sprintf(format, args...)})
}
func (t *tb) Skip(args ...any) { panic(fatal{"skipped: " + fmt.Sprint(args...)}) }

// TempDir mirrors testing: a fresh directory inside a private parent (testsshd
// loosens the parent's mode so the throwaway user can reach its home).
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp(t.base, "d")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	return d
}

func (t *tb) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		func() {
			defer func() { recover() }()
			t.cleanups[i]()
		}()
	}
	t.cleanups = nil
	os.RemoveAll(t.base)
}

type info struct {
	Addr               string `json:"addr"`
	Host               string `json:"host"`
	Port               int    `json:"port"`
	User               string `json:"user"`
	HostKeyFingerprint string `json:"hostKeyFingerprint"`
	AuthorizedKeysPath string `json:"authorizedKeysPath"`
	ClientKeyPath      string `json:"clientKeyPath"`
	ClientPublicKey    string `json:"clientPublicKey"`
	Throwaway          bool   `json:"throwaway"`
	// Password is the login password, only with TESTSSHD_PASSWORD=1.
	Password string `json:"password,omitempty"`
	LogFile  string `json:"logFile"` // sshd's -E log, readable by the login (for the ssh log tab)
}

func main() {
	base, err := os.MkdirTemp("", "testsshd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	t := &tb{base: base}
	code := run(t)
	t.cleanup()
	os.Exit(code)
}

func run(t *tb) (code int) {
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(fatal); ok {
				fmt.Fprintln(os.Stderr, "testsshd:", f.msg)
				code = 1
				return
			}
			panic(r)
		}
	}()
	s := testsshd.Start(t, testsshd.Options{Password: os.Getenv("TESTSSHD_PASSWORD") == "1"})
	print := func() {
		// sshd creates its log for root only; the browser tests read it over SSH as
		// the login, as a server's adm group member would read auth.log.
		_ = os.Chmod(s.LogFile, 0o644)
		pub := ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey())
		json.NewEncoder(os.Stdout).Encode(info{
			Addr: s.Addr, Host: s.Host, Port: s.Port, User: s.User,
			HostKeyFingerprint: ssh.FingerprintSHA256(s.HostKey),
			AuthorizedKeysPath: s.AuthorizedKeysPath(), ClientKeyPath: s.ClientKeyPath,
			ClientPublicKey: strings.TrimSpace(string(pub)), Throwaway: s.Throwaway, Password: s.Password,
			LogFile: s.LogFile,
		})
	}
	print()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	for {
		select {
		case <-stdinClosed:
			return 0
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				return 0
			}
			s.Restart(t, true)
			print()
		}
	}
}
