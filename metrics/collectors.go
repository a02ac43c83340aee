package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shellgate/shellgate/terminal"
)

// terminalCollector reads live sessions from their owner at scrape time. Terminal
// bytes are counted without a hook in the data path: each scrape adds what every live
// session moved since the last look, and TerminalEnded adds the rest, so the counter
// moves during a session and never goes back when one ends.
type terminalCollector struct {
	sessions func() []terminal.SessionInfo

	live, bytes *prometheus.Desc

	mu       sync.Mutex
	seen     map[string][2]int64  // session id → bytes in, out already counted
	in, out  int64                // counted totals
	finished map[string]time.Time // recently ended sessions, pruned after a minute
}

func newTerminalCollector(sessions func() []terminal.SessionInfo) *terminalCollector {
	return &terminalCollector{
		sessions: sessions,
		live: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "terminal", "sessions"),
			"Terminal sessions alive now, by state: attached (a browser shows it) or detached (waiting for a resume).",
			[]string{"state"}, nil),
		bytes: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "terminal", "bytes_total"),
			"Terminal bytes, by direction: in (keystrokes and pastes to the server), out (output to the browser).",
			[]string{"direction"}, nil),
		seen:     make(map[string][2]int64),
		finished: make(map[string]time.Time),
	}
}

func (c *terminalCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.live
	ch <- c.bytes
}

func (c *terminalCollector) Collect(ch chan<- prometheus.Metric) {
	list := c.sessions()
	attached, detached := 0, 0
	c.mu.Lock()
	for _, s := range list {
		if s.Attached {
			attached++
		} else {
			detached++
		}
		if _, done := c.finished[s.ID]; done {
			continue // its end was counted while this list was being read
		}
		c.advance(s)
	}
	for id, at := range c.finished {
		if time.Since(at) > time.Minute {
			delete(c.finished, id)
		}
	}
	in, out := c.in, c.out
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(attached), "attached")
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(detached), "detached")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(out), "out")
}

// advance adds what s moved since it was last seen. Callers hold mu.
func (c *terminalCollector) advance(s terminal.SessionInfo) {
	prev := c.seen[s.ID]
	if d := s.BytesIn - prev[0]; d > 0 {
		c.in += d
		prev[0] = s.BytesIn
	}
	if d := s.BytesOut - prev[1]; d > 0 {
		c.out += d
		prev[1] = s.BytesOut
	}
	c.seen[s.ID] = prev
}

func (c *terminalCollector) started(info terminal.SessionInfo) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[info.ID]; !ok {
		c.seen[info.ID] = [2]int64{}
	}
}

func (c *terminalCollector) ended(info terminal.SessionInfo) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(info)
	delete(c.seen, info.ID)
	// A scrape may have read the session list just before the end: remember the id
	// for a minute (far longer than a scrape) so it is not counted again from zero.
	c.finished[info.ID] = time.Now()
}

// queueCollector reads the deployment queue from the store at scrape time.
type queueCollector struct {
	counts func(ctx context.Context) (map[string]int, error)
	desc   *prometheus.Desc
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := q.counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(q.desc, err)
		return
	}
	for _, state := range []string{"pending", "failed", "removing", "deployed"} {
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, float64(counts[state]), state)
	}
}
