// Package hints carries control hints between shellgate's replicas: "the sessions of
// user 7 were revoked", "stack 3's settings changed", "terminate session abc". A hint
// only says that some state in the database changed and where to look; the receiver
// re-reads that state, so a lost or repeated hint costs a re-read, never correctness.
// Hints never carry terminal bytes, secrets or anything a receiver must trust.
//
// Bus is what services depend on. Local delivers within one process (SQLite, one
// replica); Postgres adds PostgreSQL LISTEN/NOTIFY so every replica sharing the
// database hears every hint. When the listening connection is lost, hints published
// meanwhile are lost with it, so after every reconnect each subscriber receives a
// Hint with Resync set: re-read everything you follow.
package hints

import (
	"errors"
	"fmt"
	"sync"
)

// MaxPayload bounds a hint's payload: hints name things (ids), they do not carry them.
// PostgreSQL's own limit on a notification is 8000 bytes.
const MaxPayload = 1024

// Hint is one control hint.
type Hint struct {
	Topic   string // what kind of state changed, e.g. "session.revoked"
	Payload string // which one, e.g. a user id; small (MaxPayload)
	// Resync means hints may have been missed (the listening connection was lost and
	// is back): re-read all the state this subscriber follows. Payload is empty.
	Resync bool
	// Remote: the hint came from another replica (false for one published here).
	Remote bool
}

// Bus publishes hints to every replica, this one included, and hands them to
// subscribers.
type Bus interface {
	// Publish sends a hint. Subscribers in this process get it before Publish returns;
	// other replicas get it shortly after.
	Publish(topic, payload string) error
	// Subscribe calls fn for every hint on topic, and with a Resync hint after every
	// reconnect. fn runs on the bus's goroutine: it must return quickly (hand work to
	// a goroutine of its own). The returned func unsubscribes.
	Subscribe(topic string, fn func(Hint)) (unsubscribe func())
	// Close stops the bus; Publish fails afterwards.
	Close() error
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("hint bus closed")

func validate(topic, payload string) error {
	if topic == "" || len(topic) > 64 {
		return fmt.Errorf("hint topic %q: want 1 to 64 bytes", topic)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("hint payload of %d bytes: at most %d (a hint names state, it does not carry it)", len(payload), MaxPayload)
	}
	return nil
}

// subscribers is the in-process half that both buses share.
type subscribers struct {
	mu     sync.Mutex
	next   int
	byID   map[int]sub
	closed bool
}

type sub struct {
	topic string
	fn    func(Hint)
}

func (s *subscribers) Subscribe(topic string, fn func(Hint)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[int]sub{}
	}
	s.next++
	id := s.next
	s.byID[id] = sub{topic: topic, fn: fn}
	return func() {
		s.mu.Lock()
		delete(s.byID, id)
		s.mu.Unlock()
	}
}

// deliver calls the subscribers of h's topic (all subscribers for a Resync). The
// callbacks run outside the lock, so one may unsubscribe or publish.
func (s *subscribers) deliver(h Hint) {
	s.mu.Lock()
	var fns []func(Hint)
	for _, sb := range s.byID {
		if h.Resync || sb.topic == h.Topic {
			fns = append(fns, sb.fn)
		}
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(h)
	}
}

// Local is the Bus of a single process: SQLite, or tests.
type Local struct{ subscribers }

var _ Bus = (*Local)(nil)

// NewLocal returns an in-process bus.
func NewLocal() *Local { return &Local{} }

func (l *Local) Publish(topic, payload string) error {
	if err := validate(topic, payload); err != nil {
		return err
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	l.deliver(Hint{Topic: topic, Payload: payload})
	return nil
}

func (l *Local) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}
