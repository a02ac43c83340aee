package sshkey

import (
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // only to recognise and refuse DSA keys
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// maxPrivateInput bounds an uploaded private key file; a 16384-bit RSA key
// in OpenSSH format is about 12 KB.
const maxPrivateInput = 64 << 10

// Private is a checked private key.
//
// What to store: StorageBytes returns the bytes to encrypt at rest. For a key
// uploaded with a passphrase these are the uploaded file itself, so the key
// stays passphrase protected and the passphrase (never stored) is asked for
// each time it is used. Otherwise they are the key in unencrypted OpenSSH
// format. Either way ParsePrivate reads them back.
type Private struct {
	Public *Public
	// Encrypted reports whether the uploaded file was passphrase protected.
	Encrypted bool
	// Key is the raw key: *rsa.PrivateKey, *ecdsa.PrivateKey or
	// ed25519.PrivateKey.
	Key crypto.PrivateKey
	// Signer signs with Key for SSH authentication.
	Signer ssh.Signer

	original []byte // the uploaded file, kept when Encrypted
}

// StorageBytes returns the bytes to encrypt and store: the original file
// when it is passphrase protected, else the key marshalled in OpenSSH format.
func (p *Private) StorageBytes() ([]byte, error) {
	if p.Encrypted {
		return bytes.Clone(p.original), nil
	}
	return MarshalOpenSSH(p, p.Public.Comment, nil)
}

// ParsePrivate reads a private key file in OpenSSH or PEM (PKCS#1, PKCS#8,
// SEC1) format. When the file is passphrase protected and passphrase is
// empty it returns ErrPassphraseRequired; a wrong passphrase gives
// ErrWrongPassphrase. A passphrase given for an unprotected file is ignored.
// The public half must pass the same policy as ParsePublic.
func ParsePrivate(pemBytes []byte, passphrase []byte) (*Private, error) {
	data := bytes.TrimSpace(pemBytes)
	if len(data) == 0 {
		return nil, inputErr(ErrEmpty, "No key given: upload your private key file (for example ~/.ssh/id_ed25519).")
	}
	if len(data) > maxPrivateInput {
		return nil, inputErr(ErrMalformed, "This file is too large to be an SSH private key.")
	}
	if bytes.HasPrefix(data, []byte("PuTTY-User-Key-File-")) {
		return nil, inputErr(ErrUnsupportedFormat, "This is a PuTTY (.ppk) key. Export it in OpenSSH format first: in PuTTYgen, Conversions → Export OpenSSH key, or run: puttygen key.ppk -O private-openssh -o id_key")
	}
	if bytes.HasPrefix(data, []byte("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY")) {
		return nil, inputErr(ErrUnsupportedFormat, "This is an ssh.com (SSH2) private key. Convert it with: ssh-keygen -i -f key > id_key")
	}
	if first, _ := cut(string(data[:min(len(data), 64)])); isKeyTypeToken(first) {
		return nil, inputErr(ErrNotPrivateKey, "This is a public key. Upload the private key file instead (for example ~/.ssh/id_ed25519, without .pub).")
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, inputErr(ErrMalformed, "This is not a private key file: it should start with a line like -----BEGIN OPENSSH PRIVATE KEY-----.")
	}
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		return nil, inputErr(ErrUnsupportedFormat, "Encrypted PKCS#8 keys are not supported. Convert the key to OpenSSH format, keeping its passphrase, with: ssh-keygen -p -f <file>")
	case "DSA PRIVATE KEY":
		return nil, dsaError
	case "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
	default:
		return nil, inputErr(ErrUnsupportedFormat, fmt.Sprintf("%q blocks are not SSH private keys this server can read; use OpenSSH format (ssh-keygen writes it by default).", truncate(block.Type, 40)))
	}

	encrypted := false
	raw, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		encrypted = true
		if len(passphrase) == 0 {
			return nil, inputErr(ErrPassphraseRequired, "This private key is protected by a passphrase: enter the passphrase to use it.")
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(data, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, &InputError{Kind: ErrWrongPassphrase, Err: err, Message: "The passphrase is wrong."}
		}
	}
	if err != nil {
		return nil, &InputError{Kind: ErrMalformed, Err: err, Message: privateParseMessage(err)}
	}
	key, err := normalizePrivate(raw)
	if err != nil {
		return nil, err
	}
	p, err := newPrivate(key, "")
	if err != nil {
		return nil, err
	}
	p.Encrypted = encrypted
	if encrypted {
		p.original = bytes.Clone(data)
		p.original = append(p.original, '\n')
	}
	return p, nil
}

