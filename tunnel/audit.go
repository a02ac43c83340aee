package tunnel

import (
	"context"
	"net"
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
