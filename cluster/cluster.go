// Package cluster makes a shellgate replica known to the others sharing its database:
// it registers the replica (a random id, the address its peers reach it at), keeps a
// heartbeat, removes replicas whose heartbeat stopped (crashed, killed), and removes
// its own row on a clean shutdown. Which replica holds a live session, and forwarding
// to it, build on this registry.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/shellgate/shellgate/store"
)

// Store is what the registry needs from the database.
type Store interface {
	RegisterReplica(ctx context.Context, r *store.Replica) error
	HeartbeatReplica(ctx context.Context, id string, now time.Time) error
	ListReplicas(ctx context.Context, since time.Time) ([]store.Replica, error)
	RemoveReplica(ctx context.Context, id string) error
	RemoveStaleReplicas(ctx context.Context, before time.Time) (int64, error)
}

// Defaults: a replica is presumed gone after missing a few heartbeats.
const (
	DefaultEvery      = 10 * time.Second
	DefaultStaleAfter = 45 * time.Second
)

// Member is this replica's membership.
type Member struct {
	Store Store
	Self  store.Replica // ID is filled in by New
	// Every is the heartbeat period; StaleAfter how old a heartbeat may get before the
	// replica is presumed gone.
	Every, StaleAfter time.Duration
	Log               *slog.Logger
}

// New returns a Member with a fresh random id and the defaults.
func New(st Store, peerAddress, version string, log *slog.Logger) *Member {
	b := make([]byte, 8)
	rand.Read(b)
	host, _ := os.Hostname()
	if log == nil {
		log = slog.Default()
	}
	return &Member{
		Store: st,
		Self:  store.Replica{ID: hex.EncodeToString(b), PeerAddress: peerAddress, Hostname: host, Version: version},
		Every: DefaultEvery, StaleAfter: DefaultStaleAfter, Log: log,
	}
}

// Register inserts this replica's row; call it once before Run (serve fails when the
// database refuses it).
func (m *Member) Register(ctx context.Context) error {
	now := time.Now()
	m.Self.StartedAt, m.Self.HeartbeatAt = now, now
	return m.Store.RegisterReplica(ctx, &m.Self)
}

// Run keeps the heartbeat until ctx ends, then removes this replica's row.
func (m *Member) Run(ctx context.Context) {
	t := time.NewTicker(m.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := m.Store.RemoveReplica(rctx, m.Self.ID); err != nil {
				m.Log.Warn("replica: could not deregister", "id", m.Self.ID, "err", err)
			}
			return
		case <-t.C:
			m.beat(ctx)
		}
	}
}

func (m *Member) beat(ctx context.Context) {
	now := time.Now()
	err := m.Store.HeartbeatReplica(ctx, m.Self.ID, now)
	if errors.Is(err, store.ErrNotFound) {
		// Another replica took us for gone (we were paused or cut off): come back.
		m.Log.Warn("replica: registration was removed as stale; registering again", "id", m.Self.ID)
		m.Self.HeartbeatAt = now
		err = m.Store.RegisterReplica(ctx, &m.Self)
	}
	if err != nil {
		m.Log.Warn("replica: heartbeat failed", "id", m.Self.ID, "err", err)
		return
	}
	if n, err := m.Store.RemoveStaleReplicas(ctx, now.Add(-m.StaleAfter)); err != nil {
		m.Log.Warn("replica: removing stale replicas failed", "err", err)
	} else if n > 0 {
		m.Log.Info("replica: removed replicas whose heartbeat stopped", "count", n)
	}
}

// Alive lists the replicas with a recent heartbeat, this one included.
func (m *Member) Alive(ctx context.Context) ([]store.Replica, error) {
	return m.Store.ListReplicas(ctx, time.Now().Add(-m.StaleAfter))
}
