package sshkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshKeygen runs ssh-keygen, skipping the test when it is not installed
// (but failing under CI, where it must be).
func sshKeygen(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ssh-keygen is required under CI: install openssh-client")
		}
		t.Skip("ssh-keygen not installed")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keygenList parses `ssh-keygen -lf` output: "256 SHA256:xxx comment (ED25519)".
func keygenList(t *testing.T, file string) (bits int, fp, comment, typ string) {
	t.Helper()
	out := strings.TrimSpace(sshKeygen(t, "-l", "-f", file))
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("unexpected ssh-keygen -l output %q", out)
	}
	bits, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("bits in %q: %v", out, err)
	}
	typ = strings.Trim(f[len(f)-1], "()")
	rest := strings.SplitN(out, " ", 3)[2]
	return bits, f[1], rest[:strings.LastIndex(rest, " (")], typ
}

func genKeyFile(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	sshKeygen(t, append([]string{"-q", "-f", path}, args...)...)
	return path
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePublicMatchesSSHKeygen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
	}{
		{"ed25519", []string{"-t", "ed25519"}},
		{"ecdsa256", []string{"-t", "ecdsa", "-b", "256"}},
		{"ecdsa384", []string{"-t", "ecdsa", "-b", "384"}},
		{"ecdsa521", []string{"-t", "ecdsa", "-b", "521"}},
		{"rsa2048", []string{"-t", "rsa", "-b", "2048"}},
		{"rsa3072", []string{"-t", "rsa", "-b", "3072"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := genKeyFile(t, dir, tc.name, append(tc.args, "-N", "", "-C", "alice@laptop  two words")...)
			pub, err := ParsePublic(string(mustRead(t, path+".pub")))
			if err != nil {
				t.Fatal(err)
			}
			bits, fp, comment, typ := keygenList(t, path+".pub")
			if pub.Bits != bits || pub.Fingerprint != fp || pub.Type != typ {
				t.Errorf("got %d %s (%s), ssh-keygen says %d %s (%s)", pub.Bits, pub.Fingerprint, pub.Type, bits, fp, typ)
			}
			if pub.Comment != "alice@laptop  two words" || comment != "alice@laptop  two words" {
				t.Errorf("comment = %q, ssh-keygen says %q", pub.Comment, comment)
			}
			if got := pub.String(); got != strings.TrimSpace(sshKeygen(t, "-l", "-f", path+".pub")) {
				t.Errorf("String() = %q", got)
			}
			// The canonical line is read by ssh-keygen as the same key.
			canon := filepath.Join(t.TempDir(), "canon.pub")
			if err := os.WriteFile(canon, []byte(pub.AuthorizedLine()+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, fp2, _, _ := keygenList(t, canon); fp2 != fp {
				t.Errorf("AuthorizedLine fingerprint %s != %s", fp2, fp)
			}
		})
	}
}

// skBlob builds security-key public keys by hand: ssh-keygen needs a
// hardware token to generate them, but lists them without one.
func skBlobs(t *testing.T) map[string][]byte {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point := elliptic.Marshal(elliptic.P256(), ec.X, ec.Y) //nolint:staticcheck // SSH wire format needs the uncompressed point
	return map[string][]byte{
		ssh.KeyAlgoSKED25519: ssh.Marshal(struct{ Name, Key, App string }{ssh.KeyAlgoSKED25519, string(edPub), "ssh:"}),
		ssh.KeyAlgoSKECDSA256: ssh.Marshal(struct{ Name, Curve, Key, App string }{
			ssh.KeyAlgoSKECDSA256, "nistp256", string(point), "ssh:"}),
	}
}

func TestParsePublicSecurityKeys(t *testing.T) {
	want := map[string]string{ssh.KeyAlgoSKED25519: "ED25519-SK", ssh.KeyAlgoSKECDSA256: "ECDSA-SK"}
	for typ, blob := range skBlobs(t) {
		line := typ + " " + base64.StdEncoding.EncodeToString(blob) + " yubi"
		pub, err := ParsePublic(line)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if pub.Type != want[typ] || pub.Bits != 256 {
			t.Errorf("%s: type %s bits %d", typ, pub.Type, pub.Bits)
		}
		file := filepath.Join(t.TempDir(), "sk.pub")
		os.WriteFile(file, []byte(line+"\n"), 0o600)
		bits, fp, _, ktyp := keygenList(t, file)
		if bits != pub.Bits || fp != pub.Fingerprint || ktyp != pub.Type {
			t.Errorf("%s: got %d %s %s, ssh-keygen %d %s %s", typ, pub.Bits, pub.Fingerprint, pub.Type, bits, fp, ktyp)
		}
	}
}

func testKeyLine(t *testing.T) (typ, blob string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	f := strings.Fields(string(ssh.MarshalAuthorizedKey(k)))
	return f[0], f[1]
}

func rsaLine(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ssh.NewPublicKey(&k.PublicKey)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

func TestParsePublicAccepts(t *testing.T) {
	typ, blob := testKeyLine(t)
	tests := []struct {
		name, input, comment string
	}{
		{"plain", typ + " " + blob + " me@host", "me@host"},
		{"no comment", typ + " " + blob, ""},
		{"surrounding whitespace and CRLF", "\r\n  \t" + typ + " " + blob + " me@host \r\n\r\n", "me@host"},
		{"tabs between fields", typ + "\t" + blob + "\t\tme", "me"},
		{"tab inside comment", typ + " " + blob + " a\tb", "a b"},
		{"everything after the blob is comment", typ + " " + blob + " a  b ssh-rsa AAAA= c", "a  b ssh-rsa AAAA= c"},
		{"control chars sanitized", typ + " " + blob + " evil\x1b[31mred\x00\u202eX", "evil [31mred  X"},
		{"invalid utf8", typ + " " + blob + " \xff", "\uFFFD"},
		{"BOM", "\uFEFF" + typ + " " + blob, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParsePublic(tc.input)
			if err != nil {
				t.Fatal(err)
			}
			if pub.Comment != tc.comment {
				t.Errorf("comment = %q, want %q", pub.Comment, tc.comment)
			}
			want := typ + " " + blob
			if tc.comment != "" {
				want += " " + tc.comment
			}
			if got := pub.AuthorizedLine(); got != want {
				t.Errorf("AuthorizedLine = %q, want %q", got, want)
			}
		})
	}
}

func certLine(t *testing.T) string {
	t.Helper()
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _ := ssh.NewSignerFromKey(caPriv)
	userPub, _, _ := ed25519.GenerateKey(rand.Reader)
	uk, _ := ssh.NewPublicKey(userPub)
	cert := &ssh.Certificate{Key: uk, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
}

func TestParsePublicRefuses(t *testing.T) {
	typ, blob := testKeyLine(t)
	line := typ + " " + blob + " me"
	rawBlob, _ := base64.StdEncoding.DecodeString(blob)
	dsaBlob := base64.StdEncoding.EncodeToString(ssh.Marshal(struct{ Name, P, Q, G, Y string }{"ssh-dss", "\x01", "\x01", "\x01", "\x01"}))
	tests := []struct {
		name  string
		input string
		kind  error
		msg   string // substring of the user message
	}{
		{"empty", "  \n ", ErrEmpty, "paste"},
		{"openssh private", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", ErrPrivateKeyPasted, "must never be pasted or sent anywhere"},
		{"rsa private", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", ErrPrivateKeyPasted, "never"},
		{"pkcs8 private", "-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----", ErrPrivateKeyPasted, "never"},
		{"ec private", "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----", ErrPrivateKeyPasted, "never"},
		{"putty", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n", ErrPrivateKeyPasted, "never"},
		{"openssh body only", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB", ErrPrivateKeyPasted, "never"},
		{"two keys", line + "\n" + line, ErrMultipleKeys, "one key per entry"},
		{"two keys blank between", line + "\r\n\r\n" + typ + " " + blob, ErrMultipleKeys, "one key per entry"},
		{"line break in blob", typ + " " + blob[:20] + "\n" + blob[20:] + " me", ErrLineBreak, "single line"},
		{"line break in comment", line + "\nmore comment", ErrLineBreak, "single line"},
		{"command option", `command="echo hi" ` + line, ErrOptions, "options"},
		{"from option", `from="10.0.0.0/8" ` + line, ErrOptions, "options"},
		{"restrict", "restrict " + line, ErrOptions, "options"},
		{"no-pty,x", "no-pty,no-agent-forwarding " + line, ErrOptions, "options"},
		{"type mismatch", "ssh-rsa " + blob + " me", ErrTypeMismatch, "ssh-rsa"},
		{"bad base64", typ + " " + blob[:len(blob)-3] + "!!! me", ErrMalformed, "base64"},
		{"truncated blob", typ + " " + base64.StdEncoding.EncodeToString(rawBlob[:len(rawBlob)-5]), ErrMalformed, "truncated"},
		{"trailing junk in blob", typ + " " + base64.StdEncoding.EncodeToString(append(rawBlob, 0)), ErrMalformed, "truncated"},
		{"cut off base64", typ + " " + blob[:len(blob)-2], ErrMalformed, "base64"},
		{"type only", typ, ErrMalformed, "missing"},
		{"blob only", blob, ErrMalformed, "type is missing"},
		{"unknown type", "ssh-foo " + blob, ErrUnsupportedType, "ssh-foo"},
		{"garbage", "hello world", ErrUnsupportedType, "not a supported"},
		{"mldsa", "ssh-mldsa-44 " + blob, ErrUnsupportedType, "not supported"},
		{"dsa", "ssh-dss " + dsaBlob + " old", ErrWeakKey, "DSA keys are insecure and disabled by OpenSSH; create a new key with: ssh-keygen -t ed25519"},
		{"rsa 1024", rsaLine(t, 1024), ErrWeakKey, "only 1024 bits"},
		{"certificate", certLine(t), ErrCertificate, "Certificates"},
		{"rfc4716", "---- BEGIN SSH2 PUBLIC KEY ----\nComment: x\nAAAA\n---- END SSH2 PUBLIC KEY ----", ErrUnsupportedFormat, "ssh-keygen -i"},
		{"pem public", "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----", ErrUnsupportedFormat, "PKCS8"},
		{"huge", typ + " " + strings.Repeat("A", 20000), ErrMalformed, "too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParsePublic(tc.input)
			if err == nil {
				t.Fatalf("accepted: %v", pub)
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("%T is not an *InputError", err)
			}
			if !strings.Contains(ie.Message, tc.msg) {
				t.Errorf("message %q does not mention %q", ie.Message, tc.msg)
			}
			if len(blob) > 20 && strings.Contains(ie.Message, blob[10:30]) {
				t.Error("message echoes key material")
			}
		})
	}
}

func TestParsePublicRSA1024FromSSHKeygen(t *testing.T) {
	path := genKeyFile(t, t.TempDir(), "weak", "-t", "rsa", "-b", "1024", "-N", "")
	_, err := ParsePublic(string(mustRead(t, path+".pub")))
	if !errors.Is(err, ErrWeakKey) || !strings.Contains(err.Error(), "ssh-keygen -t ed25519") {
		t.Fatalf("err = %v", err)
	}
	_, err = ParsePrivate(mustRead(t, path), nil)
	if !errors.Is(err, ErrWeakKey) {
		t.Fatalf("private: err = %v", err)
	}
}

func TestParsePrivateMatchesSSHKeygen(t *testing.T) {
	dir := t.TempDir()
	const pass = "correct horse"
	tests := []struct {
		name string
		args []string
		enc  bool
	}{
		{"ed25519", []string{"-t", "ed25519"}, false},
		{"ed25519 enc", []string{"-t", "ed25519"}, true},
		{"ecdsa256", []string{"-t", "ecdsa", "-b", "256"}, false},
		{"ecdsa384 enc", []string{"-t", "ecdsa", "-b", "384"}, true},
		{"ecdsa521 pem", []string{"-t", "ecdsa", "-b", "521", "-m", "PEM"}, false},
		{"ecdsa256 pem enc", []string{"-t", "ecdsa", "-b", "256", "-m", "PEM"}, true},
		{"ecdsa pkcs8", []string{"-t", "ecdsa", "-m", "PKCS8"}, false},
		{"rsa2048", []string{"-t", "rsa", "-b", "2048"}, false},
		{"rsa2048 enc", []string{"-t", "rsa", "-b", "2048"}, true},
		{"rsa pem", []string{"-t", "rsa", "-b", "2048", "-m", "PEM"}, false},
		{"rsa pem enc", []string{"-t", "rsa", "-b", "2048", "-m", "PEM"}, true},
		{"rsa pkcs8", []string{"-t", "rsa", "-b", "2048", "-m", "PKCS8"}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pw := ""
			if tc.enc {
				pw = pass
			}
			path := genKeyFile(t, dir, "k"+strconv.Itoa(i), append(tc.args, "-N", pw, "-C", "c")...)
			_, fp, _, typ := keygenList(t, path+".pub")
			data := mustRead(t, path)

			if tc.enc {
				_, err := ParsePrivate(data, nil)
				if !errors.Is(err, ErrPassphraseRequired) {
					t.Fatalf("no passphrase: err = %v", err)
				}
				_, err = ParsePrivate(data, []byte("wrong horse"))
				if !errors.Is(err, ErrWrongPassphrase) {
					t.Fatalf("wrong passphrase: err = %v", err)
				}
			}
			priv, err := ParsePrivate(data, []byte(pw))
			if err != nil {
				t.Fatal(err)
			}
			if priv.Encrypted != tc.enc {
				t.Errorf("Encrypted = %v", priv.Encrypted)
			}
			if priv.Public.Fingerprint != fp || priv.Public.Type != typ {
				t.Errorf("got %s %s, ssh-keygen %s %s", priv.Public.Fingerprint, priv.Public.Type, fp, typ)
			}
			if !bytes.Equal(priv.Signer.PublicKey().Marshal(), priv.Public.Key.Marshal()) {
				t.Error("signer and public key differ")
			}

			stored, err := priv.StorageBytes()
			if err != nil {
				t.Fatal(err)
			}
			if tc.enc {
				if !bytes.Equal(bytes.TrimSpace(stored), bytes.TrimSpace(data)) {
					t.Error("a passphrase-protected key must be stored as uploaded")
				}
				if _, err := ParsePrivate(stored, nil); !errors.Is(err, ErrPassphraseRequired) {
					t.Errorf("stored bytes of a protected key open without passphrase: %v", err)
				}
			} else if !bytes.HasPrefix(stored, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
				t.Errorf("unprotected key stored as %q", stored[:40])
			}
			back, err := ParsePrivate(stored, []byte(pw))
			if err != nil || back.Public.Fingerprint != fp {
				t.Fatalf("stored bytes do not read back: %v", err)
			}
		})
	}
}

func TestParsePrivatePassphraseIgnoredWhenUnprotected(t *testing.T) {
	path := genKeyFile(t, t.TempDir(), "k", "-t", "ed25519", "-N", "")
	priv, err := ParsePrivate(mustRead(t, path), []byte("unused"))
	if err != nil || priv.Encrypted {
		t.Fatalf("priv=%v err=%v", priv, err)
	}
}

func TestParsePrivateRefuses(t *testing.T) {
	dir := t.TempDir()
	encPKCS8 := mustRead(t, genKeyFile(t, dir, "e8", "-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", "secret pass"))
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalECPrivateKey(p224)
	p224PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p224DER})
	good := mustRead(t, genKeyFile(t, dir, "g", "-t", "ed25519", "-N", ""))
	typ, blob := testKeyLine(t)
	tests := []struct {
		name  string
		input []byte
		kind  error
	}{
		{"empty", nil, ErrEmpty},
		{"public key", []byte(typ + " " + blob + " me\n"), ErrNotPrivateKey},
		{"putty", []byte("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"), ErrUnsupportedFormat},
		{"encrypted pkcs8", encPKCS8, ErrUnsupportedFormat},
		{"weak rsa", weakPEM, ErrWeakKey},
		{"p224", p224PEM, ErrUnsupportedType},
		{"dsa pem", []byte("-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n"), ErrWeakKey},
		{"certificate pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ErrUnsupportedFormat},
		{"garbage", []byte("hello"), ErrMalformed},
		{"truncated", good[:len(good)/2], ErrMalformed},
		{"damaged", bytes.Replace(good, []byte("AAAA"), []byte("ABAA"), 1), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivate(tc.input, nil)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			var ie *InputError
			if !errors.As(err, &ie) || ie.Message == "" {
				t.Fatalf("not an InputError with a message: %v", err)
			}
		})
	}
}

func TestGenerateAndMarshalOpenSSH(t *testing.T) {
	kinds := []struct{ kind, typ string }{{"", "ED25519"}, {"ed25519", "ED25519"}, {"ecdsa", "ECDSA"}, {"rsa", "RSA"}}
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			if k.kind == "rsa" && testing.Short() {
				t.Skip("4096-bit RSA generation is slow")
			}
			priv, err := Generate(k.kind)
			if err != nil {
				t.Fatal(err)
			}
			wantBits := map[string]int{"ED25519": 256, "ECDSA": 256, "RSA": 4096}[k.typ]
			if priv.Public.Type != k.typ || priv.Public.Bits != wantBits {
				t.Fatalf("generated %s/%d", priv.Public.Type, priv.Public.Bits)
			}
			for _, pass := range []string{"", "s3cret pass"} {
				pemBytes, err := MarshalOpenSSH(priv, "gen\ncomment", []byte(pass))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
					t.Fatalf("not an OpenSSH key: %q", pemBytes[:40])
				}
				file := filepath.Join(t.TempDir(), "id")
				if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
					t.Fatal(err)
				}
				derived := strings.TrimSpace(sshKeygen(t, "-y", "-P", pass, "-f", file))
				want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(priv.Public.Key)))
				if !strings.HasPrefix(derived, want) {
					t.Errorf("ssh-keygen -y gives %q, want %q", derived, want)
				}
				back, err := ParsePrivate(pemBytes, []byte(pass))
				if err != nil || back.Public.Fingerprint != priv.Public.Fingerprint || back.Encrypted != (pass != "") {
					t.Fatalf("roundtrip: %v", err)
				}
			}
		})
	}
	if _, err := Generate("dsa"); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("Generate(dsa) err = %v", err)
	}
}

