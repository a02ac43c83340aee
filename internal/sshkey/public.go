// Package sshkey reads, checks, fingerprints and generates SSH keys the way
// OpenSSH's ssh-keygen does, with the input rules of a web form: one public
// key per entry, no authorized_keys options, no private key pasted by
// mistake, and no weak keys (DSA, RSA under 2048 bits).
//
// Errors caused by the input are *InputError values with a message meant for
// the user; classify them with errors.Is against the Err* kinds.
//
// Certificates (*-cert-v01@openssh.com) are refused: shellgate deploys keys
// into authorized_keys, and sshd never matches a certificate there (it
// trusts certificates through a cert-authority line for the CA instead).
package sshkey

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// MinRSABits is the smallest RSA modulus accepted, as OpenSSH's default
// RequiredRSASize.
const MinRSABits = 2048

// maxPublicInput bounds pasted input; a 16384-bit RSA public key line is
// about 2.8 KB.
const maxPublicInput = 16 << 10

// maxComment bounds the stored comment, in runes.
const maxComment = 200

// Public is a checked SSH public key.
type Public struct {
	Key ssh.PublicKey
	// Type is the short type name ssh-keygen -l prints in parentheses:
	// ED25519, ECDSA, RSA, ED25519-SK or ECDSA-SK.
	Type string
	// Bits is the size ssh-keygen -l prints: 256 for Ed25519, the curve
	// size for ECDSA, the modulus size for RSA.
	Bits int
	// Comment is the text after the key data, sanitized: valid UTF-8,
	// control, line-breaking and format characters replaced by spaces, no
	// surrounding space, at most 200 runes. Inner spacing is kept, as
	// ssh-keygen keeps it.
	Comment string
	// Fingerprint is "SHA256:" and the unpadded base64 SHA-256 of the key
	// blob, as ssh-keygen -l prints it.
	Fingerprint string
}

// AuthorizedLine returns the key in canonical authorized_keys form, without a
// line ending: "type base64" followed by " comment" when there is one.
func (p *Public) AuthorizedLine() string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(p.Key)), "\n")
	if p.Comment != "" {
		line += " " + p.Comment
	}
	return line
}

// String returns what ssh-keygen -l prints: "256 SHA256:... comment (ED25519)".
func (p *Public) String() string {
	c := p.Comment
	if c == "" {
		c = "no comment"
	}
	return fmt.Sprintf("%d %s %s (%s)", p.Bits, p.Fingerprint, c, p.Type)
}

// accepted maps the key types shellgate accepts to ssh-keygen's short names.
var accepted = map[string]string{
	ssh.KeyAlgoED25519:    "ED25519",
	ssh.KeyAlgoECDSA256:   "ECDSA",
	ssh.KeyAlgoECDSA384:   "ECDSA",
	ssh.KeyAlgoECDSA521:   "ECDSA",
	ssh.KeyAlgoRSA:        "RSA",
	ssh.KeyAlgoSKED25519:  "ED25519-SK",
	ssh.KeyAlgoSKECDSA256: "ECDSA-SK",
}

const supportedList = "ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (2048 bits or more), " +
	"sk-ssh-ed25519@openssh.com and sk-ecdsa-sha2-nistp256@openssh.com"

func isCertType(t string) bool { return strings.HasSuffix(t, "-cert-v01@openssh.com") }

// isKeyTypeToken reports whether t names a key type that may start a key
// line, accepted or not.
func isKeyTypeToken(t string) bool {
	_, ok := accepted[t]
	return ok || isCertType(t) || t == ssh.InsecureKeyAlgoDSA ||
		strings.HasPrefix(t, "ssh-") || strings.HasPrefix(t, "ecdsa-sha2-") || strings.HasPrefix(t, "sk-")
}

var dsaError = inputErr(ErrWeakKey, "DSA keys are insecure and disabled by OpenSSH; "+newKeyAdvice)

