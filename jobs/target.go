package jobs

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// ErrJumpLoop means a chain of jump servers leads back to itself.
var ErrJumpLoop = errors.New("jump servers form a loop")

// ErrNotPinned means a hop of the chain has no pinned host key yet, so nothing may
// authenticate to it.
var ErrNotPinned = errors.New("host key not confirmed")

// maxChain bounds a jump chain, like terminal.Dial does.
const maxChain = 8

// ParseHostKeys parses pinned keys stored as "type base64" lines.
func ParseHostKeys(lines []string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for _, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, fmt.Errorf("pinned host key: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// KeyLine is the stored form of a public key: "type base64", no comment.
func KeyLine(k ssh.PublicKey) string {
	b := ssh.MarshalAuthorizedKey(k)
	return string(b[:len(b)-1])
}

// Target builds the terminal.Target of server id among the servers of its stack,
// with its jump chain. Every jump hop must have a pinned key (ErrNotPinned); the
// final hop's pinned keys are included when set, so a caller that dials with
// credentials must check Server.HostKeyState itself first.
func Target(servers []store.Server, id int64) (*terminal.Target, error) {
	byID := make(map[int64]*store.Server, len(servers))
	for i := range servers {
		byID[servers[i].ID] = &servers[i]
	}
	var first, prev *terminal.Target
	seen := map[int64]bool{}
	for cur := id; cur != 0; {
		sv, ok := byID[cur]
		if !ok {
			return nil, fmt.Errorf("server %d: %w", cur, store.ErrNotFound)
		}
		if seen[cur] || len(seen) == maxChain {
			return nil, ErrJumpLoop
		}
		seen[cur] = true
		keys, err := ParseHostKeys(sv.HostKeys)
		if err != nil {
			return nil, err
		}
		if prev != nil && len(keys) == 0 {
			return nil, fmt.Errorf("jump server %s: %w", sv.Name, ErrNotPinned)
		}
		t := &terminal.Target{Name: sv.Name, Host: sv.Host, Port: sv.Port, User: sv.LoginUser, HostKeys: keys}
		if sv.ViaAgent {
			t.Agent = sv.ID // its agent dials Host:Port on its own host
		}
		if prev == nil {
			first = t
		} else {
			prev.Jump = t
		}
		prev = t
		cur = sv.JumpServerID
	}
	return first, nil
}