func TestValidName(t *testing.T) {
	tests := map[string]bool{
		"My_office_Laptop": true, "a": true, "A1_": true, strings.Repeat("x", 32): true,
		"": false, strings.Repeat("x", 33): false, "has space": false, "dash-name": false,
		"dot.name": false, "ünïcode": false, "semi;colon": false, "new\nline": false, "x\x00": false,
	}
	for name, ok := range tests {
		err := ValidName(name)
		if (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "letters, digits and underscore only")) {
			t.Errorf("ValidName(%q) error %v", name, err)
		}
	}
}

func FuzzParsePublic(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs6C8OW3mC7w8Yk7Uw2Jm1t/Jk5n3zJxhK8qQ1l3f6Q me@host")
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x")
	f.Add(`command="x" ssh-ed25519 AAAA`)
	f.Add("-----BEGIN OPENSSH PRIVATE KEY-----")
	f.Add("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA==\nssh-ed25519 A")
	f.Fuzz(func(t *testing.T, input string) {
		pub, err := ParsePublic(input)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.Message == "" {
				t.Fatalf("error is not a user-facing InputError: %#v", err)
			}
			return
		}
		line := pub.AuthorizedLine()
		if strings.ContainsAny(line, "\r\n\x00") {
			t.Fatalf("AuthorizedLine has a line break or NUL: %q", line)
		}
		again, err := ParsePublic(line)
		if err != nil || again.Fingerprint != pub.Fingerprint || again.Comment != pub.Comment {
			t.Fatalf("canonical line does not parse back: %q: %v", line, err)
		}
	})
}

func FuzzParsePrivate(f *testing.F) {
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACCq\n-----END OPENSSH PRIVATE KEY-----\n"), []byte(""))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), []byte("pw"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n"), []byte(""))
	f.Fuzz(func(t *testing.T, data, pass []byte) {
		priv, err := ParsePrivate(data, pass)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.Message == "" {
				t.Fatalf("error is not a user-facing InputError: %#v", err)
			}
			return
		}
		if priv.Public == nil || priv.Signer == nil {
			t.Fatal("incomplete key")
		}
	})
}
