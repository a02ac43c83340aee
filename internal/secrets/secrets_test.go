package secrets

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newRing(t *testing.T) (*Keyring, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	kr, err := LoadOrCreateMaster(dir)
	if err != nil {
		t.Fatal(err)
	}
	return kr, dir
}

func TestCreateModesAndReload(t *testing.T) {
	kr, dir := newRing(t)
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("master.key mode = %04o, want 0600", got)
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := dst.Mode().Perm(); got != 0o700 {
		t.Errorf("data dir mode = %04o, want 0700", got)
	}
	again, err := LoadOrCreateMaster(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kr.Derive("x", 32), again.Derive("x", 32)) {
		t.Error("reloaded key ring derives a different key")
	}
	other, _ := newRing(t)
	if bytes.Equal(kr.Derive("x", 32), other.Derive("x", 32)) {
		t.Error("two fresh key rings derive the same key: not random")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only master.key (temp file left behind?)", len(entries))
	}
}

// TestRefusesUnprotectedKeyFile: a master key readable by other local users
// lets any of them decrypt every stored private key, so shellgate must refuse
// to start rather than use it (as OpenSSH refuses an unprotected identity).
func TestRefusesUnprotectedKeyFile(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o666, 0o700} {
		_, dir := newRing(t)
		path := filepath.Join(dir, FileName)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateMaster(dir)
		if mode&0o077 == 0 {
			if err != nil {
				t.Errorf("mode %04o: unexpected error %v", mode, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnprotectedKeyFile) {
			t.Errorf("mode %04o: err = %v, want ErrUnprotectedKeyFile", mode, err)
			continue
		}
		if !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), "too open") {
			t.Errorf("mode %04o: message not helpful: %v", mode, err)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load on empty dir: %v, want fs.ErrNotExist", err)
	}
}

func TestBadKeyFile(t *testing.T) {
	tests := map[string]string{
		"empty":         "",
		"only comments": "# nothing\n\n",
		"short id":      "abc AAAA\n",
		"bad base64":    "0000000a !!!!\n",
		"short key":     "0000000a AAAA\n",
		"three fields":  "0000000a AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= extra\n",
		"duplicate id":  "0000000a AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n0000000a AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"non hex id":    "0000000g AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"negative id":   "-0000001 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateMaster(dir); !errors.Is(err, ErrBadKeyFile) {
				t.Fatalf("err = %v, want ErrBadKeyFile", err)
			}
			// A malformed file must never be silently replaced by a new key.
			got, _ := os.ReadFile(filepath.Join(dir, FileName))
			if string(got) != content {
				t.Fatal("malformed key file was rewritten")
			}
		})
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr, _ := newRing(t)
	for _, pt := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("secret"), 1000)} {
		ct, err := kr.Seal(pt, []byte("key:42"))
		if err != nil {
			t.Fatal(err)
		}
		if ct[0] != formatV1 {
			t.Fatalf("version byte = %d", ct[0])
		}
		if len(pt) > 3 && bytes.Contains(ct, pt) {
			t.Fatal("plaintext visible in ciphertext")
		}
		got, err := kr.Open(ct, []byte("key:42"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("roundtrip = %q, want %q", got, pt)
		}
	}
	a, _ := kr.Seal([]byte("same"), nil)
	b, _ := kr.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are equal: nonce not random")
	}
}

// TestFlipAnyByte: a stored ciphertext modified in the database (a flipped
// bit, or an attacker editing it) must never decrypt to something else.
func TestFlipAnyByte(t *testing.T) {
	kr, _ := newRing(t)
	ad := []byte("key:7")
	ct, err := kr.Seal([]byte("-----BEGIN OPENSSH PRIVATE KEY-----"), ad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(ct)
			bad[i] ^= mask
			_, err := kr.Open(bad, ad)
			want := ErrTampered
			if i >= 1 && i < headerSize {
				// A damaged key id names a key we do not have.
				want = ErrUnknownKey
			}
			if !errors.Is(err, want) {
				t.Fatalf("byte %d ^ %#x: err = %v, want %v", i, mask, err, want)
			}
		}
	}
	for n := range len(ct) {
		if _, err := kr.Open(ct[:n], ad); !errors.Is(err, ErrTampered) {
			t.Fatalf("truncated to %d: err = %v", n, err)
		}
	}
	if _, err := kr.Open(append(bytes.Clone(ct), 0), ad); !errors.Is(err, ErrTampered) {
		t.Fatalf("extended: err = %v", err)
	}
	if ErrTampered.Error() != "stored secret failed its integrity check" {
		t.Errorf("ErrTampered message = %q", ErrTampered)
	}
}

