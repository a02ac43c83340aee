package store

import (
	"context"
	"time"
)

// Ticket lets one browser session open one terminal on one server, once.
type Ticket struct {
	ID           string // SHA-256 of the ticket the browser holds
	UserID       int64
	WebSessionID string
	StackID      int64
	ServerID     int64
	CreatedAt    time.Time
	ExpiresAt    time.Time
}

// TicketStore issues and claims terminal tickets.
type TicketStore interface {
	CreateTicket(ctx context.Context, t *Ticket) error
	// ClaimTicket marks the ticket used if it is unused, unexpired and bound to exactly
	// this user, browser session and server; otherwise ErrNotFound. One conditional
	// UPDATE decides, so exactly one claimant wins, across replicas too.
	ClaimTicket(ctx context.Context, id string, userID int64, webSessionID string, serverID int64, now time.Time) (*Ticket, error)
	// DeleteExpiredTickets removes tickets that expired before a time.
	DeleteExpiredTickets(ctx context.Context, before time.Time) error
}

func (s *SQLite) CreateTicket(ctx context.Context, t *Ticket) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO terminal_tickets (id, user_id, web_session_id, stack_id, server_id, created_at, expires_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.UserID, t.WebSessionID, t.StackID, t.ServerID, ms(t.CreatedAt), ms(t.ExpiresAt))
	return normalize(err)
}

func (s *SQLite) ClaimTicket(ctx context.Context, id string, userID int64, webSessionID string, serverID int64, now time.Time) (*Ticket, error) {
	t := &Ticket{ID: id, UserID: userID, WebSessionID: webSessionID, ServerID: serverID}
	var created, expires int64
	err := s.db.QueryRowContext(ctx,
		`UPDATE terminal_tickets SET used_at = ?
		 WHERE id = ? AND used_at = 0 AND expires_at > ? AND user_id = ? AND web_session_id = ? AND server_id = ?
		 RETURNING stack_id, created_at, expires_at`,
		ms(now), id, ms(now), userID, webSessionID, serverID).Scan(&t.StackID, &created, &expires)
	if err != nil {
		return nil, normalize(err)
	}
	t.CreatedAt, t.ExpiresAt = fromMS(created), fromMS(expires)
	return t, nil
}

func (s *SQLite) DeleteExpiredTickets(ctx context.Context, before time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM terminal_tickets WHERE expires_at < ?`, ms(before))
	return normalize(err)
}
