package hints

import (
	"strings"
)

// AllScopes stands for every scope: a receiver re-checks everything it holds.
const AllScopes = "*"

// Scopes carries scope-named changes (revocations: "user:7", "web:…", "server:3") from
// an in-process notifier to the other replicas and back. Announce is called with the
// scopes of every change committed in this process; Wake is this process's notifier,
// called with the scopes another replica announced, or with AllScopes after the bus
// reconnected (hints may have been lost). Changes made here are not handed back to
// Wake: the in-process notifier has them already.
type Scopes struct {
	bus   Bus
	topic string
	unsub func()
}

// BridgeScopes subscribes wake to the scope hints of topic on bus.
func BridgeScopes(bus Bus, topic string, wake func(scopes []string)) *Scopes {
	s := &Scopes{bus: bus, topic: topic}
	s.unsub = bus.Subscribe(topic, func(h Hint) {
		switch {
		case !h.Remote:
			// Published here: the local notifier woke its sessions already.
		case h.Resync:
			wake([]string{AllScopes})
		default:
			wake(strings.Split(h.Payload, "\n"))
		}
	})
	return s
}

// Announce publishes scopes to the other replicas. It does not block the caller (it
// is called from inside the store's commit path): the send runs on its own goroutine,
// and a failure only delays the others until their next poll or resync. Too many
// scopes for one hint become AllScopes.
func (s *Scopes) Announce(scopes []string) {
	payload := strings.Join(scopes, "\n")
	if len(payload) > MaxPayload || len(scopes) == 0 {
		payload = AllScopes
	}
	go s.bus.Publish(s.topic, payload) //nolint:errcheck // hints are best effort; the bus logs
}

// Close stops waking.
func (s *Scopes) Close() { s.unsub() }
