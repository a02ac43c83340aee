package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Replica is one shellgate process sharing the database.
type Replica struct {
	ID          string // random, new at every start
	PeerAddress string // host:port where the other replicas reach it; "" when unset
	Hostname    string
	Version     string
	StartedAt   time.Time
	HeartbeatAt time.Time
}

// ReplicaStore records which replicas are alive.
type ReplicaStore interface {
	// RegisterReplica inserts or refreshes this process's row.
	RegisterReplica(ctx context.Context, r *Replica) error
	// HeartbeatReplica refreshes the row; ErrNotFound when another replica removed it
	// as stale (this one was paused or cut off too long), and the caller registers again.
	HeartbeatReplica(ctx context.Context, id string, now time.Time) error
	// ListReplicas lists replicas whose heartbeat is not older than since, by id.
	ListReplicas(ctx context.Context, since time.Time) ([]Replica, error)
	// RemoveReplica deletes one row (at shutdown).
	RemoveReplica(ctx context.Context, id string) error
	// RemoveStaleReplicas deletes rows whose heartbeat is older than before.
	RemoveStaleReplicas(ctx context.Context, before time.Time) (int64, error)
}

var _ ReplicaStore = (*DB)(nil)

func (s *SQLite) RegisterReplica(ctx context.Context, r *Replica) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO replicas (id, peer_address, hostname, version, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)
		 ON CONFLICT (id) DO UPDATE SET peer_address = excluded.peer_address, hostname = excluded.hostname,
		   version = excluded.version, heartbeat_at = excluded.heartbeat_at`,
		r.ID, r.PeerAddress, r.Hostname, r.Version, ms(r.StartedAt), ms(r.HeartbeatAt))
	return normalize(err)
}

func (s *SQLite) HeartbeatReplica(ctx context.Context, id string, now time.Time) error {
	return s.updateOne(ctx, `UPDATE replicas SET heartbeat_at = ? WHERE id = ?`, ms(now), id)
}

func (s *SQLite) ListReplicas(ctx context.Context, since time.Time) ([]Replica, error) {
	return queryAll(ctx, s.db, func(r scanner) (*Replica, error) {
		var rp Replica
		var started, beat int64
		if err := r.Scan(&rp.ID, &rp.PeerAddress, &rp.Hostname, &rp.Version, &started, &beat); err != nil {
			return nil, normalize(err)
		}
		rp.StartedAt, rp.HeartbeatAt = fromMS(started), fromMS(beat)
		return &rp, nil
	}, `SELECT id, peer_address, hostname, version, started_at, heartbeat_at FROM replicas
	    WHERE heartbeat_at >= ? ORDER BY id`, ms(since))
}

func (s *SQLite) RemoveReplica(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE id = ?`, id)
	return normalize(err)
}

func (s *SQLite) RemoveStaleReplicas(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE heartbeat_at < ?`, ms(before))
	if err != nil {
		return 0, normalize(err)
	}
	return res.RowsAffected()
}

// ErrNotReady explains why the database cannot serve yet.
var ErrNotReady = errors.New("database not ready")

// CheckReady reports whether the database answers and holds every migration this
// binary knows (a replica of an older binary, or a newer database, is not ready).
func (s *DB) CheckReady(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	have, err := versions(ctx, s.db)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	entries, err := migrations.ReadDir("migrations/" + string(s.engine))
	if err != nil {
		return err
	}
	if len(have) != len(entries) {
		return fmt.Errorf("%w: %d of %d migrations applied", ErrNotReady, len(have), len(entries))
	}
	return nil
}
