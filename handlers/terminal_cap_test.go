package handlers_test

import (
	"strings"
	"testing"

	"github.com/shellgate/shellgate/terminal"
)

// TestTerminalPerUserCapDefault: a person (or a script with their cookie) opening
// terminals in a loop cannot exhaust the gateway: with the default cap the first ten
// connect, the eleventh is refused with 4006 before any SSH dial, and once one ends
// there is room again.
func TestTerminalPerUserCapDefault(t *testing.T) {
	f := newTermFixture(t)
	var open []*termClient
	for i := range 10 {
		tc := f.open(t)
		if !tc.until(tc.connected) {
			t.Fatalf("terminal %d: close %d %q", i+1, tc.code, tc.reason)
		}
		open = append(open, tc)
	}
	eleventh := f.open(t)
	if eleventh.until(eleventh.connected) || eleventh.code != terminal.CloseTooManySessions {
		t.Fatalf("eleventh: close %d %q, want %d", eleventh.code, eleventh.reason, terminal.CloseTooManySessions)
	}
	if len(eleventh.errors) == 0 || !strings.Contains(eleventh.errors[0].Message, "too many terminal sessions") {
		t.Errorf("eleventh: error %+v, want the plain too-many message", eleventh.errors)
	}
	open[0].send("exit\n")
	open[0].until(func() bool { return false })
	again := f.open(t)
	if !again.until(again.connected) {
		t.Fatalf("after one ended: close %d %q", again.code, again.reason)
	}
	for _, tc := range append(open[1:], again) {
		tc.send("exit\n")
		tc.until(func() bool { return false })
	}
}
