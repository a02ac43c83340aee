package handlers_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// liveTerminal opens alice's terminal on the fixture's server and waits for the shell.
func (f *termFixture) liveTerminal(t *testing.T) *termClient {
	t.Helper()
	ticket, code := f.alice.ticket(f.stack.ID, f.server.ID)
	if code != http.StatusOK {
		t.Fatalf("ticket: %d", code)
	}
	tc := f.alice.openTerminal(f.server.ID, ticket)
	if !tc.until(tc.connected) {
		t.Fatalf("terminal never connected: %d %q %+v", tc.code, tc.reason, tc.errors)
	}
	tc.send("echo READY-$((40+2))\n")
	if !tc.until(func() bool { return strings.Contains(tc.out.String(), "READY-42") }) {
		t.Fatalf("shell never answered: %q", tc.out.String())
	}
	return tc
}

// admin signs in a second browser as an administrator.
func (f *termFixture) admin(t *testing.T) *browser {
	t.Helper()
	f.addUser("root", pw, store.RoleAdmin)
	b := f.browser()
	b.signIn("root", pw)
	return b
}

func redirected(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", what, resp.StatusCode)
	}
}

// TestRevocationEndsLiveTerminalsAgainstOpenSSH: every event that ends or narrows a
// person's access ends the terminal they have open, not only their next page load.
// The attack each row closes: someone whose access was taken away (a stolen laptop
// signed out from another tab, a leaver disabled, a member removed from a stack, a key
// known to be compromised detached or deleted, a server whose host key was replaced
// by a man in the middle) keeps typing into a shell that is already open. Each row
// opens a real shell through the endpoint, makes the change the way a person does
// (HTTP, another browser), and expects the socket to close with CloseRevoked, the
// cause in the message, and the cause in the audit log.
func TestRevocationEndsLiveTerminalsAgainstOpenSSH(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		revoke func(t *testing.T, f *termFixture)
	}{
		{"sign-out in another tab", store.ReasonSignedOut, func(t *testing.T, f *termFixture) {
			redirected(t, "logout", f.alice.post("/logout", nil)) // the same cookie: another tab
		}},
		{"password changed in another browser", store.ReasonPasswordChanged, func(t *testing.T, f *termFixture) {
			other := f.browser()
			other.signIn("alice", pw)
			redirected(t, "change password", other.post("/account/password", url.Values{
				"current": {pw}, "new": {"a brand new passphrase 42"}, "confirm": {"a brand new passphrase 42"},
				"current_password": {pw}, "new_password": {"a brand new passphrase 42"}, "confirm_password": {"a brand new passphrase 42"},
			}))
		}},
		{"password reset by an administrator", store.ReasonPasswordChanged, func(t *testing.T, f *termFixture) {
			redirected(t, "reset", f.admin(t).post("/admin/users/"+id(f.aliceID)+"/password", nil))
		}},
		{"account disabled", store.ReasonDisabled, func(t *testing.T, f *termFixture) {
			redirected(t, "disable", f.admin(t).post("/admin/users/"+id(f.aliceID)+"/disable", nil))
		}},
		{"administrator ends all sessions", store.ReasonEndedByAdmin, func(t *testing.T, f *termFixture) {
			redirected(t, "end sessions", f.admin(t).post("/admin/users/"+id(f.aliceID)+"/end-sessions", nil))
		}},
		{"removed from the stack's members", store.ReasonMemberRemoved, func(t *testing.T, f *termFixture) {
			redirected(t, "remove member", f.admin(t).post("/stacks/"+id(f.stack.ID)+"/members/"+id(f.aliceID)+"/remove", nil))
		}},
		{"server deleted", store.ReasonServerDeleted, func(t *testing.T, f *termFixture) {
			redirected(t, "delete server", f.admin(t).post("/stacks/"+id(f.stack.ID)+"/servers/"+id(f.server.ID)+"/delete", nil))
		}},
		{"host key re-pinned", store.ReasonHostKeyRepinned, func(t *testing.T, f *termFixture) {
			a := f.admin(t)
			f.sshd.Restart(t, true) // a new host key; the open connection survives
			base := "/stacks/" + id(f.stack.ID) + "/servers/" + id(f.server.ID)
			redirected(t, "scan", a.post(base+"/scan", nil))
			a.get(base + "/hostkey")
			redirected(t, "pin", a.post(base+"/pin", url.Values{"fingerprint": {ssh.FingerprintSHA256(f.sshd.HostKey)}, "confirm": {"yes"}}))
			sv, err := f.store.ServerInStack(context.Background(), f.stack.ID, f.server.ID)
			if err != nil || sv.PresentedKey != "" || !strings.Contains(strings.Join(sv.HostKeys, "\n"), string(ssh.MarshalAuthorizedKey(f.sshd.HostKey)[:40])) {
				t.Fatalf("the new key was not pinned: %+v %v", sv, err)
			}
		}},
		{"key detached", store.ReasonKeyDetached, func(t *testing.T, f *termFixture) {
			keys, _ := f.store.ListKeys(context.Background(), f.aliceID)
			f.alice.get("/stacks/" + id(f.stack.ID))
			redirected(t, "detach", f.alice.post("/stacks/"+id(f.stack.ID)+"/keys/"+id(keys[0].ID)+"/detach", nil))
		}},
		{"key deleted", store.ReasonKeyDeleted, func(t *testing.T, f *termFixture) {
			keys, _ := f.store.ListKeys(context.Background(), f.aliceID)
			f.alice.get("/keys")
			redirected(t, "delete key", f.alice.post("/keys/"+id(keys[0].ID)+"/delete", nil))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newTermFixture(t)
			term := f.liveTerminal(t)
			tc.revoke(t, f)
			term.until(func() bool { return false }) // read until the socket closes
			if term.code != terminal.CloseRevoked {
				t.Fatalf("close code %d %q, want %d (revoked); errors %+v", term.code, term.reason, terminal.CloseRevoked, term.errors)
			}
			if len(term.errors) == 0 || !strings.Contains(term.errors[0].Message, tc.reason) {
				t.Errorf("the person is not told why: %+v", term.errors)
			}
			var end *store.Event
			waitFor(t, "the audit entry", func() bool {
				events, _ := f.store.ListEvents(context.Background(), store.EventFilter{Kind: "terminal.end"})
				if len(events) > 0 {
					end = &events[0]
				}
				return end != nil
			})
			if end.OK || !strings.Contains(end.Detail["reason"], tc.reason) {
				t.Errorf("audit entry does not name the cause: ok=%v %v", end.OK, end.Detail)
			}
		})
	}
}

