package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/terminal"
)

// dbFDs counts this process's descriptors open on the database (the file, its
// WAL and its shared memory).
func dbFDs(t *testing.T, dbPath string) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dbPath) {
			n++
		}
	}
	return n
}

// TestBurstOfTerminalsKeepsDatabaseDescriptorsBounded: 200 terminals open at once
// (a team arriving at 9:00, or a script). Each one claims a ticket and writes audit
// rows; with an unbounded pool that opened one database connection (three
// descriptors) per request in flight, and they stayed. The pool stays within its
// bound during the burst, and once the terminals are closed and the idle time has
// passed the descriptors on the database are back to their baseline.
func TestBurstOfTerminalsKeepsDatabaseDescriptorsBounded(t *testing.T) {
	const n = 200
	f := newTermFixtureWith(t, testsshd.Options{ExtraConfig: []string{"MaxStartups 256:30:1024", "LogLevel ERROR"}},
		func(c *handlers.Config) {
			// One account opens them all: its caps are raised to the burst.
			c.Terminals = terminal.NewManager(terminal.Config{MaxPerUser: n, MaxPendingPerUser: n})
		})
	db := f.store.DB()
	// Production closes idle connections after a minute; the test does not wait that long.
	db.SetConnMaxIdleTime(time.Second)
	maxOpen := db.Stats().MaxOpenConnections
	if maxOpen <= 0 || maxOpen > 16 {
		t.Fatalf("database pool bound %d: want a small positive cap", maxOpen)
	}

	tickets := make([]string, n)
	for i := range tickets {
		tk, code := f.alice.ticket(f.stack.ID, f.server.ID)
		if code != http.StatusOK {
			t.Fatalf("ticket %d: %d", i, code)
		}
		tickets[i] = tk
	}
	base := dbFDs(t, f.dbPath)

	// Sample the descriptors while the burst runs.
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if k := int64(dbFDs(t, f.dbPath)); k > peak.Load() {
				peak.Store(k)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	u, _ := url.Parse(f.env.srv.URL)
	header := http.Header{"Origin": {f.env.srv.URL}}
	for _, c := range f.alice.c.Jar.Cookies(u) {
		header.Add("Cookie", c.Name+"="+c.Value)
	}
	socks := make([]*websocket.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+u.Host+"/api/terminal/ws", header)
			if err != nil {
				errs <- fmt.Errorf("terminal %d: dial: %w", i, err)
				return
			}
			socks[i] = ws
			msg, _ := terminal.EncodeControl(terminal.OpenMessage{Server: id(f.server.ID), Cols: 80, Rows: 24, Ticket: tickets[i]})
			ws.WriteMessage(websocket.TextMessage, msg)
			errs <- waitState(ws, terminal.StateConnected)
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d terminals did not connect", failed, n)
	}

	// Every shell exits: the sessions end for good (not detached).
	for i, ws := range socks {
		wg.Go(func() {
			ws.WriteMessage(websocket.BinaryMessage, []byte("exit\r"))
			if err := waitState(ws, terminal.StateClosed); err != nil {
				t.Errorf("terminal %d: %v", i, err)
			}
			ws.Close()
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	if p := peak.Load(); p > int64(3*maxOpen) {
		t.Errorf("%d descriptors on the database during the burst, more than %d connections can hold", p, maxOpen)
	}
	var now int
	if !poll(15*time.Second, func() bool { now = dbFDs(t, f.dbPath); return now <= base }) {
		t.Fatalf("descriptors on the database: %d after the burst, %d before (peak %d, %+v)", now, base, peak.Load(), db.Stats())
	}
	t.Logf("database descriptors: %d before, peak %d, %d after; pool cap %d", base, peak.Load(), now, maxOpen)
}

// waitState reads the socket until a status message with state arrives.
func waitState(ws *websocket.Conn, state string) error {
	ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", state, err)
		}
		if typ != websocket.TextMessage {
			continue
		}
		m, err := terminal.DecodeServerControl(data)
		if err != nil {
			return err
		}
		if s, ok := m.(*terminal.StatusMessage); ok && s.State == state {
			return nil
		}
	}
}
