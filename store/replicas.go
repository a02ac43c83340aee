package store

import (
	"context"
	"database/sql"
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

// RemoveReplica deletes the replica and the live sessions it held.
func (s *SQLite) RemoveReplica(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM live_sessions WHERE replica_id = ?`, id); err != nil {
			return normalize(err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE id = ?`, id)
		return normalize(err)
	})
}

// RemoveStaleReplicas deletes replicas whose heartbeat stopped, and the live sessions
// of replicas that are gone (their connections died with them).
func (s *SQLite) RemoveStaleReplicas(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE heartbeat_at < ?`, ms(before))
		if err != nil {
			return normalize(err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM live_sessions WHERE replica_id NOT IN (SELECT id FROM replicas)`)
		return normalize(err)
	})
	return n, err
}

// LiveSession is a terminal session running now on some replica.
type LiveSession struct {
	ID         string
	ReplicaID  string // the replica holding its connection
	UserID     int64
	Username   string
	StackID    int64
	StackName  string
	ServerID   int64
	ServerName string
	Addr       string
	Login      string
	ClientIP   string
	StartedAt  time.Time
}

// LiveSessionStore records which replica holds which live terminal session.
type LiveSessionStore interface {
	AddLiveSession(ctx context.Context, l *LiveSession) error
	RemoveLiveSession(ctx context.Context, id string) error
	ListLiveSessions(ctx context.Context) ([]LiveSession, error)
	LiveSession(ctx context.Context, id string) (*LiveSession, error)
}

var _ LiveSessionStore = (*DB)(nil)

func (s *SQLite) AddLiveSession(ctx context.Context, l *LiveSession) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO live_sessions (id, replica_id, user_id, username, stack_id, stack_name, server_id, server_name, addr, login, client_ip, started_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.ID, l.ReplicaID, l.UserID, l.Username, l.StackID, l.StackName, l.ServerID, l.ServerName, l.Addr, l.Login, l.ClientIP, ms(l.StartedAt))
	return normalize(err)
}

func (s *SQLite) RemoveLiveSession(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM live_sessions WHERE id = ?`, id)
	return normalize(err)
}

const liveSessionColumns = `id, replica_id, user_id, username, stack_id, stack_name, server_id, server_name, addr, login, client_ip, started_at`

func scanLiveSession(r scanner) (*LiveSession, error) {
	var l LiveSession
	var started int64
	if err := r.Scan(&l.ID, &l.ReplicaID, &l.UserID, &l.Username, &l.StackID, &l.StackName, &l.ServerID, &l.ServerName,
		&l.Addr, &l.Login, &l.ClientIP, &started); err != nil {
		return nil, normalize(err)
	}
	l.StartedAt = fromMS(started)
	return &l, nil
}

func (s *SQLite) ListLiveSessions(ctx context.Context) ([]LiveSession, error) {
	return queryAll(ctx, s.db, scanLiveSession, `SELECT `+liveSessionColumns+` FROM live_sessions ORDER BY started_at, id`)
}

func (s *SQLite) LiveSession(ctx context.Context, id string) (*LiveSession, error) {
	return scanLiveSession(s.db.QueryRowContext(ctx, `SELECT `+liveSessionColumns+` FROM live_sessions WHERE id = ?`, id))
}
