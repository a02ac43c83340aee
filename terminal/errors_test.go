package terminal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"
)

func TestCloseCodeAndUserMessage(t *testing.T) {
	web1 := &Target{Name: "web-1", Host: "10.0.0.5", User: "deploy"}
	key := newSigner(t).PublicKey()
	fp := ssh.FingerprintSHA256(key)
	dial := func(phase string, err error) error { return &DialError{Target: web1, Phase: phase, Err: err} }
	tests := []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"nil", nil, CloseNormal, ""},
		{"exit", &ExitError{Target: web1, Status: 3}, CloseNormal, "Connection to web-1 closed."},
		{"refused", dial(PhaseConnect, fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)), CloseConnectFailed, "Connection to web-1 (10.0.0.5:22) was refused."},
		{"connect timeout", dial(PhaseConnect, context.DeadlineExceeded), CloseConnectFailed, "Connection to web-1 (10.0.0.5:22) timed out."},
		{"banner timeout", dial(PhaseBanner, os.ErrDeadlineExceeded), CloseConnectFailed, "timed out while waiting for the SSH banner"},
		{"unreachable", dial(PhaseConnect, syscall.EHOSTUNREACH), CloseConnectFailed, "No route to web-1 (10.0.0.5:22)."},
		{"not ssh", dial(PhaseBanner, fmt.Errorf("%w: EOF", ErrNotSSH)), CloseConnectFailed, "web-1 (10.0.0.5:22) is not an SSH server."},
		{"closed early", dial(PhaseBanner, fmt.Errorf("ssh: handshake failed: %w", io.EOF)), CloseConnectFailed, "closed the connection during the SSH handshake"},
		{"algorithms", dial(PhaseKex, fmt.Errorf("ssh: handshake failed: %w", &ssh.AlgorithmNegotiationError{
			What: "client to server cipher", SupportedAlgorithms: []string{"aes128-gcm@openssh.com"}, RequestedAlgorithms: []string{"3des-cbc"}})),
			CloseConnectFailed, "Unable to exchange encryption keys with web-1 (10.0.0.5:22): no common client to server cipher algorithm. We offered: aes128-gcm@openssh.com. The server offered: 3des-cbc."},
		{"auth", dial(PhaseAuth, &AuthError{Target: web1, Allowed: []string{"publickey", "password"}, Tried: []string{"publickey"}, Err: errors.New("x")}),
			CloseAuthFailed, "deploy@web-1: Permission denied (publickey,password). Tried: publickey."},
		{"host key changed", dial(PhaseKex, &HostKeyError{Target: web1, Presented: key, Fingerprint: fp, Err: ErrHostKeyChanged}),
			CloseHostKeyChanged, "REMOTE HOST IDENTIFICATION HAS CHANGED! The host key of web-1 (10.0.0.5:22) is not the one pinned"},
		{"host key rejected", dial(PhaseKex, &HostKeyError{Target: web1, Presented: key, Fingerprint: fp, Err: ErrHostKeyRejected}),
			CloseHostKeyRejected, "Host key verification failed: the ssh-ed25519 key " + fp + " of web-1 (10.0.0.5:22) was not accepted."},
		{"ticket", fmt.Errorf("open: %w", ErrTicket), CloseTicketInvalid, "no longer valid"},
		{"refusal", fmt.Errorf("open: %w", &Refusal{Code: CloseHostKeyRejected, Message: "The host key of web-1 is not confirmed yet."}),
			CloseHostKeyRejected, "The host key of web-1 is not confirmed yet."},
		{"session not found", ErrSessionNotFound, CloseSessionNotFound, "can no longer be resumed"},
		{"detach expired", ErrDetachExpired, CloseSessionNotFound, "can no longer be resumed"},
		{"too many", ErrTooManySessions, CloseTooManySessions, "too many terminal sessions"},
		{"terminated", ErrTerminated, CloseTerminated, "closed by an administrator"},
		{"taken over", ErrTakenOver, CloseTakenOver, "another window"},
		{"revoked", &RevokedError{Reason: "you signed out"}, CloseRevoked, "Session ended: you signed out."},
		{"revoked without reason", fmt.Errorf("x: %w", ErrRevoked), CloseRevoked, "access was revoked"},
		{"closed by the browser", ErrClosedByBrowser, CloseNormal, "browser closed"},
		{"shutdown", ErrShutdown, CloseGoingAway, "restarting"},
		{"lost", ErrConnectionLost, CloseConnectionLost, "was lost"},
		{"agent offline", dial(PhaseConnect, fmt.Errorf("%w", ErrAgentOffline)), CloseConnectFailed,
			"web-1 is reached through an agent, and the agent is not connected to shellgate right now."},
		{"agent lost", &LostError{Target: web1, Err: fmt.Errorf("%w: %w", ErrConnectionLost, fmt.Errorf("%w: EOF", ErrAgentLinkLost))},
			CloseConnectionLost, "The agent of web-1 disconnected, so the connection was lost."},
		{"too big", fmt.Errorf("read: %w", websocket.ErrReadLimit), CloseTooBig, "too large"},
		{"protocol", fmt.Errorf("%w: bad", ErrProtocol), ClosePolicy, "did not understand"},
		{"internal", errors.New("boom"), CloseInternal, "Internal error"},
	}
	for _, tt := range tests {
		if got := CloseCode(tt.err); got != tt.code {
			t.Errorf("%s: CloseCode = %d, want %d", tt.name, got, tt.code)
		}
		if got := UserMessage(tt.err); !strings.Contains(got, tt.msg) || (tt.msg == "" && got != "") {
			t.Errorf("%s: UserMessage = %q, want it to contain %q", tt.name, got, tt.msg)
		}
	}
}
