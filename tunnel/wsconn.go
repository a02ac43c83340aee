package tunnel

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn makes a WebSocket look like a net.Conn: each Write is one binary
// message, Read reads the messages' bytes in order. The multiplexer above it
// has one reader and one sender goroutine; Write is still locked so control
// frames sent by the heartbeat (WriteControl, safe from any goroutine) and
// Close never race a data frame.
type wsConn struct {
	ws *websocket.Conn
	r  io.Reader // current message; nil between messages

	wmu          sync.Mutex
	writeTimeout time.Duration
	// pending is a yamux data-frame header held back so that it travels in
	// one message with the body written right after it (yamux writes them
	// separately), halving the messages of a bulk transfer.
	pending []byte
	closeOnce    sync.Once // one close frame: the first closeWith's code wins
}

func newWSConn(ws *websocket.Conn, writeTimeout time.Duration) *wsConn {
	return &wsConn{ws: ws, writeTimeout: writeTimeout}
}

var errTextFrame = errors.New("agent link: text frame after the handshake")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// yamux frame header: version, type, flags (2), stream id (4), length (4).
const (
	muxHeaderSize = 12
	muxTypeData   = 0
)

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.pending == nil && len(p) == muxHeaderSize && p[1] == muxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		c.pending = append([]byte(nil), p...)
		return len(p), nil
	}
	if c.writeTimeout > 0 {
		c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	msg := p
	if c.pending != nil {
		msg = append(c.pending, p...)
		c.pending = nil
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a normal close frame (best effort) and closes the socket.
func (c *wsConn) Close() error { return c.closeWith(CloseNormal, "") }

func (c *wsConn) closeWith(code int, reason string) error {
	c.closeOnce.Do(func() {
		msg := websocket.FormatCloseMessage(code, reason)
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	})
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	c.ws.SetReadDeadline(t)
	return c.ws.SetWriteDeadline(t)
}