// TestDetachingAnotherKeyLeavesTheTerminalOpen: the key rows end only the terminals
// that authenticated with that key; detaching an unrelated key of the same person
// changes nothing.
func TestDetachingAnotherKeyLeavesTheTerminalOpen(t *testing.T) {
	f := newTermFixture(t)
	ctx := context.Background()
	other := &store.Key{UserID: f.aliceID, Name: "spare", PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.sshd.HostKey))),
		Type: "ED25519", Bits: 256, Fingerprint: ssh.FingerprintSHA256(f.sshd.HostKey)}
	if err := f.store.CreateKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	ref, _ := f.store.KeyRefByID(ctx, other.ID)
	if err := f.store.AttachKey(ctx, f.stack.ID, ref, f.aliceID, time.Now()); err != nil {
		t.Fatal(err)
	}
	term := f.liveTerminal(t)
	if err := f.store.DetachKey(ctx, f.stack.ID, other.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A revocation would arrive as a close; a command still answers instead.
	term.send("echo STILL-$((20+3))\n")
	if !term.until(func() bool { return strings.Contains(term.out.String(), "STILL-23") }) {
		t.Fatalf("terminal ended (%d %q) after an unrelated key was detached", term.code, term.reason)
	}
}

// TestSignOutCutsOffADownloadInProgress: a file download that is streaming when its
// browser session is signed out stops there. The attack: a stolen session starts a
// large download (or a slow one, read a little at a time) and keeps receiving the
// file after the owner signed out everywhere.
func TestSignOutCutsOffADownloadInProgress(t *testing.T) {
	f := newFilesFixture(t)
	const size = 512 << 20
	p := filepath.Join(f.sshd.Home, "big.bin")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	resp := f.alice.call(http.MethodGet, f.filesURL("/download?path="+url.QueryEscape(p)), nil)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatalf("first MiB: %v", err)
	}
	redirected(t, "logout", f.alice.post("/logout", nil))
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n+(1<<20) >= size {
		t.Fatalf("the whole file arrived after the sign-out")
	}
	waitFor(t, "the audit entry", func() bool {
		events, _ := f.store.ListEvents(context.Background(), store.EventFilter{Kind: "file.revoked"})
		return len(events) == 1 && strings.Contains(events[0].Detail["reason"], store.ReasonSignedOut) && !events[0].OK
	})
}

// TestRepinningAJumpHostEndsTerminalsThroughIt: app-1 is reached through web-1. When
// web-1's host key is replaced and re-pinned, the terminal to app-1 that went through
// the old web-1 ends too: it was opened trusting the key that was just replaced.
func TestRepinningAJumpHostEndsTerminalsThroughIt(t *testing.T) {
	f, _, app := jumpFixture(t)
	term := f.openServer(t, app)
	if !term.until(term.connected) {
		t.Fatalf("not connected: %+v %+v", term.status, term.errors)
	}
	a := f.admin(t)
	f.sshd.Restart(t, true)
	base := "/stacks/" + id(f.stack.ID) + "/servers/" + id(f.server.ID)
	redirected(t, "scan", a.post(base+"/scan", nil))
	a.get(base + "/hostkey")
	redirected(t, "pin", a.post(base+"/pin", url.Values{"fingerprint": {ssh.FingerprintSHA256(f.sshd.HostKey)}, "confirm": {"yes"}}))
	term.until(func() bool { return false })
	if term.code != terminal.CloseRevoked || len(term.errors) == 0 || !strings.Contains(term.errors[0].Message, store.ReasonHostKeyRepinned) {
		t.Fatalf("close %d %+v, want a revocation for the re-pin", term.code, term.errors)
	}
}
