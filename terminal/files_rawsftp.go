package terminal

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// rawSFTP is a minimal SFTPv3 client for what pkg/sftp does not expose:
// the longname of SSH_FXP_NAME entries, where servers put the owner and
// group names ("-rw-r--r-- 1 alice staff …") that uid/gid alone cannot
// give us. It speaks OPENDIR/READDIR/CLOSE only, one request at a time, on
// an "sftp" subsystem session of its own.
type rawSFTP struct {
	mu      sync.Mutex
	session *ssh.Session
	w       io.WriteCloser
	r       *bufio.Reader
	id      uint32
	buf     []byte
	// broken is set once the stream is unusable (I/O error, malformed
	// reply, a request abandoned when its context ended); the session is
	// then closed and Files opens a new one.
	broken error
}

// SFTP packet types and flags used here (draft-ietf-secsh-filexfer-02).
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpClose    = 4
	fxpOpendir  = 11
	fxpReaddir  = 12
	fxpStatus   = 101
	fxpHandle   = 102
	fxpName     = 104
	fxStatusEOF = 1

	attrSize        = 0x00000001
	attrUIDGID      = 0x00000002
	attrPermissions = 0x00000004
	attrACModTime   = 0x00000008
	attrExtended    = 0x80000000

	// rawMaxPacket bounds what we accept from the server. OpenSSH sends
	// at most 100 names per SSH_FXP_NAME, far below this.
	rawMaxPacket = 1 << 20
)

// rawEntry is one SSH_FXP_NAME entry.
type rawEntry struct {
	name, longname string
	flags          uint32
	size           uint64
	uid, gid       uint32
	perm           uint32
	mtime          uint32
}

var errRawProtocol = errors.New("sftp: malformed reply")

func openRawSFTP(client *ssh.Client) (*rawSFTP, error) {
	s, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, err
	}
	c := &rawSFTP{session: s, w: w, r: bufio.NewReaderSize(r, 64<<10)}
	// SSH_FXP_INIT carries the version, not a request id.
	if err := c.send(fxpInit, func(b []byte) []byte { return binary.BigEndian.AppendUint32(b, 3) }); err != nil {
		s.Close()
		return nil, err
	}
	typ, _, err := c.recv()
	if err == nil && typ != fxpVersion {
		err = errRawProtocol
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return c, nil
}

func (c *rawSFTP) Close() error { return c.session.Close() }

// usable reports whether the session can take another request.
func (c *rawSFTP) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken == nil
}

// fail marks the session broken for good: a request whose reply was not
// read would desynchronise every later one.
func (c *rawSFTP) fail(err error) error {
	if c.broken == nil {
		c.broken = fmt.Errorf("%w: listing session: %v", sftp.ErrSSHFxConnectionLost, err)
		c.session.Close()
	}
	return c.broken
}

func (c *rawSFTP) send(typ byte, body func([]byte) []byte) error {
	b := append(c.buf[:0], 0, 0, 0, 0, typ)
	b = body(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.buf = b
	_, err := c.w.Write(b)
	return err
}

func (c *rawSFTP) recv() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > rawMaxPacket {
		return 0, nil, errRawProtocol
	}
	data := make([]byte, n-1)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return 0, nil, err
	}
	return hdr[4], data, nil
}

// request sends a packet with a fresh id followed by the given strings, and
// returns the reply's type and body after the id.
func (c *rawSFTP) request(typ byte, args ...string) (byte, []byte, error) {
	if c.broken != nil {
		return 0, nil, c.broken
	}
	typ, body, err := c.exchange(typ, args...)
	var status *sftp.StatusError
	if err != nil && !errors.As(err, &status) {
		return 0, nil, c.fail(err)
	}
	return typ, body, err
}

func (c *rawSFTP) exchange(typ byte, args ...string) (byte, []byte, error) {
	c.id++
	id := c.id
	err := c.send(typ, func(b []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, id)
		for _, a := range args {
			b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
			b = append(b, a...)
		}
		return b
	})
	if err != nil {
		return 0, nil, err
	}
	rt, data, err := c.recv()
	if err != nil {
		return 0, nil, err
	}
	rd := reader{b: data}
	if rd.u32() != id || rd.err != nil {
		return 0, nil, errRawProtocol
	}
	if rt == fxpStatus {
		code := rd.u32()
		if rd.err != nil {
			return 0, nil, errRawProtocol
		}
		// pkg/sftp's StatusError, so that classify treats both clients alike.
		return rt, nil, &sftp.StatusError{Code: code}
	}
	return rt, rd.b, nil
}

// readDir lists dir, stopping after limit entries (truncated reports that).
// "." and ".." are left out.
func (c *rawSFTP) readDir(ctx context.Context, dir string, limit int) (entries []rawEntry, truncated bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A server that stops answering must not hold the caller past ctx:
	// closing the session fails the pending read.
	stop := context.AfterFunc(ctx, func() { c.session.Close() })
	defer func() {
		if !stop() { // ctx ended and the session was closed
			c.fail(ctx.Err())
			if err != nil {
				err = ctx.Err()
			}
		}
	}()
	typ, body, err := c.request(fxpOpendir, dir)
	if err != nil {
		return nil, false, err
	}
	rd := reader{b: body}
	handle := rd.str()
	if typ != fxpHandle || rd.err != nil {
		return nil, false, errRawProtocol
	}
	defer func() {
		if _, _, cerr := c.request(fxpClose, handle); cerr != nil && !isStatusOK(cerr) && err == nil {
			err = cerr
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		typ, body, err := c.request(fxpReaddir, handle)
		var status *sftp.StatusError
		if errors.As(err, &status) && status.Code == fxStatusEOF {
			return entries, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if typ != fxpName {
			return nil, false, errRawProtocol
		}
		rd := reader{b: body}
		count := rd.u32()
		for range count {
			e := rawEntry{name: rd.str(), longname: rd.str()}
			rd.attrs(&e)
			if rd.err != nil {
				return nil, false, rd.err
			}
			if e.name == "." || e.name == ".." {
				continue
			}
			if len(entries) == limit {
				return entries, true, nil
			}
			entries = append(entries, e)
		}
		if rd.err != nil {
			return nil, false, rd.err
		}
	}
}

func isStatusOK(err error) bool {
	var status *sftp.StatusError
	return errors.As(err, &status) && status.Code == 0
}

// reader decodes SFTP wire types, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) str() string {
	n := r.u32()
	if r.err != nil || uint64(len(r.b)) < uint64(n) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) attrs(e *rawEntry) {
	e.flags = r.u32()
	if e.flags&attrSize != 0 {
		e.size = r.u64()
	}
	if e.flags&attrUIDGID != 0 {
		e.uid, e.gid = r.u32(), r.u32()
	}
	if e.flags&attrPermissions != 0 {
		e.perm = r.u32()
	}
	if e.flags&attrACModTime != 0 {
		r.u32() // atime
		e.mtime = r.u32()
	}
	if e.flags&attrExtended != 0 {
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.str()
			r.str()
		}
	}
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: short packet", errRawProtocol)
	}
}
