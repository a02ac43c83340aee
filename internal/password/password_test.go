package password

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("unexpected encoding %q", h)
	}
	if err := Verify(h, "correct horse battery"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := Verify(h, "correct horse batterY"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: got %v, want ErrMismatch", err)
	}
	h2, _ := Hash("correct horse battery")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	for _, enc := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=x$AA$AA", "$argon2id$v=19$m=8,t=1,p=1$!!$AA"} {
		if err := Verify(enc, "x"); err == nil {
			t.Errorf("Verify(%q) accepted", enc)
		}
	}
}

func TestGenerateAndStrength(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		p := Generate()
		if len(p) != 20 || CheckStrength(p) != nil || seen[p] {
			t.Fatalf("bad generated password %q", p)
		}
		seen[p] = true
	}
	if CheckStrength("short") == nil {
		t.Fatal("short password accepted")
	}
}
