package password

import (
	"fmt"
	"testing"
)

// TestDummyMatchesParameters: the hash a missing username is verified against
// must cost what a real one costs, or timing tells which accounts exist.
func TestDummyMatchesParameters(t *testing.T) {
	want := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", memoryKiB, passes, lanes)
	if len(dummy) < len(want) || dummy[:len(want)] != want {
		t.Fatalf("dummy %q does not use the current parameters %q: regenerate it with Hash", dummy, want)
	}
	if err := Verify(dummy, "x"); err != ErrMismatch {
		t.Fatalf("dummy does not parse as a hash: %v", err)
	}
}
