package hints

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the PostgreSQL notification channel every replica listens on.
const Channel = "shellgate_hints"

// Postgres is the Bus of a replica on PostgreSQL: a hint is delivered in this process
// at once and sent with pg_notify to the others, which hear it on one dedicated
// LISTEN connection each.
type Postgres struct {
	subscribers
	origin  string // this bus's id, to skip our own notifications
	cfg     *pgx.ConnConfig
	publish func(ctx context.Context, channel, payload string) error
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	listening  chan struct{} // closed once the first LISTEN is in place
	listenOnce sync.Once
	// reconnected counts reconnects of the listening connection (tests watch it).
	reconnectedMu sync.Mutex
	reconnected   int
}

var _ Bus = (*Postgres)(nil)

// wire is a notification's payload.
type wire struct {
	Origin  string `json:"o"`
	Topic   string `json:"t"`
	Payload string `json:"p"`
}

// NewPostgres starts a bus: cfg opens the LISTEN connection (the store's parsed URL);
// publish sends one notification, typically through the store's pool:
//
//	hints.NewPostgres(st.PostgresConfig(), st.Notify, logger)
func NewPostgres(cfg *pgx.ConnConfig, publish func(ctx context.Context, channel, payload string) error, log *slog.Logger) *Postgres {
	if log == nil {
		log = slog.Default()
	}
	b := make([]byte, 8)
	rand.Read(b)
	cfg = cfg.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	origin := hex.EncodeToString(b)
	// Named, so an operator sees it in pg_stat_activity (and a test can cut it).
	cfg.RuntimeParams["application_name"] = "shellgate-hints-" + origin
	ctx, cancel := context.WithCancel(context.Background())
	p := &Postgres{
		origin: origin, cfg: cfg, publish: publish, log: log,
		ctx: ctx, cancel: cancel, done: make(chan struct{}), listening: make(chan struct{}),
	}
	go p.listen()
	return p
}

// Listening is closed once the first LISTEN is in place: hints published by other
// replicas from then on reach this one.
func (p *Postgres) Listening() <-chan struct{} { return p.listening }

func (p *Postgres) Publish(topic, payload string) error {
	if err := validate(topic, payload); err != nil {
		return err
	}
	if p.ctx.Err() != nil {
		return ErrClosed
	}
	p.deliver(Hint{Topic: topic, Payload: payload})
	msg, _ := json.Marshal(wire{Origin: p.origin, Topic: topic, Payload: payload})
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	return p.publish(ctx, Channel, string(msg))
}

// Close stops listening and waits for the listener to end.
func (p *Postgres) Close() error {
	p.cancel()
	<-p.done
	return nil
}

// healthEvery bounds how long a silently dead connection (a network partition, a
// failed-over server) goes unnoticed: the listener pings when no notification came.
const healthEvery = 15 * time.Second

func (p *Postgres) listen() {
	defer close(p.done)
	backoff := 100 * time.Millisecond
	first := true
	for p.ctx.Err() == nil {
		conn, err := p.connect()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.log.Warn("hint bus: cannot listen, retrying", "err", err, "in", backoff)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		p.listenOnce.Do(func() { close(p.listening) })
		if !first {
			// Whatever was published while we were away is lost: everyone re-reads.
			p.reconnectedMu.Lock()
			p.reconnected++
			p.reconnectedMu.Unlock()
			p.log.Info("hint bus: listening again; subscribers re-read their state")
			p.deliver(Hint{Resync: true, Remote: true})
		}
		first = false
		p.receive(conn)
		conn.Close(context.Background())
	}
}

func (p *Postgres) connect() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// receive hands notifications to subscribers until the connection fails or the bus
// closes.
func (p *Postgres) receive(conn *pgx.Conn) {
	for {
		ctx, cancel := context.WithTimeout(p.ctx, healthEvery)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		if p.ctx.Err() != nil {
			return
		}
		if err != nil {
			if ctx.Err() != nil && !conn.IsClosed() {
				pctx, pcancel := context.WithTimeout(p.ctx, 5*time.Second)
				err = conn.Ping(pctx)
				pcancel()
				if err == nil {
					continue // quiet, not dead
				}
			}
			p.log.Warn("hint bus: listening connection lost", "err", err)
			return
		}
		var w wire
		if err := json.Unmarshal([]byte(n.Payload), &w); err != nil || w.Topic == "" {
			p.log.Warn("hint bus: ignoring a malformed notification", "bytes", len(n.Payload))
			continue
		}
		if w.Origin == p.origin {
			continue // delivered locally when published
		}
		p.deliver(Hint{Topic: w.Topic, Payload: w.Payload, Remote: true})
	}
}

// Reconnects reports how many times the listening connection came back after a loss.
func (p *Postgres) Reconnects() int {
	p.reconnectedMu.Lock()
	defer p.reconnectedMu.Unlock()
	return p.reconnected
}
