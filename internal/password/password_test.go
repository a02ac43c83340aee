package password

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
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

// TestLegacyHashVerifiesAndAsksForUpgrade: hashes stored before the move to OWASP's
// 19 MiB parameters (64 MiB, 3 passes, 2 lanes) still sign people in, and the caller
// is told to store a new hash; a current hash is not.
func TestLegacyHashVerifiesAndAsksForUpgrade(t *testing.T) {
	salt := []byte("0123456789abcdef")
	sum := argon2.IDKey([]byte("old password here"), salt, 3, 64*1024, 2, 32)
	legacy := fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=2$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(sum))
	if err := Verify(legacy, "old password here"); err != nil {
		t.Fatalf("legacy hash refused: %v", err)
	}
	if !NeedsRehash(legacy) {
		t.Fatal("legacy hash not marked for upgrade")
	}
	h, _ := Hash("new password here")
	if NeedsRehash(h) {
		t.Fatal("a current hash is marked for upgrade")
	}
}

// TestHugeStoredParametersRefused: a hash row edited to ask for 4 GiB of memory must
// not make a sign-in allocate it.
func TestHugeStoredParametersRefused(t *testing.T) {
	if err := Verify("$argon2id$v=19$m=4194304,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x"); err == nil || errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want a refusal before hashing", err)
	}
}

// TestLimiterBoundsConcurrentHashes: fifty sign-ins at once (the attack in issue 12
// raised memory from 84 MiB to 1.5 GiB) never hold more hashing memory than the
// budget, and those that find no room within the wait get ErrBusy instead of queueing
// forever.
func TestLimiterBoundsConcurrentHashes(t *testing.T) {
	l := NewLimiter(2 * memoryKiB)
	l.Wait = 50 * time.Millisecond
	h, _ := Hash("some password ok")
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Verify(context.Background(), h, "wrong password!!")
			if errors.Is(err, ErrBusy) {
				mu.Lock()
				busy++
				mu.Unlock()
			} else if !errors.Is(err, ErrMismatch) {
				t.Errorf("verify: %v", err)
			}
		}()
	}
	wg.Wait()
	if p := l.Peak(); p > l.Budget() {
		t.Fatalf("peak %d KiB over the budget %d KiB", p, l.Budget())
	}
	if busy == 0 || l.Runs()+int64(busy) != 50 {
		t.Fatalf("runs %d, busy %d: want every attempt either hashed or refused busy, some refused", l.Runs(), busy)
	}
}
