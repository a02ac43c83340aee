package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Throttle is the state of one throttled key (an account, a client address, a
// device, a stack's log reads).
type Throttle struct {
	Key       string
	Failures  int       // attempts counted since the key was last quiet
	NextAt    time.Time // the next attempt may start then
	UpdatedAt time.Time
}

// ThrottlePolicy says how a key slows down: the first Budget attempts are free, each
// further one waits Base, 2×Base, 4×Base … at most Max after the one before; a key
// left alone for Reset after its wait starts over.
type ThrottlePolicy struct {
	Budget    int
	Base, Max time.Duration
	Reset     time.Duration
}

// Delay is the wait after the n-th counted attempt.
func (p ThrottlePolicy) Delay(n int) time.Duration {
	if n <= p.Budget {
		return 0
	}
	d := p.Base
	for i := p.Budget + 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// ThrottleStore keeps throttles in the database, so replicas share them.
type ThrottleStore interface {
	// ReserveAttempt counts an attempt for key before it is made. When the key's next
	// attempt may start at now, it counts it and pushes the key's next start by the
	// policy's delay, and returns 0; otherwise it counts nothing and returns how long
	// to wait. One conditional write decides, so concurrent attempts cannot all pass.
	ReserveAttempt(ctx context.Context, key string, p ThrottlePolicy, now time.Time) (time.Duration, error)
	// RefundAttempt takes one counted attempt back (a success on a shared key).
	RefundAttempt(ctx context.Context, key string) error
	// ClearThrottle forgets a key: its next attempt is free.
	ClearThrottle(ctx context.Context, key string) error
	// ListThrottles returns the keys with counted attempts whose wait ends after
	// since, the longest wait first.
	ListThrottles(ctx context.Context, since time.Time) ([]Throttle, error)
}

// errThrottleBusy means the compare-and-set lost too many times in a row.
var errThrottleBusy = errors.New("throttle: too much contention")

func (s *SQLite) ReserveAttempt(ctx context.Context, key string, p ThrottlePolicy, now time.Time) (time.Duration, error) {
	for range 20 {
		var failures int
		var nextAt int64
		err := s.db.QueryRowContext(ctx, `SELECT failures, next_at FROM throttles WHERE key = ?`, key).Scan(&failures, &nextAt)
		if errors.Is(err, sql.ErrNoRows) {
			res, err := s.db.ExecContext(ctx,
				`INSERT INTO throttles (key, failures, next_at, updated_at) VALUES (?, 1, ?, ?) ON CONFLICT (key) DO NOTHING`,
				key, ms(now.Add(p.Delay(1))), ms(now))
			if err != nil {
				return 0, normalize(err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				// Rows of keys long quiet are removed now and then, here.
				_, _ = s.db.ExecContext(ctx, `DELETE FROM throttles WHERE next_at < ?`, ms(now.Add(-p.Reset-24*time.Hour)))
				return 0, nil
			}
			continue // another attempt inserted it first
		}
		if err != nil {
			return 0, normalize(err)
		}
		if wait := fromMS(nextAt).Sub(now); wait > 0 {
			return wait, nil
		}
		n := failures + 1
		if now.Sub(fromMS(nextAt)) >= p.Reset {
			n = 1 // quiet long enough: start over
		}
		res, err := s.db.ExecContext(ctx,
			`UPDATE throttles SET failures = ?, next_at = ?, updated_at = ? WHERE key = ? AND failures = ? AND next_at = ?`,
			n, ms(now.Add(p.Delay(n))), ms(now), key, failures, nextAt)
		if err != nil {
			return 0, normalize(err)
		}
		if c, _ := res.RowsAffected(); c == 1 {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("reserve %s: %w", key, errThrottleBusy)
}

func (s *SQLite) RefundAttempt(ctx context.Context, key string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE throttles SET failures = failures - 1 WHERE key = ? AND failures > 0`, key)
	return normalize(err)
}

func (s *SQLite) ClearThrottle(ctx context.Context, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM throttles WHERE key = ?`, key)
	return normalize(err)
}

func (s *SQLite) ListThrottles(ctx context.Context, since time.Time) ([]Throttle, error) {
	return queryAll(ctx, s.db, func(r scanner) (*Throttle, error) {
		var t Throttle
		var next, upd int64
		if err := r.Scan(&t.Key, &t.Failures, &next, &upd); err != nil {
			return nil, err
		}
		t.NextAt, t.UpdatedAt = fromMS(next), fromMS(upd)
		return &t, nil
	}, `SELECT key, failures, next_at, updated_at FROM throttles WHERE failures > 0 AND next_at > ? ORDER BY next_at DESC LIMIT 500`, ms(since))
}

// UpgradePasswordHash replaces a user's password hash with a stronger hash of the same
// password, only while the stored hash is still old (a password changed meanwhile
// wins). Sessions are kept: the password did not change.
func (s *SQLite) UpgradePasswordHash(ctx context.Context, id int64, old, hash string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?`, hash, id, old)
	return normalize(err)
}
