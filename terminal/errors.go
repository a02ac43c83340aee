package terminal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"
)

// Conditions this package owns. Compare with errors.Is.
var (
	ErrHostKeyChanged  = errors.New("host key changed")
	ErrHostKeyRejected = errors.New("host key not accepted")
	ErrAuthFailed      = errors.New("authentication failed")
	ErrNotSSH          = errors.New("not an SSH server")
	ErrTicket          = errors.New("terminal ticket invalid")
	ErrTooManySessions = errors.New("too many terminal sessions")
	// ErrTooManyPending refuses a socket upgrade while the user already has
	// Config.MaxPendingPerUser sockets that have not sent their first message.
	ErrTooManyPending  = errors.New("too many terminal connections waiting to open")
	ErrSessionNotFound = errors.New("terminal session not found")
	ErrTerminated      = errors.New("closed by an administrator")
	ErrShutdown        = errors.New("server shutting down")
	ErrConnectionLost  = errors.New("connection to the SSH server lost")
	ErrTakenOver       = errors.New("session resumed by another connection")
	// ErrClientGone ends a socket whose browser went away; the session
	// stays detached and resumable.
	ErrClientGone = errors.New("browser disconnected")
	// ErrDetachExpired ends a session nobody resumed within the grace period.
	ErrDetachExpired = errors.New("detached session expired")
	// ErrClosedByBrowser is a normal end: the browser closed the socket on
	// purpose (close 1000 or 1001: the tab closed, the page navigated away,
	// the person ended the session), so there is nobody to resume it.
	ErrClosedByBrowser = errors.New("closed by the browser")
	// ErrRevoked ends a session whose person lost access; see RevokedError.
	ErrRevoked = errors.New("access revoked")
	// ErrAgentOffline: the server is reached through an agent whose link to
	// shellgate is down.
	ErrAgentOffline = errors.New("the server's agent is not connected")
	// ErrAgentLinkLost: the agent's link dropped while a connection went
	// through it.
	ErrAgentLinkLost = errors.New("the server's agent disconnected")
)

// RevokedError ends a session because access ended: Reason says why in
// plain words ("you signed out").
type RevokedError struct{ Reason string }

func (e *RevokedError) Error() string { return "access revoked: " + e.Reason }
func (e *RevokedError) Unwrap() error { return ErrRevoked }

// HostKeyError reports a host key that was refused; Err is ErrHostKeyChanged
// or ErrHostKeyRejected.
type HostKeyError struct {
	Target      *Target
	Presented   ssh.PublicKey
	Fingerprint string // SHA256:… of Presented
	Err         error
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host key of %s (%s %s): %v", e.Target, e.Presented.Type(), e.Fingerprint, e.Err)
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// AuthError reports that the server accepted none of our credentials.
type AuthError struct {
	Target  *Target
	Allowed []string // methods the server offered, as OpenSSH prints them
	Tried   []string // methods we attempted
	Err     error    // what x/crypto said
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s@%s: permission denied (%s), tried [%s]: %v",
		e.Target.User, e.Target, strings.Join(e.Allowed, ","), strings.Join(e.Tried, ","), e.Err)
}

func (e *AuthError) Unwrap() []error { return []error{ErrAuthFailed, e.Err} }

