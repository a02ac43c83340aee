//go:build unix

package jobs

import (
	"errors"
	"syscall"
)

// pidExists reports whether a process with this PID exists on this host
// (signal 0 checks without signalling; EPERM means it exists as another user).
func pidExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
