package jobs

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// Sealer seals secrets at rest; *secrets.Keyring satisfies it.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(ciphertext, additionalData []byte) ([]byte, error)
}

// IdentityStore is the part of the store the gateway identity needs.
type IdentityStore interface {
	GatewayIdentity(ctx context.Context) (*store.GatewayIdentity, error)
	CreateGatewayIdentity(ctx context.Context, g *store.GatewayIdentity) (*store.GatewayIdentity, error)
}

// IdentityComment ends the gateway's public key line, so it is recognisable in an
// authorized_keys file.
const IdentityComment = "shellgate-gateway"

// Identity is shellgate's own SSH key pair.
type Identity struct {
	Signer ssh.Signer
	// AuthorizedLine is the public key as it goes into authorized_keys, with comment.
	AuthorizedLine string
}

// Fingerprint is the SHA256 fingerprint of the public key.
func (id *Identity) Fingerprint() string { return ssh.FingerprintSHA256(id.Signer.PublicKey()) }

// InstallCommand is a one-line shell command that appends the gateway key to the
// login user's authorized_keys, creating ~/.ssh with the modes sshd insists on.
func (id *Identity) InstallCommand() string {
	return "mkdir -p ~/.ssh && chmod 700 ~/.ssh && echo '" + id.AuthorizedLine +
		"' >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys"
}

// LoadOrCreateIdentity returns the gateway identity, creating an ed25519 key pair on
// first start. The private key is stored sealed with additional data
// store.GatewayIdentityAD; when two replicas start at once, one key wins and both use it.
func LoadOrCreateIdentity(ctx context.Context, st IdentityStore, sealer Sealer) (*Identity, error) {
	g, err := st.GatewayIdentity(ctx)
	if errors.Is(err, store.ErrNotFound) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return nil, err
		}
		sealed, err := sealer.Seal(priv.Seed(), []byte(store.GatewayIdentityAD))
		if err != nil {
			return nil, fmt.Errorf("seal gateway key: %w", err)
		}
		line := KeyLine(signer.PublicKey()) + " " + IdentityComment
		g, err = st.CreateGatewayIdentity(ctx, &store.GatewayIdentity{PublicKey: line, PrivateSealed: sealed})
		if err != nil {
			return nil, fmt.Errorf("store gateway key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("load gateway key: %w", err)
	}
	seed, err := sealer.Open(g.PrivateSealed, []byte(store.GatewayIdentityAD))
	if err != nil {
		return nil, fmt.Errorf("open gateway key: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("gateway key: bad size")
	}
	signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(g.PublicKey, KeyLine(signer.PublicKey())) {
		return nil, errors.New("gateway key: public and private parts do not match")
	}
	return &Identity{Signer: signer, AuthorizedLine: g.PublicKey}, nil
}

// GatewayKeyID marks the gateway's own line in authorized_keys
// ("shellgate:key=<id>"). It is far above any ssh_keys row id, so it never collides
// with a user's key.
const GatewayKeyID int64 = math.MaxInt64

// DeployKey is the gateway key in the form the deployer installs.
func (id *Identity) DeployKey() terminal.DeployKey {
	return terminal.DeployKey{ID: GatewayKeyID, Name: "shellgate_gateway", AuthorizedLine: KeyLine(id.Signer.PublicKey())}
}

// InstallWithPassword logs in to t once with the login's password and installs the
// gateway key, like ssh-copy-id. The target's host key must be pinned. Jump hosts
// are reached with the gateway key, so the password is offered to t alone.
func InstallWithPassword(ctx context.Context, d terminal.Dialer, id *Identity, t *terminal.Target, password string, log func(string)) error {
	if len(t.HostKeys) == 0 {
		return ErrNotPinned
	}
	via := d
	if t.Jump != nil {
		jc, err := terminal.Dial(ctx, d, t.Jump, terminal.Auth{Signers: []ssh.Signer{id.Signer}}, nil, terminal.DialOptions{KeepaliveInterval: -1})
		if err != nil {
			return err
		}
		defer jc.Close()
		via = jc
		direct := *t
		direct.Jump = nil
		t = &direct
	}
	return terminal.InstallWithPassword(ctx, via, t, password, id.DeployKey(), nil, log)
}
