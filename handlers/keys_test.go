package handlers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/store"
)

// sshKeygen runs ssh-keygen, skipping the test when it is not installed (failing under
// CI, where it must be).
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

// keygenFile makes a key with ssh-keygen and returns the private key path.
func keygenFile(t *testing.T, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id_key")
	sshKeygen(t, append([]string{"-q", "-f", path, "-C", "me@laptop"}, args...)...)
	return path
}

// keygenFingerprint is the fingerprint `ssh-keygen -lf` prints for a file.
func keygenFingerprint(t *testing.T, path string) string {
	t.Helper()
	f := strings.Fields(sshKeygen(t, "-l", "-f", path))
	if len(f) < 2 || !strings.HasPrefix(f[1], "SHA256:") {
		t.Fatalf("unexpected ssh-keygen -l output %q", f)
	}
	return f[1]
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keysUser signs in a fresh member on a fresh shellgate and opens /keys.
func keysUser(t *testing.T, mutate ...func(*handlers.Config)) (*env, *browser) {
	t.Helper()
	e := newEnv(t, mutate...)
	e.addUser("alice", pw, store.RoleMember)
	b := e.browser()
	b.signIn("alice", pw)
	b.get("/keys")
	return e, b
}

// keyRow finds the row of a key in the list.
func keyRow(t *testing.T, b *browser, name string) *goquery.Selection {
	t.Helper()
	_, doc := b.get("/keys")
	return doc.Find(`tr[data-key="` + name + `"]`)
}

// typeCell is the Type column of a key row: "ED25519 256 bits".
func typeCell(row *goquery.Selection) string {
	cell := row.Find("td").Eq(1)
	return cell.Find(".key-type").Text() + " " + cell.Find(".cell-note").Text()
}

func doc(t *testing.T, resp *http.Response) *goquery.Document {
	t.Helper()
	d, err := goquery.NewDocumentFromReader(strings.NewReader(body(t, resp)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestKeysPageEmptyState(t *testing.T) {
	_, b := keysUser(t)
	resp, d := b.get("/keys")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := d.Find(`nav a[aria-current="page"]`).Text(); !strings.Contains(got, "SSH keys") {
		t.Errorf("current nav entry %q", got)
	}
	if !strings.Contains(d.Find(".empty-state h2").Text(), "No SSH keys yet") {
		t.Error("no empty state")
	}
	for _, action := range []string{"/keys/public", "/keys/upload", "/keys/generate"} {
		if d.Find(`form[action="`+action+`"] input[name="_csrf"]`).Length() != 1 {
			t.Errorf("form %s missing or without CSRF token", action)
		}
	}
	for _, action := range []string{"/keys/public", "/keys/upload"} {
		if enc, _ := d.Find(`form[action="` + action + `"]`).Attr("enctype"); enc != "multipart/form-data" {
			t.Errorf("form %s enctype %q", action, enc)
		}
	}
	hint := d.Find("#pub-name-desc").Text()
	for _, want := range []string{"Letters, digits and underscore only", "1–32", "unique", "login name"} {
		if !strings.Contains(hint, want) {
			t.Errorf("name hint %q does not say %q", hint, want)
		}
	}
	// Without JavaScript, the tab links choose the form.
	_, d = b.get("/keys?add=generate")
	if _, hidden := d.Find(`[data-panel="generate"]`).Attr("hidden"); hidden {
		t.Error("?add=generate does not show the Generate form")
	}
	if _, hidden := d.Find(`[data-panel="public"]`).Attr("hidden"); !hidden {
		t.Error("?add=generate still shows the public key form")
	}
}

func authorizedLine(t *testing.T, pub any, comment string) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

func skLines(t *testing.T) map[string]string {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point := elliptic.Marshal(elliptic.P256(), ec.X, ec.Y) //nolint:staticcheck // SSH wire format
	blobs := map[string][]byte{
		ssh.KeyAlgoSKED25519: ssh.Marshal(struct{ Name, Key, App string }{ssh.KeyAlgoSKED25519, string(edPub), "ssh:"}),
		ssh.KeyAlgoSKECDSA256: ssh.Marshal(struct{ Name, Curve, Key, App string }{
			ssh.KeyAlgoSKECDSA256, "nistp256", string(point), "ssh:"}),
	}
	lines := map[string]string{}
	for typ, blob := range blobs {
		lines[typ] = typ + " " + base64.StdEncoding.EncodeToString(blob) + " yubikey"
	}
	return lines
}

// TestAddPublicKeyAccepts registers every accepted key type by paste and shows the
// type, bits and the fingerprint ssh-keygen -lf prints for the same key.
func TestAddPublicKeyAccepts(t *testing.T) {
	_, b := keysUser(t)
	type tc struct {
		name, line, typ string
		bits            int
	}
	var cases []tc
	for _, k := range []struct {
		name, typ string
		args      []string
		bits      int
	}{
		{"ed", "ED25519", []string{"-t", "ed25519"}, 256},
		{"ec256", "ECDSA", []string{"-t", "ecdsa", "-b", "256"}, 256},
		{"ec384", "ECDSA", []string{"-t", "ecdsa", "-b", "384"}, 384},
		{"ec521", "ECDSA", []string{"-t", "ecdsa", "-b", "521"}, 521},
		{"rsa2048", "RSA", []string{"-t", "rsa", "-b", "2048"}, 2048},
	} {
		path := keygenFile(t, append(k.args, "-N", "")...)
		cases = append(cases, tc{k.name, string(read(t, path+".pub")), k.typ, k.bits})
	}
	sk := skLines(t)
	cases = append(cases,
		tc{"sk_ed", sk[ssh.KeyAlgoSKED25519], "ED25519-SK", 256},
		tc{"sk_ec", sk[ssh.KeyAlgoSKECDSA256], "ECDSA-SK", 256})

	for _, c := range cases {
		resp := b.postMultipart("/keys/public", url.Values{"name": {c.name}, "public_key": {c.line}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: status %d: %s", c.name, resp.StatusCode, doc(t, resp).Find(".field-error,.field-warning").Text())
		}
		resp.Body.Close()
		file := filepath.Join(t.TempDir(), "k.pub")
		os.WriteFile(file, []byte(c.line), 0o600)
		want := keygenFingerprint(t, file)
		row := keyRow(t, b, c.name)
		if got := row.Find(`[data-testid="fingerprint"]`).Text(); got != want {
			t.Errorf("%s: fingerprint %q, ssh-keygen says %q", c.name, got, want)
		}
		if got := typeCell(row); got != fmt.Sprintf("%s %d bits", c.typ, c.bits) {
			t.Errorf("%s: type cell %q", c.name, got)
		}
		if got := strings.TrimSpace(row.Find(`[data-testid="private"]`).Text()); got != "Not held" {
			t.Errorf("%s: private cell %q", c.name, got)
		}
	}
	// Canonical re-serialisation: surrounding whitespace and CRLF are gone, the comment kept.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	line := authorizedLine(t, pub, "me@host")
	resp := b.postMultipart("/keys/public", url.Values{"name": {"spaced"}, "public_key": {"\r\n  " + strings.Replace(line, " ", "\t", 1) + "  \r\n"}})
	resp.Body.Close()
	k, err := b.env.store.KeyByFingerprint(context.Background(), 1, ssh.FingerprintSHA256(mustPub(t, pub)))
	if err != nil {
		t.Fatal(err)
	}
	if k.PublicKey+" "+k.Comment != line {
		t.Errorf("stored %q + %q, want %q", k.PublicKey, k.Comment, line)
	}
}

func mustPub(t *testing.T, k any) ssh.PublicKey {
	p, err := ssh.NewPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAddPublicKeyRefuses: every refused input gets its own message next to the
// field, and nothing is stored.
func TestAddPublicKeyRefuses(t *testing.T) {
	e, b := keysUser(t)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	line := authorizedLine(t, pub, "me")
	f := strings.Fields(line)
	typ, blob := f[0], f[1]
	weakRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	dsaBlob := base64.StdEncoding.EncodeToString(ssh.Marshal(struct{ Name, P, Q, G, Y string }{"ssh-dss", "\x01", "\x01", "\x01", "\x01"}))
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	tests := []struct {
		name, keyName, input, field, want string
	}{
		{"empty", "k", "", "pub-key", "paste"},
		{"dsa", "k", "ssh-dss " + dsaBlob + " old", "pub-key", "DSA keys are insecure and disabled by OpenSSH; create a new key with: ssh-keygen -t ed25519"},
		{"rsa 1024", "k", authorizedLine(t, &weakRSA.PublicKey, ""), "pub-key", "ssh-keygen -t ed25519"},
		{"options prefix", "k", `command="echo hi" ` + line, "pub-key", "options"},
		{"two keys", "k", line + "\n" + line, "pub-key", "one key per entry"},
		{"embedded newline", "k", typ + " " + blob[:20] + "\n" + blob[20:], "pub-key", "single line"},
		{"type mismatch", "k", "ssh-rsa " + blob, "pub-key", "ssh-rsa"},
		{"trailing garbage in blob", "k", typ + " " + blob + "AAAA", "pub-key", ""},
		{"not a key", "k", "hello world", "pub-key", "not a supported"},
		{"name empty", "", line, "pub-name", "letters, digits and underscore only"},
		{"name too long", strings.Repeat("a", 33), line, "pub-name", "1–32"},
		{"name with dash", "my-laptop", line, "pub-name", "letters, digits and underscore only"},
		{"name with space", "my laptop", line, "pub-name", "letters, digits and underscore only"},
		{"name unicode", "clé", line, "pub-name", "letters, digits and underscore only"},
		{"name dot dot", "../x", line, "pub-name", "letters, digits and underscore only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.postMultipart("/keys/public", url.Values{"name": {tc.keyName}, "public_key": {tc.input}})
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", resp.StatusCode)
			}
			d := doc(t, resp)
			msg := d.Find("#" + tc.field + "-desc.field-error").Text()
			if msg == "" || !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.want)) {
				t.Errorf("message next to %s: %q, want it to say %q", tc.field, msg, tc.want)
			}
			if _, hidden := d.Find(`[data-panel="public"]`).Attr("hidden"); hidden {
				t.Error("the form with the error is hidden")
			}
			if v, _ := d.Find("#pub-name").Attr("value"); v != tc.keyName {
				t.Errorf("typed name not kept: %q", v)
			}
		})
	}

	// The name must be unique per user; the message says which name.
	resp := b.postMultipart("/keys/public", url.Values{"name": {"laptop"}, "public_key": {line}})
	resp.Body.Close()
	ecLine := authorizedLine(t, &ecKey.PublicKey, "")
	resp = b.postMultipart("/keys/public", url.Values{"name": {"laptop"}, "public_key": {ecLine}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(doc(t, resp).Find("#pub-name-desc").Text(), "already have a key named laptop") {
		t.Errorf("same name twice: status %d", resp.StatusCode)
	}
	// The same key under another name: refused, naming the existing entry.
	resp = b.postMultipart("/keys/public", url.Values{"name": {"laptop2"}, "public_key": {line}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(doc(t, resp).Find("#pub-key-desc").Text(), "already registered as laptop") {
		t.Errorf("same key twice: status %d", resp.StatusCode)
	}
	// Paste and file at once is ambiguous.
	resp = b.postMultipart("/keys/public", url.Values{"name": {"both"}, "public_key": {ecLine}},
		file{"public_key_file", "id.pub", []byte(ecLine)})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc(t, resp).Find("#pub-key-desc").Text(), "not both") {
		t.Errorf("paste and file: status %d", resp.StatusCode)
	}
	keys, _ := e.store.ListKeys(context.Background(), 1)
	if len(keys) != 1 {
		t.Fatalf("%d keys stored, want only laptop", len(keys))
	}
}

// TestPrivateKeyPastedAsPublicIsRefusedAndNotEchoed: someone pastes their private key
// into the public key field (or picks id_ed25519 instead of id_ed25519.pub). It is
// refused with a warning, and the response does not carry it back to the browser.
func TestPrivateKeyPastedAsPublicIsRefusedAndNotEchoed(t *testing.T) {
	e, b := keysUser(t)
	path := keygenFile(t, "-t", "ed25519", "-N", "")
	priv := read(t, path)
	body64 := strings.Split(string(priv), "\n")[1]
	for _, send := range []func() *http.Response{
		func() *http.Response {
			return b.postMultipart("/keys/public", url.Values{"name": {"oops"}, "public_key": {string(priv)}})
		},
		func() *http.Response {
			return b.postMultipart("/keys/public", url.Values{"name": {"oops"}}, file{"public_key_file", "id_ed25519", priv})
		},
	} {
		resp := send()
		html := body(t, resp)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if strings.Contains(html, body64) || strings.Contains(html, "BEGIN OPENSSH PRIVATE KEY") {
			t.Fatal("the response echoes the private key")
		}
		d, _ := goquery.NewDocumentFromReader(strings.NewReader(html))
		warn := d.Find(`#pub-key-desc.field-warning[role="alert"]`).Text()
		if !strings.Contains(warn, "must never be pasted or sent anywhere") {
			t.Fatalf("warning %q", warn)
		}
	}
	if keys, _ := e.store.ListKeys(context.Background(), 1); len(keys) != 0 {
		t.Fatal("a private key pasted as public was stored")
	}
}

// TestAddPublicKeyByFile: the .pub file chosen in the form, as ssh-keygen wrote it.
func TestAddPublicKeyByFile(t *testing.T) {
	_, b := keysUser(t)
	path := keygenFile(t, "-t", "ed25519", "-N", "")
	resp := b.postMultipart("/keys/public", url.Values{"name": {"from_file"}}, file{"public_key_file", "id_ed25519.pub", read(t, path+".pub")})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d", resp.StatusCode)
	}
	resp.Body.Close()
	_, d := b.get("/keys")
	if flash := d.Find(".flash-ok").Text(); !strings.Contains(flash, "from_file") {
		t.Errorf("flash %q", flash)
	}
	row := d.Find(`tr[data-key="from_file"]`)
	if got, want := row.Find(`[data-testid="fingerprint"]`).Text(), keygenFingerprint(t, path+".pub"); got != want {
		t.Errorf("fingerprint %q, ssh-keygen -lf %q", got, want)
	}
	if got := row.Find(".key-comment").Text(); got != "me@laptop" {
		t.Errorf("comment %q", got)
	}
	if _, ok := row.Find("code[data-copy]").Attr("data-copy"); !ok {
		t.Error("fingerprint has no copy button hook")
	}
	// Too large a file is refused before parsing.
	resp = b.postMultipart("/keys/public", url.Values{"name": {"huge"}}, file{"public_key_file", "x.pub", bytes.Repeat([]byte("A"), 100<<10)})
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("100 KB file: status %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// pemKey writes k in a PEM format ssh-keygen does not write by default.
func pemKey(t *testing.T, typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestUploadPrivateKey(t *testing.T) {
	e, b := keysUser(t)
	ctx := context.Background()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	plainPath := keygenFile(t, "-t", "ed25519", "-N", "")
	protPath := keygenFile(t, "-t", "ecdsa", "-N", "correct horse")
	rsaOpenSSH := keygenFile(t, "-t", "rsa", "-b", "3072", "-N", "")

	cases := []struct {
		name      string
		file      []byte
		pass      string
		protected bool
		want      string // fingerprint
	}{
		{"openssh_ed25519", read(t, plainPath), "", false, keygenFingerprint(t, plainPath)},
		{"openssh_rsa", read(t, rsaOpenSSH), "ignored", false, keygenFingerprint(t, rsaOpenSSH)},
		{"pem_rsa_pkcs1", pemKey(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "", false, ssh.FingerprintSHA256(mustPub(t, &rsaKey.PublicKey))},
		{"pem_ec_sec1", pemKey(t, "EC PRIVATE KEY", ecDER), "", false, ssh.FingerprintSHA256(mustPub(t, &ecKey.PublicKey))},
		{"pem_ed_pkcs8", pemKey(t, "PRIVATE KEY", edDER), "", false, ssh.FingerprintSHA256(mustPub(t, edKey.Public()))},
		{"protected", read(t, protPath), "correct horse", true, keygenFingerprint(t, protPath)},
	}
	for _, c := range cases {
		resp := b.postMultipart("/keys/upload", url.Values{"name": {c.name}, "passphrase": {c.pass}}, file{"private_key_file", "id", c.file})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: status %d: %s", c.name, resp.StatusCode, doc(t, resp).Find(".field-error").Text())
		}
		resp.Body.Close()
		row := keyRow(t, b, c.name)
		if got := row.Find(`[data-testid="fingerprint"]`).Text(); got != c.want {
			t.Errorf("%s: fingerprint %q, want %q", c.name, got, c.want)
		}
		wantCell := "Held, encrypted"
		if c.protected {
			wantCell = "Passphrase-protected"
		}
		if got := row.Find(`[data-testid="private"] .badge`).Text(); got != wantCell {
			t.Errorf("%s: private cell %q, want %q", c.name, got, wantCell)
		}
	}

	// The protected key is stored as uploaded: still protected, the passphrase nowhere.
	k, err := e.store.KeyByFingerprint(ctx, 1, keygenFingerprint(t, protPath))
	if err != nil {
		t.Fatal(err)
	}
	k, _ = e.store.KeyByID(ctx, 1, k.ID)
	if !k.PrivateProtected || k.PrivateOrigin != store.PrivateUploaded {
		t.Fatalf("protected key stored as %+v", k)
	}
	plain, err := e.keyring.Open(k.PrivateSealed, []byte(fmt.Sprintf("shellgate/ssh_key/v1:%d:%s:%s", k.UserID, k.Name, k.Fingerprint)))
	if err != nil {
		t.Fatalf("open with the documented additional data: %v", err)
	}
	if !bytes.Equal(bytes.TrimSpace(plain), bytes.TrimSpace(read(t, protPath))) {
		t.Error("the sealed bytes are not the uploaded protected file")
	}
	if _, err := ssh.ParseRawPrivateKey(plain); err == nil {
		t.Error("the stored key opens without its passphrase")
	}
	if bytes.Contains(plain, []byte("correct horse")) {
		t.Error("the passphrase is stored")
	}
}

func TestUploadPrivateKeyRefuses(t *testing.T) {
	_, b := keysUser(t)
	protPath := keygenFile(t, "-t", "ed25519", "-N", "correct horse")
	weakPath := keygenFile(t, "-t", "rsa", "-b", "1024", "-N", "")
	dupPath := keygenFile(t, "-t", "ed25519", "-N", "")
	resp := b.postMultipart("/keys/public", url.Values{"name": {"already"}}, file{"public_key_file", "id.pub", read(t, dupPath+".pub")})
	resp.Body.Close()

	tests := []struct {
		name, keyName string
		file          []byte
		pass, field   string
		want          string
		status        int
	}{
		{"no passphrase", "k", read(t, protPath), "", "up-pass", "protected by a passphrase", 422},
		{"wrong passphrase", "k", read(t, protPath), "not the right one 42", "up-pass", "The passphrase is wrong.", 422},
		{"public key file", "k", read(t, protPath+".pub"), "", "up-file", "This is a public key", 422},
		{"weak rsa", "k", read(t, weakPath), "", "up-file", "ssh-keygen -t ed25519", 422},
		{"no file", "k", nil, "", "up-file", "No key given", 422},
		{"garbage", "k", []byte("hello"), "", "up-file", "not a private key file", 422},
		{"bad name", "a-b", read(t, protPath), "correct horse", "up-name", "letters, digits and underscore only", 422},
		{"same key as an existing one", "again", read(t, dupPath), "", "up-file", "already registered as already", 409},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var files []file
			if tc.file != nil {
				files = append(files, file{"private_key_file", "id_ed25519", tc.file})
			}
			resp := b.postMultipart("/keys/upload", url.Values{"name": {tc.keyName}, "passphrase": {tc.pass}}, files...)
			html := body(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			d, _ := goquery.NewDocumentFromReader(strings.NewReader(html))
			if msg := d.Find("#" + tc.field + "-desc.field-error").Text(); !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.want)) {
				t.Errorf("message next to %s: %q, want %q", tc.field, msg, tc.want)
			}
			if _, hidden := d.Find(`[data-panel="upload"]`).Attr("hidden"); hidden {
				t.Error("the upload form with the error is hidden")
			}
			if tc.pass != "" && strings.Contains(html, tc.pass) {
				t.Error("the passphrase is echoed back")
			}
			if tc.file != nil && len(tc.file) > 80 && strings.Contains(html, string(tc.file[40:80])) {
				t.Error("the key file is echoed back")
			}
		})
	}
}

// generate makes a key through the form and returns its id from the redirect.
func generate(t *testing.T, b *browser, name, kind string) int64 {
	t.Helper()
	resp := b.post("/keys/generate", url.Values{"name": {name}, "kind": {kind}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("generate %s: status %d", kind, resp.StatusCode)
	}
	var id int64
	if _, err := fmt.Sscanf(resp.Header.Get("Location"), "/keys?generated=%d", &id); err != nil {
		t.Fatalf("redirect %q", resp.Header.Get("Location"))
	}
	return id
}

func download(b *browser, id int64, pass string) *http.Response {
	return b.post(fmt.Sprintf("/keys/%d/download", id), url.Values{"passphrase": {pass}, "passphrase_confirm": {pass}})
}

func TestGenerateAndDownloadOnce(t *testing.T) {
	e, b := keysUser(t)
	for _, tc := range []struct{ kind, typ, bits string }{{"", "ED25519", "256"}, {"ecdsa", "ECDSA", "256"}, {"rsa", "RSA", "4096"}} {
		name := "gen_" + tc.typ
		id := generate(t, b, name, tc.kind)
		_, d := b.get(fmt.Sprintf("/keys?generated=%d", id))
		fresh := d.Find(`[data-testid="fresh-key"]`)
		if fresh.Length() != 1 || !strings.Contains(fresh.Text(), name) {
			t.Fatalf("%s: no download panel", name)
		}
		row := d.Find(`tr[data-key="` + name + `"]`)
		if got := typeCell(row); got != tc.typ+" "+tc.bits+" bits" {
			t.Errorf("%s: type %q", name, got)
		}
		fp := row.Find(`[data-testid="fingerprint"]`).Text()

		resp := download(b, id, "")
		file := []byte(body(t, resp))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: download status %d", name, resp.StatusCode)
		}
		if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="`+name+`"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		if !bytes.HasPrefix(file, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
			t.Fatalf("%s: not an OpenSSH key file", name)
		}
		path := filepath.Join(t.TempDir(), name)
		os.WriteFile(path, file, 0o600)
		if got := keygenFingerprint(t, path); got != fp {
			t.Errorf("%s: downloaded key has fingerprint %s, the page shows %s", name, got, fp)
		}
		if pub := sshKeygen(t, "-y", "-f", path); !strings.HasSuffix(strings.TrimSpace(pub), "alice@shellgate") {
			t.Errorf("%s: comment in %q", name, pub)
		}

		resp = download(b, id, "")
		html := body(t, resp)
		if resp.StatusCode != http.StatusGone || !strings.Contains(html, "downloaded already") {
			t.Fatalf("%s: second download: status %d", name, resp.StatusCode)
		}
		if resp.Header.Get("Content-Disposition") != "" || strings.Contains(html, "PRIVATE KEY-----") {
			t.Fatal("the second download returned a key")
		}
		_, d = b.get(fmt.Sprintf("/keys?generated=%d", id))
		if d.Find(`[data-testid="fresh-key"]`).Length() != 0 {
			t.Errorf("%s: the download panel is still offered", name)
		}
	}
	evs, _ := e.store.ListEvents(context.Background(), store.EventFilter{Kind: "key.download"})
	var ok, refused int
	for _, ev := range evs {
		if ev.OK {
			ok++
		} else {
			refused++
		}
	}
	if ok != 3 || refused != 3 {
		t.Errorf("audit: %d downloads and %d refusals, want 3 and 3", ok, refused)
	}
}

func TestDownloadWithPassphrase(t *testing.T) {
	_, b := keysUser(t)
	id := generate(t, b, "protected_dl", "ed25519")
	resp := b.post(fmt.Sprintf("/keys/%d/download", id), url.Values{"passphrase": {"one"}, "passphrase_confirm": {"two"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc(t, resp).Find(`[data-testid="fresh-key"]`).Text(), "differ") {
		t.Fatalf("mismatched passphrases: status %d", resp.StatusCode)
	}
	// The typo did not cost the one download.
	resp = download(b, id, "a good passphrase")
	file := []byte(body(t, resp))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := ssh.ParseRawPrivateKey(file); err == nil {
		t.Fatal("the file opens without the passphrase")
	}
	if _, err := ssh.ParseRawPrivateKeyWithPassphrase(file, []byte("a good passphrase")); err != nil {
		t.Fatalf("the file does not open with its passphrase: %v", err)
	}
}

// TestConcurrentDownloadsExactlyOneWins: two tabs (or an attacker racing the owner)
// post the download at the same moment; only one gets the key.
func TestConcurrentDownloadsExactlyOneWins(t *testing.T) {
	_, b := keysUser(t)
	id := generate(t, b, "raced", "ed25519")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := download(b, id, "")
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 1 || codes[http.StatusGone] != 7 {
		t.Fatalf("status counts %v, want one 200 and seven 410", codes)
	}
}

func TestDownloadWindowCloses(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	_, b := keysUser(t, func(c *handlers.Config) { c.Now = clock })
	id := generate(t, b, "late", "")
	mu.Lock()
	now = now.Add(10*time.Minute + time.Second)
	mu.Unlock()
	_, d := b.get(fmt.Sprintf("/keys?generated=%d", id))
	if d.Find(`[data-testid="fresh-key"]`).Length() != 0 {
		t.Error("download offered after the window")
	}
	if resp := download(b, id, ""); resp.StatusCode != http.StatusGone {
		t.Fatalf("download after the window: %d", resp.StatusCode)
	}
}

func TestGenerateRefuses(t *testing.T) {
	_, b := keysUser(t)
	generate(t, b, "taken", "")
	for _, tc := range []struct{ name, kind, field, want string }{
		{"taken", "", "gen-name", "already have a key named taken"},
		{"bad-name", "", "gen-name", "letters, digits and underscore only"},
		{"ok", "dsa", "", "Choose Ed25519"},
	} {
		resp := b.post("/keys/generate", url.Values{"name": {tc.name}, "kind": {tc.kind}})
		d := doc(t, resp)
		if resp.StatusCode < 400 {
			t.Fatalf("%s/%s: status %d", tc.name, tc.kind, resp.StatusCode)
		}
		sel := "#" + tc.field + "-desc"
		if tc.field == "" {
			sel = ".choice .field-error"
		}
		if msg := d.Find(sel).Text(); !strings.Contains(msg, tc.want) {
			t.Errorf("%s/%s: message %q, want %q", tc.name, tc.kind, msg, tc.want)
		}
	}
}

// TestKeysOfAnotherUserAre404: mallory posts to alice's key ids and gets 404 and no
// data, and alice's key is untouched.
func TestKeysOfAnotherUserAre404(t *testing.T) {
	e, alice := keysUser(t)
	id := generate(t, alice, "secret_key", "")
	e.addUser("mallory", pw, store.RoleMember)
	m := e.browser()
	m.signIn("mallory", pw)
	m.get("/keys")
	for _, path := range []string{fmt.Sprintf("/keys/%d/download", id), fmt.Sprintf("/keys/%d/delete", id), "/keys/abc/delete", "/keys/0/download"} {
		resp := m.post(path, url.Values{})
		html := body(t, resp)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
		if strings.Contains(html, "secret_key") || strings.Contains(html, "PRIVATE KEY") {
			t.Errorf("%s: the response names or returns alice's key", path)
		}
	}
	_, d := m.get(fmt.Sprintf("/keys?generated=%d", id))
	if d.Find(`[data-testid="fresh-key"]`).Length() != 0 || strings.Contains(d.Text(), "secret_key") {
		t.Error("mallory sees alice's key on /keys")
	}
	if resp := download(alice, id, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's download after mallory's attempts: %d", resp.StatusCode)
	}
}

func TestDeleteKey(t *testing.T) {
	e, b := keysUser(t)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	resp := b.postMultipart("/keys/public", url.Values{"name": {"old_laptop"}, "public_key": {authorizedLine(t, pub, "")}})
	resp.Body.Close()
	row := keyRow(t, b, "old_laptop")
	confirm, _ := row.Find("button[data-confirm]").Attr("data-confirm")
	if !strings.Contains(confirm, "old_laptop") {
		t.Errorf("confirmation %q does not name the key", confirm)
	}
	action, _ := row.Find("form").Attr("action")
	resp = b.post(action, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	_, d := b.get("/keys")
	if d.Find(`tr[data-key="old_laptop"]`).Length() != 0 || !strings.Contains(d.Find(".flash-ok").Text(), "old_laptop deleted") {
		t.Error("key still listed or no confirmation")
	}
	if resp := b.post(action, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second delete: %d", resp.StatusCode)
	}
	evs, _ := e.store.ListEvents(context.Background(), store.EventFilter{Kind: "key.delete"})
	if len(evs) != 1 || evs[0].Target != "old_laptop" || !evs[0].OK {
		t.Errorf("audit: %+v", evs)
	}
}

// TestKeyFormsNeedCSRF: a cross-site page cannot add, generate, download or delete.
func TestKeyFormsNeedCSRF(t *testing.T) {
	_, b := keysUser(t)
	id := generate(t, b, "csrf", "")
	for _, path := range []string{"/keys/public", "/keys/upload", "/keys/generate", fmt.Sprintf("/keys/%d/download", id), fmt.Sprintf("/keys/%d/delete", id)} {
		resp := b.postMultipart(path, url.Values{"_csrf": {"forged"}, "name": {"x"}})
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s without a valid token: %d", path, resp.StatusCode)
		}
	}
	if resp := download(b, id, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("the forged requests used up the download: %d", resp.StatusCode)
	}
}

func TestKeyFormBodyIsBounded(t *testing.T) {
	_, b := keysUser(t)
	resp := b.postMultipart("/keys/public", url.Values{"name": {"big"}}, file{"public_key_file", "x.pub", bytes.Repeat([]byte("A"), 1<<20)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB form: %d, want 413", resp.StatusCode)
	}
}

// TestTamperedPrivateKeyIsRefused: someone with write access to the database flips one
// byte of a sealed private key, or moves a sealed key into another row. shellgate
// detects it, says so in plain words, and never uses or returns the key.
func TestTamperedPrivateKeyIsRefused(t *testing.T) {
	var logs syncBuffer
	e, b := keysUser(t, func(c *handlers.Config) { c.Logger = newTestLogger(&logs) })
	ctx := context.Background()
	flipped := generate(t, b, "flipped", "")
	var sealed []byte
	if err := e.store.DB().QueryRow(`SELECT private_sealed FROM ssh_keys WHERE id = ?`, flipped).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	sealed[len(sealed)/2] ^= 0x01
	if _, err := e.store.DB().Exec(`UPDATE ssh_keys SET private_sealed = ? WHERE id = ?`, sealed, flipped); err != nil {
		t.Fatal(err)
	}
	resp := download(b, flipped, "")
	html := body(t, resp)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.Header.Get("Content-Disposition") != "" || strings.Contains(html, "PRIVATE KEY-----") {
		t.Fatal("a tampered key was returned")
	}
	d, _ := goquery.NewDocumentFromReader(strings.NewReader(html))
	if msg := d.Find(`[data-testid="keys-error"]`).Text(); !strings.Contains(msg, "failed its integrity check") || !strings.Contains(msg, "refused to use it") {
		t.Fatalf("message %q", msg)
	}

	// A valid ciphertext of another row does not open here either: the additional data
	// binds it to its owner, name and fingerprint.
	donor := generate(t, b, "donor", "")
	moved := generate(t, b, "moved", "")
	if _, err := e.store.DB().Exec(`UPDATE ssh_keys SET private_sealed = (SELECT private_sealed FROM ssh_keys WHERE id = ?) WHERE id = ?`, donor, moved); err != nil {
		t.Fatal(err)
	}
	resp = download(b, moved, "")
	if html := body(t, resp); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(html, "integrity check") {
		t.Fatalf("moved ciphertext: status %d", resp.StatusCode)
	}
	evs, _ := e.store.ListEvents(ctx, store.EventFilter{Kind: "key.download"})
	for _, ev := range evs {
		if ev.OK {
			t.Errorf("audit records a successful download of %s", ev.Target)
		}
	}
	if n := strings.Count(logs.String(), "stored private key refused"); n != 2 {
		t.Errorf("%d log lines about the refused keys, want 2:\n%s", n, logs.String())
	}
}

// TestNoPrivateKeyMaterialAtRest: after uploading and generating private keys, the
// SQLite file and its WAL contain no trace of them: not the PEM, not its base64 body,
// not the raw key bytes. Nor do the logs or the audit log.
func TestNoPrivateKeyMaterialAtRest(t *testing.T) {
	var logs syncBuffer
	e, b := keysUser(t, func(c *handlers.Config) { c.Logger = newTestLogger(&logs) })
	ctx := context.Background()

	path := keygenFile(t, "-t", "ed25519", "-N", "")
	uploaded := read(t, path)
	resp := b.postMultipart("/keys/upload", url.Values{"name": {"uploaded"}}, file{"private_key_file", "id_ed25519", uploaded})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	// A private key pasted as public (refused) must not leave traces either.
	b.postMultipart("/keys/public", url.Values{"name": {"oops"}, "public_key": {string(uploaded)}}).Body.Close()

	id := generate(t, b, "generated", "")
	resp = download(b, id, "")
	generated := []byte(body(t, resp))

	var secrets [][]byte
	for _, pemFile := range [][]byte{uploaded, generated} {
		secrets = append(secrets, bytes.TrimSpace(pemFile))
		blk, _ := pem.Decode(pemFile)
		secrets = append(secrets, blk.Bytes)
		b64 := base64.StdEncoding.EncodeToString(blk.Bytes)
		for i := 0; i+64 <= len(b64); i += 64 {
			secrets = append(secrets, []byte(b64[i:i+64])) // each line of the PEM body
		}
		raw, err := ssh.ParseRawPrivateKey(pemFile)
		if err != nil {
			t.Fatal(err)
		}
		seed := raw.(*ed25519.PrivateKey).Seed()
		secrets = append(secrets, seed, []byte(base64.StdEncoding.EncodeToString(seed)), []byte(fmt.Sprintf("%x", seed)))
	}
	evs, _ := e.store.ListEvents(ctx, store.EventFilter{Limit: 1000})
	var audit bytes.Buffer
	for _, ev := range evs {
		fmt.Fprintf(&audit, "%v\n", ev)
	}

	// Read while the database is open, so the WAL still holds the recent pages.
	files := map[string][]byte{"log": []byte(logs.String()), "audit": audit.Bytes()}
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(e.dbPath + suffix)
		if err != nil {
			t.Fatalf("read database%s: %v", suffix, err)
		}
		files["db"+suffix] = data
	}
	if len(files["db-wal"]) == 0 {
		t.Fatal("empty WAL: the test would prove nothing about it")
	}
	for name, data := range files {
		for i, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("%s contains private key material (#%d, %d bytes)", name, i, len(s))
			}
		}
	}
	// And the public parts are there, so the scan did look at the right bytes.
	k, _ := e.store.KeyByID(ctx, 1, id)
	if !bytes.Contains(append(files["db"], files["db-wal"]...), []byte(k.Fingerprint)) {
		t.Fatal("the fingerprint is not in the database files: wrong files scanned")
	}
}