func privateParseMessage(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "sk-"):
		return "Security key (FIDO) private keys work only with their hardware token and cannot be uploaded."
	case strings.Contains(msg, "unsupported") || strings.Contains(msg, "unhandled") || strings.Contains(msg, "unknown"):
		return "This private key type is not supported. Supported: Ed25519, ECDSA (P-256/384/521) and RSA (2048 bits or more)."
	}
	return "The private key file is damaged or truncated: upload the whole file again."
}

func normalizePrivate(raw any) (crypto.PrivateKey, error) {
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case ed25519.PrivateKey, *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, inputErr(ErrUnsupportedType, "Only ECDSA keys on P-256, P-384 and P-521 are supported.")
	case *dsa.PrivateKey:
		return nil, dsaError
	}
	return nil, inputErr(ErrUnsupportedType, fmt.Sprintf("%T private keys are not supported. Supported: Ed25519, ECDSA (P-256/384/521) and RSA (2048 bits or more).", raw))
}

func newPrivate(key crypto.PrivateKey, comment string) (*Private, error) {
	if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() < MinRSABits {
		// Check before NewSignerFromKey: crypto/rsa refuses to sign with
		// keys under 1024 bits and its error would hide the real reason.
		return nil, inputErr(ErrWeakKey, fmt.Sprintf("This RSA key has only %d bits; at least %d are required. RSA keys this small are weak and refused by OpenSSH; %s.", k.N.BitLen(), MinRSABits, newKeyAdvice))
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, &InputError{Kind: ErrUnsupportedType, Err: err, Message: "This private key type is not supported."}
	}
	pub, err := newPublic(signer.PublicKey(), comment)
	if err != nil {
		return nil, err
	}
	return &Private{Public: pub, Key: key, Signer: signer}, nil
}

// Kinds accepted by Generate.
const (
	KindEd25519 = "ed25519"
	KindECDSA   = "ecdsa"
	KindRSA     = "rsa"
)

// Generate creates a new key: "ed25519" (also for ""), "ecdsa" (P-256) or
// "rsa" (4096 bits).
func Generate(kind string) (*Private, error) {
	var key crypto.PrivateKey
	var err error
	switch kind {
	case "", KindEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case KindECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KindRSA:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, inputErr(ErrUnsupportedType, fmt.Sprintf("Unknown key kind %q: choose ed25519, ecdsa or rsa.", truncate(kind, 20)))
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", kind, err)
	}
	return newPrivate(key, "")
}

// MarshalOpenSSH encodes priv as an "OPENSSH PRIVATE KEY" PEM file, as
// ssh-keygen writes it, encrypted with passphrase when it is not empty. The
// comment is sanitized like a public key comment.
func MarshalOpenSSH(priv *Private, comment string, passphrase []byte) ([]byte, error) {
	comment = sanitizeComment(comment)
	var block *pem.Block
	var err error
	if len(passphrase) > 0 {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv.Key, comment, passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv.Key, comment)
	}
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

// ValidName checks a key name: 1 to 32 letters, digits or underscores. Names
// can become Unix login names, hence the narrow alphabet.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return inputErr(ErrInvalidName, "A key name may contain letters, digits and underscore only, and be 1–32 characters long.")
	}
	return nil
}
