package terminal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// errScanned ends a scan's key exchange as soon as the host key is known,
// before any authentication request is sent.
var errScanned = errors.New("host key scanned")

// ScanHostKey connects far enough to learn the host key (key exchange only,
// no authentication), through t.Jump (whose keys must be pinned) if set.
// It does not check the key against t.HostKeys: it is how a person gets to
// see a fingerprint before pinning it.
//
// Jump hosts need credentials; ScanHostKey offers none to them, so with
// t.Jump set use Deployer.ScanHostKey, which authenticates to jump hosts
// with the gateway identity.
func ScanHostKey(ctx context.Context, d Dialer, t *Target, opts DialOptions) (ssh.PublicKey, error) {
	return scanHostKey(ctx, d, t, Auth{}, opts)
}

// ScanHostKey is the package's ScanHostKey with d's dialer and options,
// authenticating to t's jump hosts (never to t) with d.Auth. Jump hosts'
// keys must be pinned: d.HostKeys is not consulted.
func (d *Deployer) ScanHostKey(ctx context.Context, t *Target) (ssh.PublicKey, error) {
	return scanHostKey(ctx, d.Dialer, t, d.Auth, d.Options)
}

func scanHostKey(ctx context.Context, d Dialer, t *Target, jumpAuth Auth, opts DialOptions) (ssh.PublicKey, error) {
	if t == nil {
		return nil, errors.New("scan host key: no target")
	}
	opts = opts.withDefaults()
	via := d
	if t.Jump != nil && t.Agent == 0 {
		jopts := opts
		jopts.KeepaliveInterval = -1 // the scan lasts one handshake
		// nil policy: a jump host whose key is not pinned is refused.
		jc, err := Dial(ctx, d, t.Jump, jumpAuth, nil, jopts)
		if err != nil {
			return nil, err
		}
		defer jc.Close()
		via = jc
	}

	opts.tracef("Connecting to %s to read its host key.", t)
	dctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	raw, err := dialFirst(dctx, via, t, t.Addr())
	cancel()
	if err != nil {
		return nil, &DialError{Target: t, Phase: PhaseConnect, Err: err}
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(opts.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	conn := &sniffConn{Conn: raw}
	var key ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: t.User,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			key = k
			opts.tracef("Server host key: %s %s", k.Type(), ssh.FingerprintSHA256(k))
			return errScanned
		},
		HostKeyAlgorithms: hostKeyAlgorithms(t.HostKeys),
		ClientVersion:     opts.ClientVersion,
	}
	_, _, _, err = ssh.NewClientConn(conn, t.Addr(), cfg)
	if key != nil {
		return key, nil
	}
	if err == nil { // cannot happen: the callback always fails
		return nil, fmt.Errorf("scan %s: handshake completed without a host key", t)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	phase := PhaseKex
	if !conn.sawBanner() {
		phase = PhaseBanner
		if conn.received() > 0 {
			err = fmt.Errorf("%w: %w", ErrNotSSH, err)
		}
	}
	return nil, &DialError{Target: t, Phase: phase, Err: err}
}
