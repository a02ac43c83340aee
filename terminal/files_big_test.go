//go:build !race

package terminal

import (
	"os"
	"testing"
)

// TestFilesBigTransfer moves a file over 2 GiB each way (past every 31-bit
// offset) and checks length and SHA-256. It takes a while and a few GiB of
// disk, so it runs only with SHELLGATE_BIG_TESTS=1, and never in the race
// build (the detector makes it crawl).
func TestFilesBigTransfer(t *testing.T) {
	if os.Getenv("SHELLGATE_BIG_TESTS") != "1" {
		t.Skip("set SHELLGATE_BIG_TESTS=1 to move a 2 GiB file")
	}
	e := newFilesEnv(t, "openssh")
	transfer(t, e, 2<<30+1<<20+7)
}
