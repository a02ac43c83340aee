package terminal

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

func TestScanHostKeyOpenSSH(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	tg := &Target{Name: "web-1", Host: s.Host, Port: s.Port, User: s.User} // nothing pinned
	key, err := ScanHostKey(t.Context(), &net.Dialer{}, tg, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.Marshal(), s.HostKey.Marshal()) {
		t.Errorf("scanned %s, want %s", ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(s.HostKey))
	}
	// Key exchange only: sshd never saw an authentication request.
	if log := s.Log(); strings.Contains(log, "Accepted") || strings.Contains(log, "Failed") || strings.Contains(log, "Postponed") {
		t.Errorf("sshd saw authentication:\n%s", log)
	}
	// After a key change the scan shows the new key (it is how a person
	// gets to compare it), while Dial refuses it.
	s.Restart(t, true)
	key2, err := ScanHostKey(t.Context(), &net.Dialer{}, tg, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key2.Marshal(), s.HostKey.Marshal()) || bytes.Equal(key2.Marshal(), key.Marshal()) {
		t.Error("scan after restart did not return the new key")
	}
}

func TestScanHostKeyThroughJump(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	gw := newSigner(t)
	jump := startServer(t, serverOpts{keys: []ssh.PublicKey{gw.PublicKey()}})
	tg := &Target{Name: "web-1", Host: s.Host, Port: s.Port, User: s.User, Jump: jump.target("bastion", true)}
	d := &Deployer{Dialer: &net.Dialer{}, Auth: Auth{Signers: []ssh.Signer{gw}}, Options: testOpts}
	key, err := d.ScanHostKey(t.Context(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.Marshal(), s.HostKey.Marshal()) {
		t.Errorf("scanned %s through the jump, want %s", ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(s.HostKey))
	}

	// A jump host whose key is not pinned is refused before any credential.
	tg.Jump = jump.target("bastion", false)
	before := jump.authCalls.Load()
	if _, err := d.ScanHostKey(t.Context(), tg); !errors.Is(err, ErrHostKeyRejected) {
		t.Errorf("unpinned jump: err = %v, want ErrHostKeyRejected", err)
	}
	if jump.authCalls.Load() != before {
		t.Error("credentials offered to an unpinned jump host")
	}
	// The package function offers no credentials to jump hosts.
	tg.Jump = jump.target("bastion", true)
	if _, err := ScanHostKey(t.Context(), &net.Dialer{}, tg, testOpts); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("jump without credentials: err = %v, want ErrAuthFailed", err)
	}
}

func TestScanHostKeyErrors(t *testing.T) {
	// Something that is not SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	tg := &Target{Name: "web", Host: "127.0.0.1", Port: addr.Port}
	if _, err := ScanHostKey(t.Context(), &net.Dialer{}, tg, DialOptions{}); !errors.Is(err, ErrNotSSH) {
		t.Errorf("not SSH: err = %v, want ErrNotSSH", err)
	}
	ln.Close()
	_, err = ScanHostKey(t.Context(), &net.Dialer{}, tg, DialOptions{})
	var de *DialError
	if !errors.As(err, &de) || de.Phase != PhaseConnect || !strings.Contains(UserMessage(err), "refused") {
		t.Errorf("closed port: err = %v (%q)", err, UserMessage(err))
	}
}
