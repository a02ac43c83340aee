package store

import (
	"context"
	"time"
)

// WorkerRow is one live deployment worker (one per process).
type WorkerRow struct {
	ID          string // random; claim tokens of its jobs start with ID + "."
	Host        string // hostname of its process
	PID         int
	StartedAt   time.Time
	HeartbeatAt time.Time
}

// WorkerStore keeps the workers' heartbeats, so that the jobs of a process that
// is gone are reclaimed without waiting out their lease.
type WorkerStore interface {
	// HeartbeatWorker inserts or renews w's row.
	HeartbeatWorker(ctx context.Context, w *WorkerRow) error
	ListWorkers(ctx context.Context) ([]WorkerRow, error)
	DeleteWorker(ctx context.Context, id string) error
	// ReclaimDeployments releases every claim held by worker id, so that the
	// next ClaimDeployment takes the job again; it returns how many.
	ReclaimDeployments(ctx context.Context, id string, now time.Time) (int, error)
}

var _ WorkerStore = (*SQLite)(nil)

func (s *SQLite) HeartbeatWorker(ctx context.Context, w *WorkerRow) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO workers (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`,
		w.ID, w.Host, w.PID, ms(w.StartedAt), ms(w.HeartbeatAt))
	return normalize(err)
}

func scanWorker(r scanner) (*WorkerRow, error) {
	var w WorkerRow
	var started, beat int64
	if err := r.Scan(&w.ID, &w.Host, &w.PID, &started, &beat); err != nil {
		return nil, normalize(err)
	}
	w.StartedAt, w.HeartbeatAt = fromMS(started), fromMS(beat)
	return &w, nil
}

func (s *SQLite) ListWorkers(ctx context.Context) ([]WorkerRow, error) {
	return queryAll(ctx, s.db, scanWorker, `SELECT id, host, pid, started_at, heartbeat_at FROM workers ORDER BY id`)
}

func (s *SQLite) DeleteWorker(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM workers WHERE id = ?`, id)
	return normalize(err)
}

func (s *SQLite) ReclaimDeployments(ctx context.Context, id string, now time.Time) (int, error) {
	prefix := id + "."
	res, err := s.db.ExecContext(ctx,
		`UPDATE deployments SET claimed_until = 0, claim_token = ''
		 WHERE claimed_until > ? AND substr(claim_token, 1, ?) = ?`,
		ms(now), len(prefix), prefix)
	if err != nil {
		return 0, normalize(err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
