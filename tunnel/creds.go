package tunnel

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// Files in the agent's state directory.
const (
	// KeyFile is the agent's credential: an ed25519 private key (OpenSSH PEM,
	// 0600), created on first start; its public half is enrolled with the token.
	KeyFile = "agent_ed25519"
	// EnrolledFile exists once shellgate accepted the credential; from then on
	// the agent never sends a token again.
	EnrolledFile = "enrolled"
)

func fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// LoadOrCreateKey reads the agent's key from dir, creating it (and dir, 0700)
// when missing. A key file that others can read is refused.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, "shellgate agent")
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(pem.EncodeToMemory(blk)); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
		return priv, f.Close()
	}
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: readable by others (mode %v); chmod 600", path, st.Mode().Perm())
	}
	k, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(*ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", path)
	}
	return *priv, nil
}

// Enrolled reports whether dir records a finished enrollment.
func Enrolled(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, EnrolledFile))
	return err == nil
}

// MarkEnrolled records that the credential in dir is enrolled.
func MarkEnrolled(dir string) error {
	return os.WriteFile(filepath.Join(dir, EnrolledFile), []byte("enrolled\n"), 0o600)
}
