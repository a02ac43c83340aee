package terminal

import (
	"context"
	"errors"
	"fmt"
)

// errInstallJump: a password login through jump hosts would offer the
// target's password to every jump host too (Dial uses one Auth per chain).
var errInstallJump = errors.New("password install through a jump host")

// InstallWithPassword logs in once with the login's password (never stored,
// never logged) and adds the gateway public key to authorized_keys, like
// ssh-copy-id. It edits the file exactly as Deployer.Deploy does.
//
// The password is only sent after the host key checked out: pinned in
// t.HostKeys, or accepted through policy (which asks a person, showing the
// fingerprint). With a nil policy an unpinned server is refused before
// anything is sent. A wrong password is tried once, not retried, so the
// login is not locked out by fail2ban-style counters; the error is an
// *AuthError (errors.Is ErrAuthFailed) and nothing is written.
//
// t.Jump must be nil: to reach a server behind a jump host, pass as d an
// *ssh.Client connected to the jump host.
func InstallWithPassword(ctx context.Context, d Dialer, t *Target, password string, gatewayKey DeployKey, policy HostKeyPolicy, log func(string)) error {
	if t != nil && t.Jump != nil {
		err := &deployError{err: errInstallJump, message: fmt.Sprintf(
			"The password of %s cannot be used through a jump host: it would be offered to the jump host too.", t.displayName())}
		if log != nil {
			log("Failed on " + t.displayName() + ": " + err.message)
		}
		return err
	}
	dep := &Deployer{
		Dialer:   d,
		Auth:     Auth{Prompter: &passwordPrompter{password: password}},
		HostKeys: policy,
		Options:  DialOptions{KeepaliveInterval: -1},
	}
	return dep.Deploy(ctx, t, []DeployKey{gatewayKey}, DeployToLogin, log)
}

// passwordPrompter answers a password prompt, or a keyboard-interactive
// round of one hidden question, with the password: once per method, so a
// wrong password fails at once instead of being retried.
type passwordPrompter struct {
	password        string
	usedPassword    bool
	usedInteractive bool
}

func (p *passwordPrompter) Prompt(_ context.Context, q Prompt) ([]string, error) {
	switch {
	case q.Name == "Password" && len(q.Questions) == 1:
		if p.usedPassword {
			return nil, ErrAuthFailed
		}
		p.usedPassword = true
	case len(q.Questions) == 1 && !q.Questions[0].Echo:
		if p.usedInteractive {
			return nil, ErrAuthFailed
		}
		p.usedInteractive = true
	default:
		return nil, fmt.Errorf("%w: cannot answer %q with a password", ErrAuthFailed, q.Name)
	}
	return []string{p.password}, nil
}
