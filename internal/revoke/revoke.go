// Package revoke ends live terminals and file transfers when the access they were
// opened under ends: a sign-out, a password change or reset, an account disabled, an
// administrator ending a person's sessions, a removal from a stack's members, a server
// deleted or its host key re-pinned, a key detached or deleted.
//
// There is one mechanism for all of them. The store keeps an epoch per access scope
// (a user, a browser session, a membership, a server, a key, an attachment) and bumps
// it in the same transaction as the change that ends access (store.AccessStore). A
// live session takes a Grant: the epochs of its scopes when it was authorised. Hints
// on a Bus say "these scopes may have changed"; a session that hears one re-reads its
// epochs from the store and ends if one moved. Hints carry no state, so a hint lost
// or duplicated costs nothing but a read, and a hint from another process (PostgreSQL
// LISTEN/NOTIFY, or the Watch poll of the store's bump counter) works the same as
// one from this process.
package revoke

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/shellgate/shellgate/store"
)

// All is the scope of a hint that concerns every live session (a change this
// process did not see happen).
const All = "*"

// Bus carries hints. Publish must not block.
type Bus interface {
	Publish(scopes []string)
	// Subscribe calls wake (which must not block) for every hint naming one
	// of scopes, or All, until cancel is called.
	Subscribe(scopes []string, wake func()) (cancel func())
}

// LocalBus is the in-process Bus.
type LocalBus struct {
	mu   sync.Mutex
	subs map[string]map[*func()]struct{}
}

// NewLocalBus returns an empty bus.
func NewLocalBus() *LocalBus { return &LocalBus{subs: make(map[string]map[*func()]struct{})} }

func (b *LocalBus) Publish(scopes []string) {
	b.mu.Lock()
	woken := make(map[*func()]struct{})
	if len(scopes) == 1 && scopes[0] == All {
		for _, set := range b.subs {
			for f := range set {
				woken[f] = struct{}{}
			}
		}
	}
	for _, sc := range scopes {
		for f := range b.subs[sc] {
			woken[f] = struct{}{}
		}
	}
	b.mu.Unlock()
	for f := range woken {
		(*f)()
	}
}

func (b *LocalBus) Subscribe(scopes []string, wake func()) func() {
	f := &wake
	b.mu.Lock()
	for _, sc := range scopes {
		if b.subs[sc] == nil {
			b.subs[sc] = make(map[*func()]struct{})
		}
		b.subs[sc][f] = struct{}{}
	}
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, sc := range scopes {
				delete(b.subs[sc], f)
				if len(b.subs[sc]) == 0 {
					delete(b.subs, sc)
				}
			}
		})
	}
}

// Epochs is what the Service reads: store.Store satisfies it.
type Epochs interface {
	AccessEpochs(ctx context.Context, scopes []string) (map[string]store.AccessEpoch, error)
	AccessSeq(ctx context.Context) (int64, error)
	OnAccessChange(f func(seq int64, scopes []string))
}

// Service hands out Grants and turns the store's changes into hints.
type Service struct {
	st  Epochs
	bus Bus
	log *slog.Logger

	mu   sync.Mutex
	seen int64 // highest bump counter hinted so far
}

// New wires a Service: every bump the store commits in this process becomes a hint on
// bus at once.
func New(st Epochs, bus Bus, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	s := &Service{st: st, bus: bus, log: log}
	st.OnAccessChange(func(seq int64, scopes []string) {
		s.mu.Lock()
		s.seen = max(s.seen, seq)
		s.mu.Unlock()
		bus.Publish(scopes)
	})
	return s
}

// Watch polls the store's bump counter every interval until ctx ends and hints All
// when it moved beyond what this process published: a change made by another
// process (another replica, `shellgate user disable` from a shell) then reaches the
// sessions here within interval. With a bus that already delivers other processes'
// hints it is a safety net.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	if seq, err := s.st.AccessSeq(ctx); err == nil {
		s.mu.Lock()
		s.seen = max(s.seen, seq)
		s.mu.Unlock()
		// Grants taken before this first read may have missed a change made by another
		// process in between: one hint makes every live grant re-check against the store.
		s.bus.Publish([]string{All})
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq, err := s.st.AccessSeq(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("access watch: reading the revocation counter failed", "err", err)
			}
			continue
		}
		s.mu.Lock()
		moved := seq > s.seen
		s.seen = max(s.seen, seq)
		s.mu.Unlock()
		if moved {
			s.bus.Publish([]string{All})
		}
	}
}

// Grant records the epochs of the scopes a session was authorised under. Take it
// before checking the state it depends on (membership, the web session…): a change
// after Grant is seen by the Guard; a change before it, by that check.
func (s *Service) Grant(ctx context.Context, scopes ...string) (*Grant, error) {
	cur, err := s.st.AccessEpochs(ctx, scopes)
	if err != nil {
		return nil, err
	}
	g := &Grant{s: s, epochs: make(map[string]int64, len(scopes))}
	for _, sc := range scopes {
		g.epochs[sc] = cur[sc].Epoch
	}
	return g, nil
}

// Grant is what one session depends on. It satisfies terminal.Guard.
type Grant struct {
	s      *Service
	mu     sync.Mutex
	epochs map[string]int64
}

// Check returns the reason access ended, or "" while it holds.
func (g *Grant) Check(ctx context.Context) (string, error) {
	g.mu.Lock()
	scopes := make([]string, 0, len(g.epochs))
	for sc := range g.epochs {
		scopes = append(scopes, sc)
	}
	g.mu.Unlock()
	cur, err := g.s.st.AccessEpochs(ctx, scopes)
	if err != nil {
		return "", err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for sc, e := range cur {
		if was, ok := g.epochs[sc]; ok && e.Epoch > was {
			if e.Reason == "" {
				return "access was revoked", nil
			}
			return e.Reason, nil
		}
	}
	return "", nil
}

// retryAfter is how soon a check that could not read the store is tried again.
const retryAfter = time.Second

// Watch subscribes to hints for the grant's scopes, checks once at once and again on
// every hint, and calls revoked once, with the reason, when access ended. A check
// that cannot read the store is retried. stop is idempotent.
func (g *Grant) Watch(revoked func(reason string)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	wake := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	g.mu.Lock()
	scopes := make([]string, 0, len(g.epochs))
	for sc := range g.epochs {
		scopes = append(scopes, sc)
	}
	g.mu.Unlock()
	unsub := g.s.bus.Subscribe(scopes, wake)
	done := make(chan struct{})
	wake() // the first check: a change between Grant and Subscribe had no one to wake
	go func() {
		defer close(done)
		defer unsub()
		var retry <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-retry:
			}
			retry = nil
			reason, err := g.Check(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				g.s.log.Warn("access check failed; retrying", "err", err)
				retry = time.After(retryAfter)
				continue
			}
			if reason != "" {
				revoked(reason)
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// Add records more scopes at their current epochs (the key that authenticated, known
// only once the connection is up). Check the state those scopes stand for after Add.
func (g *Grant) Add(ctx context.Context, scopes ...string) error {
	cur, err := g.s.st.AccessEpochs(ctx, scopes)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, sc := range scopes {
		if _, ok := g.epochs[sc]; !ok {
			g.epochs[sc] = cur[sc].Epoch
		}
	}
	return nil
}