// DialError says which hop failed and in which phase.
type DialError struct {
	Target *Target
	Phase  string // PhaseConnect, PhaseBanner, PhaseKex or PhaseAuth
	Err    error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("dial %s (%s): %v", e.Target, e.Phase, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// ExitError is how a session ends normally: the remote shell exited.
type ExitError struct {
	Target *Target
	Status int    // exit status; 255 with Signal set when killed by a signal
	Signal string // e.g. "KILL"; empty for a normal exit
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("remote shell on %s killed by signal %s", e.Target, e.Signal)
	}
	return fmt.Sprintf("remote shell on %s exited with status %d", e.Target, e.Status)
}

// CloseCode maps the reason a terminal ended to a WebSocket close code.
// It and UserMessage are the one place errors meet the browser.
func CloseCode(err error) int {
	var exit *ExitError
	var dial *DialError
	var refusal *Refusal
	switch {
	case err == nil, errors.As(err, &exit):
		return CloseNormal
	case errors.As(err, &refusal):
		return refusal.Code
	case errors.Is(err, ErrHostKeyChanged):
		return CloseHostKeyChanged
	case errors.Is(err, ErrHostKeyRejected):
		return CloseHostKeyRejected
	case errors.Is(err, ErrAuthFailed):
		return CloseAuthFailed
	case errors.Is(err, ErrTicket):
		return CloseTicketInvalid
	case errors.Is(err, ErrSessionNotFound), errors.Is(err, ErrDetachExpired):
		return CloseSessionNotFound
	case errors.Is(err, ErrTooManySessions), errors.Is(err, ErrTooManyPending):
		return CloseTooManySessions
	case errors.Is(err, ErrTerminated):
		return CloseTerminated
	case errors.Is(err, ErrTakenOver):
		return CloseTakenOver
	case errors.Is(err, ErrRevoked):
		return CloseRevoked
	case errors.Is(err, ErrClosedByBrowser):
		return CloseNormal
	case errors.Is(err, ErrShutdown), errors.Is(err, ErrClientGone):
		return CloseGoingAway
	case errors.Is(err, ErrConnectionLost):
		return CloseConnectionLost
	case errors.Is(err, websocket.ErrReadLimit):
		return CloseTooBig
	case errors.Is(err, ErrProtocol):
		return ClosePolicy
	case errors.As(err, &dial):
		return CloseConnectFailed
	default:
		return CloseInternal
	}
}

// UserMessage says in plain words why a terminal ended or failed. It names
// servers and fingerprints but never secrets or internal details; log the
// error itself for those.
func UserMessage(err error) string {
	var (
		exit  *ExitError
		hk    *HostKeyError
		auth  *AuthError
		dial  *DialError
		algo  *ssh.AlgorithmNegotiationError
		dns   *net.DNSError
		where = "the server"
	)
	if errors.As(err, &dial) {
		where = dial.Target.String()
	}
	var refusal *Refusal
	var revoked *RevokedError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &refusal):
		return refusal.Message
	case errors.As(err, &exit):
		return fmt.Sprintf("Connection to %s closed.", exit.Target.displayName())
	case errors.As(err, &hk) && errors.Is(err, ErrHostKeyChanged):
		return fmt.Sprintf("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! "+
			"The host key of %s is not the one pinned for it. Someone could be eavesdropping on you right now "+
			"(man-in-the-middle attack), or the server's host key has just been changed. "+
			"It now presents the %s key %s. Nothing was sent to it. "+
			"Ask an administrator to verify the new key and update the pinned key.",
			hk.Target, hk.Presented.Type(), hk.Fingerprint)
	case errors.As(err, &hk):
		return fmt.Sprintf("Host key verification failed: the %s key %s of %s was not accepted.",
			hk.Presented.Type(), hk.Fingerprint, hk.Target)
	case errors.As(err, &auth):
		tried := "no method"
		if len(auth.Tried) > 0 {
			tried = strings.Join(auth.Tried, ", ")
		}
		return fmt.Sprintf("%s@%s: Permission denied (%s). Tried: %s.",
			auth.Target.User, auth.Target.displayName(), strings.Join(auth.Allowed, ","), tried)
	case errors.Is(err, ErrTicket):
		return "This terminal link is no longer valid. Reload the page to open a new terminal."
	case errors.Is(err, ErrSessionNotFound), errors.Is(err, ErrDetachExpired):
		return "The terminal session has ended or can no longer be resumed."
	case errors.Is(err, ErrTooManySessions):
		return "You have too many terminal sessions open. Close one and try again."
	case errors.Is(err, ErrTerminated):
		return "The session was closed by an administrator."
	case errors.Is(err, ErrTakenOver):
		return "This session was resumed in another window."
	case errors.As(err, &revoked):
		return "Session ended: " + revoked.Reason + "."
	case errors.Is(err, ErrRevoked):
		return "Session ended: access was revoked."
	case errors.Is(err, ErrClosedByBrowser):
		return "The browser closed the terminal."
	case errors.Is(err, ErrShutdown):
		return "The server is restarting. Reconnect in a moment."
	case errors.Is(err, ErrAgentLinkLost):
		return "The agent of " + agentName(err) + " disconnected, so the connection was lost. " +
			"The agent reconnects by itself; open a new terminal in a moment."
	case errors.Is(err, ErrAgentOffline):
		return agentName(err) + " is reached through an agent, and the agent is not connected to shellgate right now."
	case errors.Is(err, ErrConnectionLost):
		return "The connection to the server was lost."
	case errors.Is(err, websocket.ErrReadLimit):
		return "A message from the browser was too large."
	case errors.Is(err, ErrProtocol):
		return "The browser sent a message the server did not understand. Reload the page."
	case errors.As(err, &algo):
		return fmt.Sprintf("Unable to exchange encryption keys with %s: no common %s algorithm. "+
			"We offered: %s. The server offered: %s.",
			where, algo.What, strings.Join(algo.SupportedAlgorithms, ", "), strings.Join(algo.RequestedAlgorithms, ", "))
	case errors.Is(err, ErrNotSSH):
		return fmt.Sprintf("%s is not an SSH server.", where)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("Connection to %s was refused.", where)
	case errors.As(err, &dns):
		return fmt.Sprintf("Could not resolve the host name of %s.", where)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("No route to %s.", where)
	case isTimeout(err) && dial != nil && dial.Phase == PhaseBanner:
		return fmt.Sprintf("Connection to %s timed out while waiting for the SSH banner. Is it an SSH server?", where)
	case isTimeout(err):
		return fmt.Sprintf("Connection to %s timed out.", where)
	case dial != nil && errors.Is(err, io.EOF):
		return fmt.Sprintf("%s closed the connection during the SSH handshake.", where)
	case dial != nil:
		return fmt.Sprintf("Could not connect to %s.", where)
	default:
		return "Internal error. The terminal was closed."
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Refusal is a reason the web layer gives for not opening a terminal (the server's host
// key is not confirmed yet, the person has no way to log in): the close code and the
// message the browser shows, as is.
type Refusal struct {
	Code    int
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// agentName names the server in agent messages.
func agentName(err error) string {
	var dial *DialError
	var lost *LostError
	switch {
	case errors.As(err, &dial):
		return dial.Target.displayName()
	case errors.As(err, &lost):
		return lost.Target.displayName()
	}
	return "the server"
}

// LostError is a session's connection lost for a reason worth naming, e.g.
// the agent carrying it disconnected.
type LostError struct {
	Target *Target
	Err    error
}

func (e *LostError) Error() string { return fmt.Sprintf("%s: %v", e.Target, e.Err) }
func (e *LostError) Unwrap() error { return e.Err }
