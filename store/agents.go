package store

import (
	"context"
	"time"
)

// Agent is the state of the agent that stands for a server behind NAT.
type Agent struct {
	ServerID       int64
	TokenPending   bool      // a destination token is waiting to be spent
	TokenExpiresAt time.Time // zero when none is pending
	PublicKey      string    // the enrolled credential; "" until enrolled
	EnrolledAt     time.Time
	Connected      bool // as last recorded by the replica holding the link
	LinkAddr       string
	LinkChangedAt  time.Time
}

// AgentStore keeps agents and their tokens. Tokens are never stored, only their hashes.
type AgentStore interface {
	// SetAgentToken makes serverID reached through an agent and gives it a new
	// destination token (by hash) valid until expires. It revokes the credential
	// enrolled before, if any.
	SetAgentToken(ctx context.Context, serverID int64, tokenHash string, expires, now time.Time) error
	// ClaimAgentToken spends a pending, unexpired token with one conditional UPDATE and
	// enrolls publicKey: of any number of concurrent claimants exactly one wins; the
	// others get ErrNotFound (ErrConflict when the key stands for another server).
	ClaimAgentToken(ctx context.Context, tokenHash, publicKey string, now time.Time) (serverID int64, name string, err error)
	// AgentByPublicKey finds the server an enrolled credential stands for.
	AgentByPublicKey(ctx context.Context, publicKey string) (serverID int64, name string, err error)
	// SetAgentLink records the agent's link going up (from addr) or down.
	SetAgentLink(ctx context.Context, serverID int64, connected bool, addr string, at time.Time) error
	// AgentOf returns the agent row of serverID, or ErrNotFound.
	AgentOf(ctx context.Context, serverID int64) (*Agent, error)
}

func (s *SQLite) SetAgentToken(ctx context.Context, serverID int64, tokenHash string, expires, now time.Time) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO agents (server_id, token_hash, token_expires_at, created_at) VALUES (?, ?, ?, ?)
		 ON CONFLICT (server_id) DO UPDATE SET token_hash = excluded.token_hash,
		     token_expires_at = excluded.token_expires_at, public_key = '', enrolled_at = 0`,
		serverID, tokenHash, ms(expires), ms(now))
	return normalizeFK(normalize(err))
}

func (s *SQLite) ClaimAgentToken(ctx context.Context, tokenHash, publicKey string, now time.Time) (int64, string, error) {
	if tokenHash == "" {
		return 0, "", ErrNotFound
	}
	var id int64
	err := s.db.QueryRowContext(ctx,
		`UPDATE agents SET token_hash = '', token_expires_at = 0, public_key = ?, enrolled_at = ?
		 WHERE token_hash = ? AND token_expires_at > ? RETURNING server_id`,
		publicKey, ms(now), tokenHash, ms(now)).Scan(&id)
	if err != nil {
		return 0, "", normalize(err)
	}
	var name string
	if err := s.db.QueryRowContext(ctx, `SELECT name FROM servers WHERE id = ?`, id).Scan(&name); err != nil {
		return 0, "", normalize(err)
	}
	return id, name, nil
}

func (s *SQLite) AgentByPublicKey(ctx context.Context, publicKey string) (int64, string, error) {
	if publicKey == "" {
		return 0, "", ErrNotFound
	}
	var id int64
	var name string
	err := s.db.QueryRowContext(ctx,
		`SELECT sv.id, sv.name FROM agents a JOIN servers sv ON sv.id = a.server_id WHERE a.public_key = ?`,
		publicKey).Scan(&id, &name)
	return id, name, normalize(err)
}

func (s *SQLite) SetAgentLink(ctx context.Context, serverID int64, connected bool, addr string, at time.Time) error {
	c := 0
	if connected {
		c = 1
	}
	return s.updateOne(ctx, `UPDATE agents SET connected = ?, link_addr = ?, link_changed_at = ? WHERE server_id = ?`,
		c, addr, ms(at), serverID)
}

func (s *SQLite) AgentOf(ctx context.Context, serverID int64) (*Agent, error) {
	var a Agent
	var hash string
	var expires, enrolled, changed int64
	var connected int
	err := s.db.QueryRowContext(ctx,
		`SELECT server_id, token_hash, token_expires_at, public_key, enrolled_at, connected, link_addr, link_changed_at
		 FROM agents WHERE server_id = ?`, serverID).
		Scan(&a.ServerID, &hash, &expires, &a.PublicKey, &enrolled, &connected, &a.LinkAddr, &changed)
	if err != nil {
		return nil, normalize(err)
	}
	a.TokenPending = hash != ""
	if expires != 0 {
		a.TokenExpiresAt = fromMS(expires)
	}
	if enrolled != 0 {
		a.EnrolledAt = fromMS(enrolled)
	}
	if changed != 0 {
		a.LinkChangedAt = fromMS(changed)
	}
	a.Connected = connected != 0
	return &a, nil
}