// TestSwappedRows: copying the ciphertext of key 41 into the row of key 42
// must not make key 42 open with key 41's secret.
func TestSwappedRows(t *testing.T) {
	kr, _ := newRing(t)
	ct, _ := kr.Seal([]byte("secret of 41"), []byte("key:41"))
	for _, ad := range []string{"key:42", "key:4", "key:410", ""} {
		if _, err := kr.Open(ct, []byte(ad)); !errors.Is(err, ErrTampered) {
			t.Errorf("AD %q: err = %v, want ErrTampered", ad, err)
		}
	}
}

func TestRotation(t *testing.T) {
	kr, dir := newRing(t)
	oldID := kr.PrimaryID()
	oldDerived := kr.Derive("cookie-hash", 64)
	ct1, _ := kr.Seal([]byte("before"), []byte("key:1"))
	if err := kr.Rotate(dir); err != nil {
		t.Fatal(err)
	}
	if kr.PrimaryID() == oldID {
		t.Fatal("primary id unchanged after Rotate")
	}
	if bytes.Equal(oldDerived, kr.Derive("cookie-hash", 64)) {
		t.Error("Derive unchanged after Rotate")
	}
	all := kr.DeriveAll("cookie-hash", 64)
	if len(all) != 2 || !bytes.Equal(all[1], oldDerived) || !bytes.Equal(all[0], kr.Derive("cookie-hash", 64)) {
		t.Error("DeriveAll must list the primary first, then older keys")
	}
	ct2, _ := kr.Seal([]byte("after"), []byte("key:2"))
	if got := ct2[1:headerSize]; bytes.Equal(got, ct1[1:headerSize]) {
		t.Error("new ciphertext still names the old key")
	}

	// Reload from disk, as after a restart: both ciphertexts open.
	re, err := LoadOrCreateMaster(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ids := re.IDs(); len(ids) != 2 || ids[0] != oldID || ids[1] != kr.PrimaryID() {
		t.Fatalf("reloaded ids = %x", ids)
	}
	for _, c := range []struct {
		ct []byte
		ad string
		pt string
	}{{ct1, "key:1", "before"}, {ct2, "key:2", "after"}} {
		got, err := re.Open(c.ct, []byte(c.ad))
		if err != nil || string(got) != c.pt {
			t.Fatalf("Open after rotation = %q, %v", got, err)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, FileName))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode after rotate = %04o", st.Mode().Perm())
	}

	// A key ring without the old key reports ErrUnknownKey, not tampering.
	fresh, _ := newRing(t)
	if _, err := fresh.Open(ct1, []byte("key:1")); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("foreign ring: err = %v, want ErrUnknownKey", err)
	}
}

func TestDerive(t *testing.T) {
	kr, _ := newRing(t)
	a := kr.Derive("cookie-hash", 64)
	b := kr.Derive("cookie-block", 32)
	if len(a) != 64 || len(b) != 32 {
		t.Fatal("wrong lengths")
	}
	if bytes.Equal(a[:32], b) {
		t.Error("purposes not independent")
	}
	if !bytes.Equal(a, kr.Derive("cookie-hash", 64)) {
		t.Error("Derive not deterministic")
	}
	defer func() {
		if recover() == nil {
			t.Error("Derive(n=0) did not panic")
		}
	}()
	kr.Derive("x", 0)
}

func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte("# c\n0000000a AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("0000000a AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseKeyFile(data)
		if err != nil {
			if !errors.Is(err, ErrBadKeyFile) {
				t.Fatalf("error not classified: %v", err)
			}
			return
		}
		again, err := parseKeyFile(formatKeyFile(keys))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("format/parse roundtrip failed: %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	kr, err := LoadOrCreateMaster(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	ct, _ := kr.Seal([]byte("hello"), []byte("ad"))
	f.Add(ct, []byte("ad"))
	f.Fuzz(func(t *testing.T, ct, ad []byte) {
		pt, err := kr.Open(ct, ad)
		if err == nil && string(pt) != "hello" {
			t.Fatalf("forged ciphertext opened: %q", pt)
		}
	})
}
