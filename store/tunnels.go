package store

import (
	"context"
	"time"
)

// Tunnel lets native clients (ssh, sftp, scp) reach one server through a local proxy.
type Tunnel struct {
	ID          int64
	ServerID    int64
	StackID     int64  // of the server
	Server      string // its name
	CreatedBy   int64
	CreatorName string
	Description string
	Services    string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	ClosedAt    time.Time // zero while open
	CloseReason string
	// TokenPending: a source token waits to be spent; SourceKey is the enrolled proxy.
	TokenPending bool
	SourceKey    string
	RotatedAt    time.Time
	BytesUp      int64
	BytesDown    int64
	Connections  int64
}

// Open reports whether the tunnel still carries connections at now.
func (t *Tunnel) Open(now time.Time) bool { return t.ClosedAt.IsZero() && now.Before(t.ExpiresAt) }

// TunnelStore keeps tunnels. Source tokens are stored only as hashes.
type TunnelStore interface {
	CreateTunnel(ctx context.Context, t *Tunnel, tokenHash string) error
	TunnelByID(ctx context.Context, id int64) (*Tunnel, error)
	ListTunnels(ctx context.Context, serverID int64) ([]Tunnel, error)
	// ClaimTunnelToken spends an open tunnel's source token with one conditional
	// UPDATE, enrolling the proxy's key; exactly one concurrent claimant wins.
	ClaimTunnelToken(ctx context.Context, tokenHash, key string, now time.Time) (*Tunnel, error)
	// TunnelBySourceKey finds the open tunnel a proxy's key was enrolled for.
	TunnelBySourceKey(ctx context.Context, key string, now time.Time) (*Tunnel, error)
	// RotateTunnelToken replaces the source token of an open tunnel and forgets the
	// enrolled proxy; the lifetime is unchanged.
	RotateTunnelToken(ctx context.Context, id int64, tokenHash string, now time.Time) error
	// CloseTunnel closes an open tunnel for good (reason "closed" or "expired").
	CloseTunnel(ctx context.Context, id int64, reason string, now time.Time) error
	DeleteTunnel(ctx context.Context, id int64) error
	AddTunnelTraffic(ctx context.Context, id, up, down int64) error
}

const tunnelColumns = `t.id, t.server_id, sv.stack_id, sv.name, COALESCE(t.created_by, 0), COALESCE(u.username, ''),
	t.description, t.services, t.created_at, t.expires_at, t.closed_at, t.close_reason, t.source_token_hash,
	t.source_key, t.rotated_at, t.bytes_up, t.bytes_down, t.connections`

const tunnelFrom = ` FROM tunnels t JOIN servers sv ON sv.id = t.server_id LEFT JOIN users u ON u.id = t.created_by`

func scanTunnel(r scanner) (*Tunnel, error) {
	var t Tunnel
	var created, expires, closed, rotated int64
	var hash string
	if err := r.Scan(&t.ID, &t.ServerID, &t.StackID, &t.Server, &t.CreatedBy, &t.CreatorName, &t.Description, &t.Services,
		&created, &expires, &closed, &t.CloseReason, &hash, &t.SourceKey, &rotated, &t.BytesUp, &t.BytesDown, &t.Connections); err != nil {
		return nil, normalize(err)
	}
	t.CreatedAt, t.ExpiresAt = fromMS(created), fromMS(expires)
	if closed != 0 {
		t.ClosedAt = fromMS(closed)
	}
	if rotated != 0 {
		t.RotatedAt = fromMS(rotated)
	}
	t.TokenPending = hash != ""
	return &t, nil
}

func (s *SQLite) CreateTunnel(ctx context.Context, t *Tunnel, tokenHash string) error {
	return normalize(s.db.QueryRowContext(ctx,
		`INSERT INTO tunnels (server_id, created_by, description, services, created_at, expires_at, source_token_hash)
		 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.ServerID, nullID(t.CreatedBy), t.Description, t.Services, ms(t.CreatedAt), ms(t.ExpiresAt), tokenHash).Scan(&t.ID))
}

func (s *SQLite) TunnelByID(ctx context.Context, id int64) (*Tunnel, error) {
	return scanTunnel(s.db.QueryRowContext(ctx, `SELECT `+tunnelColumns+tunnelFrom+` WHERE t.id = ?`, id))
}

func (s *SQLite) ListTunnels(ctx context.Context, serverID int64) ([]Tunnel, error) {
	return queryAll(ctx, s.db, scanTunnel, `SELECT `+tunnelColumns+tunnelFrom+` WHERE t.server_id = ? ORDER BY t.id DESC`, serverID)
}

func (s *SQLite) ClaimTunnelToken(ctx context.Context, tokenHash, key string, now time.Time) (*Tunnel, error) {
	if tokenHash == "" {
		return nil, ErrNotFound
	}
	var id int64
	err := s.db.QueryRowContext(ctx,
		`UPDATE tunnels SET source_token_hash = '', source_key = ?
		 WHERE source_token_hash = ? AND closed_at = 0 AND expires_at > ? RETURNING id`,
		key, tokenHash, ms(now)).Scan(&id)
	if err != nil {
		return nil, normalize(err)
	}
	return s.TunnelByID(ctx, id)
}

func (s *SQLite) TunnelBySourceKey(ctx context.Context, key string, now time.Time) (*Tunnel, error) {
	if key == "" {
		return nil, ErrNotFound
	}
	return scanTunnel(s.db.QueryRowContext(ctx,
		`SELECT `+tunnelColumns+tunnelFrom+` WHERE t.source_key = ? AND t.closed_at = 0 AND t.expires_at > ?`, key, ms(now)))
}

func (s *SQLite) RotateTunnelToken(ctx context.Context, id int64, tokenHash string, now time.Time) error {
	return s.updateOne(ctx,
		`UPDATE tunnels SET source_token_hash = ?, source_key = '', rotated_at = ?
		 WHERE id = ? AND closed_at = 0 AND expires_at > ?`, tokenHash, ms(now), id, ms(now))
}

func (s *SQLite) CloseTunnel(ctx context.Context, id int64, reason string, now time.Time) error {
	return s.updateOne(ctx,
		`UPDATE tunnels SET closed_at = ?, close_reason = ?, source_token_hash = '', source_key = ''
		 WHERE id = ? AND closed_at = 0`, ms(now), reason, id)
}

func (s *SQLite) DeleteTunnel(ctx context.Context, id int64) error {
	return s.updateOne(ctx, `DELETE FROM tunnels WHERE id = ?`, id)
}

func (s *SQLite) AddTunnelTraffic(ctx context.Context, id, up, down int64) error {
	_, err := s.db.ExecContext(ctx,
		`UPDATE tunnels SET bytes_up = bytes_up + ?, bytes_down = bytes_down + ?, connections = connections + 1 WHERE id = ?`,
		up, down, id)
	return normalize(err)
}
