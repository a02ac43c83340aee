package tunnel

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/shellgate/shellgate/store"
)

// EventAppender is the audit log, as the store offers it.
type EventAppender interface {
	AppendEvent(ctx context.Context, e *store.Event) error
}

// Audit returns an OnEvent function that writes agent lifecycle events to the
// audit log: enrolled, connected, disconnected (with the agent's address and
// the reason) and refused connections. No event carries a token.
func Audit(st EventAppender) func(Event) {
	return func(e Event) {
		d := map[string]string{"address": e.Addr}
		if e.Reason != "" {
			d["reason"] = e.Reason
		}
		ip := e.Addr
		if h, _, err := net.SplitHostPort(e.Addr); err == nil {
			ip = h
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = st.AppendEvent(ctx, &store.Event{
			At: time.Now(), Kind: e.Kind, ActorName: "agent", ClientIP: ip, OK: e.Kind != "agent.refused",
			Target: e.Server, Detail: d, ServerID: e.ServerID,
		})
	}
}

// AuditConnections returns an OnEvent function for the SourceHub: every
// proxied connection (who opened the tunnel, which tunnel and service, bytes
// each way, duration), proxies connecting and leaving, and expiries.
func AuditConnections(st EventAppender) func(ConnEvent) {
	return func(e ConnEvent) {
		d := map[string]string{"tunnel": strconv.FormatInt(e.Tunnel.ID, 10)}
		if e.Addr != "" {
			d["address"] = e.Addr
		}
		if e.Kind == "tunnel.connection" {
			d["service"] = e.Service
			d["bytes_up"] = strconv.FormatInt(e.Up, 10)
			d["bytes_down"] = strconv.FormatInt(e.Down, 10)
			d["duration_ms"] = strconv.FormatInt(e.Duration.Milliseconds(), 10)
		}
		if e.Err != "" {
			d["error"] = e.Err
		}
		ip := e.Addr
		if h, _, err := net.SplitHostPort(e.Addr); err == nil {
			ip = h
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = st.AppendEvent(ctx, &store.Event{
			At: time.Now(), Kind: e.Kind, ActorID: e.Tunnel.CreatedBy, ActorName: e.Tunnel.CreatorName, ClientIP: ip,
			OK: e.Err == "", Target: e.Tunnel.Server, Detail: d, StackID: e.Tunnel.StackID, ServerID: e.Tunnel.ServerID,
		})
	}
}
