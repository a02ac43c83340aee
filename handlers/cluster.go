package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/shellgate/shellgate/hints"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// ClusterConfig lets one replica of several see and end the live sessions of the
// others. Each replica records the terminal sessions it holds; the live-sessions page
// lists every replica's, and ending one held elsewhere sends a hint that its owner
// acts on (hints carry the session id only; the owner re-checks it holds it).
type ClusterConfig struct {
	ReplicaID string                 // this replica's id in the registry
	Sessions  store.LiveSessionStore // which replica holds which session
	Hints     hints.Bus
}

// TopicTerminate asks the replica holding a terminal session to end it; the payload
// is the session id.
const TopicTerminate = "session.terminate"

// reasonTerminated is what the person sees when an administrator ends the session.
const reasonTerminated = "closed by an administrator"

// startCluster subscribes to the hints this replica acts on.
func (s *Server) startCluster() {
	c := s.cfg.Cluster
	if c == nil || c.Hints == nil {
		return
	}
	// For the process's lifetime: the bus closes with it.
	c.Hints.Subscribe(TopicTerminate, func(h hints.Hint) {
		if !h.Remote || h.Resync {
			return // ours were ended directly; a resync has nothing to re-read here
		}
		// Only the holder has it; everyone else gets ErrSessionNotFound and ignores it.
		if err := s.terms.Terminate(h.Payload, reasonTerminated); err != nil && !errors.Is(err, terminal.ErrSessionNotFound) {
			s.log.Warn("terminate from another replica", "session", h.Payload, "err", err)
		}
	})
}

// recordLive notes in the database that this replica holds a session.
func (s *Server) recordLive(id string, meta liveMeta, userID int64, info terminal.SessionInfo) {
	c := s.cfg.Cluster
	if c == nil {
		return
	}
	l := &store.LiveSession{ID: id, ReplicaID: c.ReplicaID, UserID: userID, Username: meta.User, Addr: info.Addr,
		Login: info.User, ClientIP: meta.ClientIP, StartedAt: info.Started, ServerName: info.Server}
	if meta.Stack != nil {
		l.StackID, l.StackName = meta.Stack.ID, meta.Stack.Name
	}
	if meta.Server != nil {
		l.ServerID, l.ServerName = meta.Server.ID, meta.Server.Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Sessions.AddLiveSession(ctx, l); err != nil {
		s.log.Warn("live session not recorded", "session", id, "err", err)
	}
}

// forgetLive removes the record when the session ends.
func (s *Server) forgetLive(id string) {
	c := s.cfg.Cluster
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Sessions.RemoveLiveSession(ctx, id); err != nil {
		s.log.Warn("live session record not removed", "session", id, "err", err)
	}
}
