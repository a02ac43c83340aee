package terminal

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// inputQueue is a session's keyboard path. The socket's reader pushes what the
// browser sent and never blocks; one goroutine (run) writes it to the remote
// stdin, blocking for as long as the SSH channel's window is closed. So a stdin
// that does not drain (a remote program that stops reading, a paste into a
// flood) never stops the reader from handling ack, resize and ping.
//
// limit bounds the bytes received but not yet written: the browser's input
// credit (InputWindow). The browser counts what it sent against the written
// offset the server reports (inputack), so a well-behaved browser never
// exceeds it; one that does broke the protocol.
type inputQueue struct {
	w        io.Writer // the remote stdin
	copy     io.Writer // optional copy of everything written (Hooks.InputRecorder)
	limit    int
	progress func() // called after each write, without locks held

	kick chan struct{} // cap 1: something was pushed

	mu       sync.Mutex
	buf      []byte // received, not yet taken by run
	spare    []byte // run's buffer from last time, reused
	received int64  // bytes pushed since the session began
	written  int64  // bytes written to w since the session began
	taken    int64  // bytes run is writing right now
}

func newInputQueue(w, copy io.Writer, limit int, progress func()) *inputQueue {
	if progress == nil {
		progress = func() {}
	}
	return &inputQueue{w: w, copy: copy, limit: limit, progress: progress, kick: make(chan struct{}, 1)}
}

// push queues p (copied). It fails, without queueing anything, when p would
// take the bytes not yet written beyond limit.
func (q *inputQueue) push(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	q.mu.Lock()
	if pending := len(q.buf) + int(q.taken); pending+len(p) > q.limit {
		q.mu.Unlock()
		return fmt.Errorf("%w: %d bytes of input beyond the %d-byte input window (%d not yet written)",
			ErrProtocol, len(p), q.limit, pending)
	}
	q.buf = append(q.buf, p...)
	q.received += int64(len(p))
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	return nil
}

// offsets returns the bytes received and written so far.
func (q *inputQueue) offsets() (received, written int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.received, q.written
}

// run writes queued input to w, in order, until ctx ends or a write fails
// (then it returns that error; later pushes are kept but never written).
// Closing w's channel (the SSH client) is what unblocks a write stuck on a
// closed window when the session ends.
func (q *inputQueue) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-q.kick:
		}
		for {
			q.mu.Lock()
			chunk := q.buf
			q.buf, q.spare = q.spare[:0], nil
			q.taken = int64(len(chunk))
			q.mu.Unlock()
			if len(chunk) == 0 {
				q.mu.Lock()
				q.spare = chunk
				q.mu.Unlock()
				break
			}
			n, err := q.w.Write(chunk)
			if q.copy != nil && n > 0 {
				q.copy.Write(chunk[:n]) // best effort, like the output recorder
			}
			q.mu.Lock()
			q.written += int64(n)
			q.taken = 0
			if cap(chunk) <= q.limit {
				q.spare = chunk[:0]
			}
			q.mu.Unlock()
			q.progress()
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
		}
	}
}
