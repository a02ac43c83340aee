package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/terminal"
)

// DefaultAckEvery is how much output Term acknowledges at once: a browser
// acks after xterm.js has rendered a write, and 256 KiB is a generous render
// batch.
const DefaultAckEvery = 256 << 10

// Term is a client of the terminal WebSocket protocol (docs/protocol.md),
// playing the browser: it opens a session, reads output frames, acknowledges
// offsets and types keystrokes as binary frames.
type Term struct {
	ws      *websocket.Conn
	Session terminal.SessionMessage

	wmu sync.Mutex // one writer at a time (gorilla/websocket)

	received atomic.Int64 // output offset: bytes received since the session began
	acked    atomic.Int64
	// ackEvery > 0: the reader acks whenever that much is unacknowledged.
	// 0: manual, the caller acks (a slow client).
	ackEvery atomic.Int64

	output atomic.Pointer[func([]byte)]

	done      chan struct{} // closed when the reader stops
	err       error         // why, once done
	closeCode int           // the server's close code, once done
}

// DialTerm connects to a terminal endpoint at url (ws://…), with header
// (Origin, cookies), sends open and returns once the shell is connected.
// Output arriving after that goes to the function given to SetOutput.
func DialTerm(ctx context.Context, url string, header http.Header, open terminal.OpenMessage) (*Term, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, url, header)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	t := &Term{ws: ws, done: make(chan struct{})}
	t.ackEvery.Store(DefaultAckEvery)
	if err := t.start(ctx, open); err != nil {
		ws.Close()
		return nil, err
	}
	go t.readLoop()
	return t, nil
}

// start sends open and reads control messages until status connected.
// Output that arrives first (none, as the bridge queues the session and
// status messages before any) would be counted and discarded.
func (t *Term) start(ctx context.Context, open terminal.OpenMessage) error {
	if err := t.Send(open); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	t.ws.SetReadDeadline(deadline)
	defer t.ws.SetReadDeadline(time.Time{})
	for {
		typ, data, err := t.ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		if typ == websocket.BinaryMessage {
			t.received.Add(int64(len(data)))
			continue
		}
		m, err := terminal.DecodeServerControl(data)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *terminal.SessionMessage:
			t.Session = *m
		case *terminal.StatusMessage:
			if m.State == terminal.StateConnected {
				return nil
			}
			if m.State == terminal.StateClosed {
				return fmt.Errorf("open: session closed: %s", m.Message)
			}
		case *terminal.ErrorMessage:
			return fmt.Errorf("open: error %d: %s", m.Code, m.Message)
		case *terminal.PromptMessage, *terminal.HostKeyMessage:
			return fmt.Errorf("open: unexpected %s (the benchmark pins keys and needs no prompts)", m.MessageType())
		}
	}
}

// SetOutput sets the function that receives output; it runs on the reader
// goroutine and must not keep p.
func (t *Term) SetOutput(fn func(p []byte)) { t.output.Store(&fn) }

// SetAckEvery switches between automatic acks every n bytes (n > 0) and
// manual acks with Ack (n == 0).
func (t *Term) SetAckEvery(n int64) { t.ackEvery.Store(n) }

// Received is the output offset so far.
func (t *Term) Received() int64 { return t.received.Load() }

// Acked is the last acknowledged offset.
func (t *Term) Acked() int64 { return t.acked.Load() }

// Ack acknowledges output up to offset (at most Received).
func (t *Term) Ack(offset int64) error {
	if offset <= t.acked.Load() {
		return nil
	}
	t.acked.Store(offset)
	return t.Send(terminal.AckMessage{Offset: offset})
}

// Type sends keystrokes as one binary frame.
func (t *Term) Type(p []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return t.ws.WriteMessage(websocket.BinaryMessage, p)
}

// Send sends a control message as a text frame.
func (t *Term) Send(m terminal.Message) error {
	data, err := terminal.EncodeControl(m)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return t.ws.WriteMessage(websocket.TextMessage, data)
}

// Close says goodbye with a normal close frame (the browser tab closing;
// the session stays detached on the server until its grace period ends)
// and waits briefly for the reader.
func (t *Term) Close() error {
	t.wmu.Lock()
	t.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	t.wmu.Unlock()
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
	}
	return t.ws.Close()
}

// Done is closed when the socket has ended; Err says why.
func (t *Term) Done() <-chan struct{} { return t.done }

// Err is the reason the reader stopped, after Done.
func (t *Term) Err() error { return t.err }

// CloseCode is the server's close code, after Done (0 if none came).
func (t *Term) CloseCode() int { return t.closeCode }

// readLoop is the only reader: output to the output function, acks,
// control messages (pong and status need nothing from a benchmark).
func (t *Term) readLoop() {
	defer close(t.done)
	var buf []byte
	for {
		typ, r, err := t.ws.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				t.closeCode = ce.Code
			}
			t.err = err
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				break // io.EOF ends the message; a real error surfaces on NextReader
			}
		}
		if typ != websocket.BinaryMessage {
			continue
		}
		off := t.received.Add(int64(len(buf)))
		if fn := t.output.Load(); fn != nil && *fn != nil {
			(*fn)(buf)
		}
		if every := t.ackEvery.Load(); every > 0 && off-t.acked.Load() >= every {
			t.Ack(off)
		}
	}
}

// AckAll acks everything received so far; benchmarks with automatic acks
// call it after a round trip so small outputs never accumulate into a
// closed window.
func (t *Term) AckAll() error { return t.Ack(t.received.Load()) }