// ParsePublic parses one public key as a user pastes or uploads it: the
// contents of an id_*.pub file. Surrounding whitespace is ignored;
// everything after the key data is the comment, as in OpenSSH.
func ParsePublic(input string) (*Public, error) {
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(input), "\uFEFF"))
	if s == "" {
		return nil, inputErr(ErrEmpty, "No key given: paste the contents of your public key file (for example ~/.ssh/id_ed25519.pub).")
	}
	if looksPrivate(s) {
		return nil, inputErr(ErrPrivateKeyPasted, privateKeyPastedMessage)
	}
	if len(s) > maxPublicInput {
		return nil, inputErr(ErrMalformed, "This is too long to be an SSH public key; paste one key, as a single line.")
	}
	if strings.HasPrefix(s, "---- BEGIN SSH2 PUBLIC KEY") {
		return nil, inputErr(ErrUnsupportedFormat, "This is an RFC 4716 (SSH2/PuTTY) public key. Convert it to OpenSSH form with: ssh-keygen -i -f key.pub (or in PuTTYgen, copy the box \"Public key for pasting into OpenSSH authorized_keys file\").")
	}
	if strings.HasPrefix(s, "-----BEGIN") {
		return nil, inputErr(ErrUnsupportedFormat, "This is a PEM public key. Convert it to OpenSSH form with: ssh-keygen -i -m PKCS8 -f key.pem")
	}
	if strings.ContainsAny(s, "\r\n") {
		keys := 0
		for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
			f := strings.Fields(line)
			if len(f) > 0 && isKeyTypeToken(f[0]) || len(f) > 1 && isKeyTypeToken(f[1]) {
				keys++
			}
		}
		if keys > 1 {
			return nil, inputErr(ErrMultipleKeys, "This contains several keys: paste one key per entry.")
		}
		return nil, inputErr(ErrLineBreak, "The key is broken over several lines. Paste it as a single line, exactly as in the .pub file.")
	}

	typ, rest := cut(s)
	data, comment := cut(rest)
	if !isKeyTypeToken(typ) || typ == "" {
		next, _ := cut(rest)
		switch {
		case strings.Contains(typ, "=") || isKeyTypeToken(next) || authorizedKeysOption[strings.ToLower(typ)]:
			return nil, inputErr(ErrOptions, "authorized_keys options (such as command=, from= or no-pty) are not accepted here. Paste just the key: its type, its data and an optional comment.")
		case looksLikeBlob(typ):
			return nil, inputErr(ErrMalformed, "The key type is missing: the key must start with its type, for example ssh-ed25519.")
		}
		return nil, inputErr(ErrUnsupportedType, fmt.Sprintf("%q is not a supported SSH key type. Supported: %s.", truncate(typ, 40), supportedList))
	}
	if typ == ssh.InsecureKeyAlgoDSA {
		return nil, dsaError
	}
	if isCertType(typ) {
		return nil, certError
	}
	if _, ok := accepted[typ]; !ok {
		return nil, inputErr(ErrUnsupportedType, fmt.Sprintf("%q keys are not supported. Supported: %s.", truncate(typ, 40), supportedList))
	}
	if data == "" {
		return nil, inputErr(ErrMalformed, "The key data is missing after the key type.")
	}
	blob, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, &InputError{Kind: ErrMalformed, Err: err,
			Message: "The key data is not valid base64: it may have been cut off or altered while copying."}
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, &InputError{Kind: ErrMalformed, Err: err,
			Message: "The key data is truncated or damaged: copy the whole line of the .pub file again."}
	}
	if key.Type() != typ {
		return nil, inputErr(ErrTypeMismatch, fmt.Sprintf("The key says it is %s but its data is a %s key: the line was altered.", typ, truncate(key.Type(), 40)))
	}
	return newPublic(key, comment)
}

var certError = inputErr(ErrCertificate, "Certificates are not accepted: sshd does not match them in authorized_keys. Paste the plain public key (the .pub file without -cert).")

// authorizedKeysOption lists option keywords that take no value, so that a
// line like "restrict ssh-ed25519 ..." is recognised as options.
var authorizedKeysOption = map[string]bool{
	"agent-forwarding": true, "cert-authority": true, "no-agent-forwarding": true,
	"no-port-forwarding": true, "no-pty": true, "no-user-rc": true, "no-x11-forwarding": true,
	"port-forwarding": true, "pty": true, "no-touch-required": true, "verify-required": true,
	"restrict": true, "user-rc": true, "x11-forwarding": true,
}

// newPublic applies the key policy and computes the displayed attributes.
func newPublic(key ssh.PublicKey, comment string) (*Public, error) {
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, certError
	}
	t := key.Type()
	if t == ssh.InsecureKeyAlgoDSA {
		return nil, dsaError
	}
	name, ok := accepted[t]
	if !ok {
		return nil, inputErr(ErrUnsupportedType, fmt.Sprintf("%q keys are not supported. Supported: %s.", truncate(t, 40), supportedList))
	}
	bits := 256
	if ck, ok := key.(ssh.CryptoPublicKey); ok {
		switch k := ck.CryptoPublicKey().(type) {
		case *rsa.PublicKey:
			bits = k.N.BitLen()
			if bits < MinRSABits {
				return nil, inputErr(ErrWeakKey, fmt.Sprintf("This RSA key has only %d bits; at least %d are required. RSA keys this small are weak and refused by OpenSSH; %s.", bits, MinRSABits, newKeyAdvice))
			}
		case *ecdsa.PublicKey:
			bits = k.Curve.Params().BitSize
		}
	}
	return &Public{
		Key:         key,
		Type:        name,
		Bits:        bits,
		Comment:     sanitizeComment(comment),
		Fingerprint: ssh.FingerprintSHA256(key),
	}, nil
}

// NewPublic checks an already parsed key against the policy (it refuses
// DSA, small RSA keys, certificates and unsupported types).
func NewPublic(key ssh.PublicKey, comment string) (*Public, error) {
	return newPublic(key, comment)
}

// sanitizeComment makes a comment safe to store, show and write back into
// authorized_keys: valid UTF-8, no control, line-breaking or bidi-format
// characters (which could disguise the comment when displayed).
func sanitizeComment(c string) string {
	c = strings.ToValidUTF8(c, "\uFFFD")
	c = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, c)
	c = strings.TrimSpace(c)
	return truncate(c, maxComment)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// cut splits s at the first run of spaces or tabs.
func cut(s string) (first, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

func looksLikeBlob(s string) bool {
	if len(s) < 16 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	_, err = ssh.ParsePublicKey(b)
	return err == nil
}

// opensshKeyMagic is "openssh-key-v1\x00" in base64: the body of an OpenSSH
// private key file, recognisable even without its BEGIN line.
const opensshKeyMagic = "b3BlbnNzaC1rZXktdjEA"

func looksPrivate(s string) bool {
	return strings.Contains(s, "PRIVATE KEY") || // PEM, OpenSSH, SSH2 (ssh.com)
		strings.Contains(s, "PuTTY-User-Key-File-") ||
		strings.Contains(s, opensshKeyMagic)
}
