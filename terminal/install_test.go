package terminal

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

func TestInstallWithPassword(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{Password: true})
	s.RequireThrowawayUser(t)
	// Only a password gets in at first, as on a freshly installed server.
	writeOwned(t, s, s.AuthorizedKeysPath(), []byte("# nothing yet\n"), 0o600)
	gk, keyPath := deployKeyFile(t, 100, "shellgate")
	tg := sshdTarget(s)

	var log logLines
	if err := InstallWithPassword(t.Context(), &net.Dialer{}, tg, s.Password, gk, nil, log.add); err != nil {
		t.Fatalf("InstallWithPassword: %v\n%s", err, log.String())
	}
	log.want(t, "Key shellgate deployed to web-1 (127.0.0.1)")
	if strings.Contains(log.String(), s.Password) {
		t.Error("the password appears in the log")
	}
	if got, want := string(readFile(t, s.AuthorizedKeysPath())), "# nothing yet\n"+gk.AuthorizedLine+" shellgate:key=100 shellgate\n"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
	if err := sshLogin(t, s, s.User, keyPath); err != nil {
		t.Fatalf("key login after install: %v", err)
	}
}

// TestInstallWithWrongPassword: a wrong password fails once, in plain
// words, and nothing is written.
func TestInstallWithWrongPassword(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{Password: true})
	s.RequireThrowawayUser(t)
	before := readFile(t, s.AuthorizedKeysPath())
	gk, _ := deployKeyFile(t, 100, "shellgate")
	var log logLines
	err := InstallWithPassword(t.Context(), &net.Dialer{}, sshdTarget(s), "wrong-"+s.Password, gk, nil, log.add)
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("err = %v, want ErrAuthFailed", err)
	}
	log.want(t, "Failed on web-1: "+s.User+"@web-1: Permission denied")
	if strings.Contains(log.String()+err.Error(), s.Password) {
		t.Error("the password appears in the log or error")
	}
	if got := readFile(t, s.AuthorizedKeysPath()); !bytes.Equal(got, before) {
		t.Error("authorized_keys changed")
	}
	if n := strings.Count(s.Log(), "Failed password"); n != 1 {
		t.Errorf("%d password attempts, want exactly 1 (no retries that count toward lockouts)", n)
	}
}

// TestInstallPasswordNeedsTrustedHostKey: a password is a credential; it is
// never sent to a server whose key is neither pinned nor accepted.
func TestInstallPasswordNeedsTrustedHostKey(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{Password: true})
	s.RequireThrowawayUser(t)
	gk, _ := deployKeyFile(t, 100, "shellgate")
	tg := sshdTarget(s)
	tg.HostKeys = nil
	err := InstallWithPassword(t.Context(), &net.Dialer{}, tg, s.Password, gk, nil, nil)
	if !errors.Is(err, ErrHostKeyRejected) {
		t.Fatalf("unpinned, no policy: err = %v, want ErrHostKeyRejected", err)
	}
	tg.HostKeys = []ssh.PublicKey{newSigner(t).PublicKey()}
	if err := InstallWithPassword(t.Context(), &net.Dialer{}, tg, s.Password, gk, nil, nil); !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("wrong pin: err = %v, want ErrHostKeyChanged", err)
	}
	if strings.Contains(s.Log(), "password for") {
		t.Errorf("sshd saw a password:\n%s", s.Log())
	}
	// A person accepting the fingerprint (the policy) is enough.
	tg.HostKeys = nil
	policy := policyFunc(func(_ context.Context, _ *Target, k ssh.PublicKey) (bool, error) {
		return bytes.Equal(k.Marshal(), s.HostKey.Marshal()), nil
	})
	if err := InstallWithPassword(t.Context(), &net.Dialer{}, tg, s.Password, gk, policy, nil); err != nil {
		t.Fatal(err)
	}
	// Through a jump host the password would reach the jump host too.
	tg.Jump = &Target{Host: "127.0.0.1", Port: 1}
	var log logLines
	if err := InstallWithPassword(t.Context(), &net.Dialer{}, tg, s.Password, gk, nil, log.add); !errors.Is(err, errInstallJump) {
		t.Errorf("through a jump: err = %v", err)
	}
	log.want(t, "cannot be used through a jump host")
}

func TestPasswordPrompter(t *testing.T) {
	p := &passwordPrompter{password: "pw"}
	pwPrompt := Prompt{Name: "Password", Questions: []Question{{Text: "u@h's password: "}}}
	kbd := Prompt{Questions: []Question{{Text: "Password: "}}}
	for i, tc := range []struct {
		q       Prompt
		wantErr bool
	}{
		{pwPrompt, false},
		{pwPrompt, true}, // never retried
		{kbd, false},
		{kbd, true},
		{Prompt{Questions: []Question{{Text: "Name: ", Echo: true}}}, true},
		{Prompt{Questions: []Question{{Text: "a"}, {Text: "b"}}}, true},
	} {
		a, err := p.Prompt(t.Context(), tc.q)
		if (err != nil) != tc.wantErr || (err == nil && (len(a) != 1 || a[0] != "pw")) {
			t.Errorf("%d: answers %q err %v, wantErr %v", i, a, err, tc.wantErr)
		}
	}
}
