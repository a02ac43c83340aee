package store

import (
	"context"
	"strings"
	"time"
)

// MoveServer points a server at a new address and pins new host keys in one step.
// It exists for a server whose endpoint shellgate itself runs (the --demo server:
// a new loopback port and a fresh host key on every start), where the operator
// already knows the key; it is not reachable from any page.
func (s *SQLite) MoveServer(ctx context.Context, stackID, serverID int64, host string, port int, keys []string, at time.Time) error {
	return s.updateOne(ctx,
		`UPDATE servers SET host = ?, port = ?, host_keys = ?, pinned_at = ?, presented_key = '', presented_at = 0
		 WHERE id = ? AND stack_id = ?`, host, port, strings.Join(keys, "\n"), ms(at), serverID, stackID)
}
