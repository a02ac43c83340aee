package terminal

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// CastHeader is the first line of an asciicast v2 recording
// (https://docs.asciinema.org/manual/asciicast/v2/). Width and Height are
// filled from the session's first size when zero.
type CastHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Recorder writes a terminal session as asciicast v2: a JSON header line,
// then one `[seconds, code, data]` line per event. Write records output
// ("o"); Input returns a writer for keystrokes ("i"); Resize records "r".
//
// Every data string is valid UTF-8: a multi-byte character split across two
// writes is held back until it is complete, and bytes that can never be
// UTF-8 become U+FFFD (what a terminal would show). Times come from the
// monotonic clock and never go backwards. The header is written lazily, at
// the first size or event, so the session's real size goes into it.
//
// A Recorder is safe for concurrent use: output, input and resizes come
// from different goroutines. It never fails its caller's Write: a broken
// disk must not kill the shell (the error is kept for Close).
type Recorder struct {
	mu       sync.Mutex
	out      *bufio.Writer
	closer   io.Closer
	header   CastHeader
	started  bool // header written
	start    time.Time
	last     float64
	since    func(time.Time) time.Duration
	pendOut  []byte // incomplete UTF-8 tail of the output stream
	pendIn   []byte // same for input
	err      error
	closed   bool
	recordIn bool
	cols     int // size last recorded
	rows     int
}

// NewRecorder records into w (closed by Close when it is an io.Closer).
// Events are timed from now.
func NewRecorder(w io.Writer, h CastHeader, recordInput bool) *Recorder {
	h.Version = 2
	if h.Timestamp == 0 {
		h.Timestamp = time.Now().Unix()
	}
	r := &Recorder{out: bufio.NewWriterSize(w, 32<<10), header: h, start: time.Now(), since: time.Since, recordIn: recordInput}
	if c, ok := w.(io.Closer); ok {
		r.closer = c
	}
	return r
}

// Write records terminal output.
func (r *Recorder) Write(p []byte) (int, error) {
	r.event("o", &r.pendOut, p)
	return len(p), nil
}

// Input is a writer for the keystrokes sent to the server; nil when the
// recording does not include input (the default: it captures passwords).
func (r *Recorder) Input() io.Writer {
	if !r.recordIn {
		return nil
	}
	return inputRecorder{r}
}

type inputRecorder struct{ r *Recorder }

func (i inputRecorder) Write(p []byte) (int, error) {
	i.r.event("i", &i.r.pendIn, p)
	return len(p), nil
}

// Resize records the terminal's size: the first call sets the header's
// size, later ones write "r" events ("COLSxROWS").
func (r *Recorder) Resize(cols, rows int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if !r.started {
		r.header.Width, r.header.Height = cols, rows
		r.writeHeader()
		return
	}
	if cols == r.cols && rows == r.rows {
		return
	}
	r.cols, r.rows = cols, rows
	r.writeEvent("r", strconv.Itoa(cols)+"x"+strconv.Itoa(rows))
	r.flush()
}

func (r *Recorder) flush() {
	if err := r.out.Flush(); err != nil && r.err == nil {
		r.err = err
	}
}

// Close flushes what is pending (an incomplete character at the very end
// becomes U+FFFD) and closes the destination. It returns the first error
// the recording met.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	if !r.started {
		r.writeHeader()
	}
	if len(r.pendOut) > 0 {
		r.writeEvent("o", string(r.pendOut))
	}
	if len(r.pendIn) > 0 {
		r.writeEvent("i", string(r.pendIn))
	}
	r.closed = true
	if err := r.out.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	if r.closer != nil {
		if err := r.closer.Close(); err != nil && r.err == nil {
			r.err = err
		}
	}
	return r.err
}

// Err is the first write error, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Recorder) event(code string, pend *[]byte, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(p) == 0 {
		return
	}
	if !r.started {
		r.writeHeader()
	}
	buf := append(*pend, p...)
	cut := completeUTF8(buf)
	if cut > 0 {
		r.writeEvent(code, string(buf[:cut]))
	}
	*pend = append((*pend)[:0:0], buf[cut:]...)
	// Flush per event: a crash loses at most what the kernel has not
	// written, and a recording in progress can be played.
	r.flush()
}

// completeUTF8 returns how many leading bytes of b can be written now: all
// of b except a trailing, still incomplete multi-byte character.
func completeUTF8(b []byte) int {
	// A character is at most 4 bytes: look back at most 3 for its start.
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		c := b[i]
		if c < utf8.RuneSelf {
			return len(b) // ASCII: nothing pending
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b) // continuation bytes with no start: invalid, written as U+FFFD
}

func (r *Recorder) writeHeader() {
	r.started = true
	r.cols, r.rows = r.header.Width, r.header.Height
	line, err := json.Marshal(r.header)
	if err != nil {
		r.fail(err)
		return
	}
	r.write(append(line, '\n'))
}

// writeEvent writes one line; call with r.mu held.
func (r *Recorder) writeEvent(code, data string) {
	t := r.since(r.start).Seconds()
	if t < r.last {
		t = r.last
	}
	r.last = t
	// encoding/json turns invalid UTF-8 into U+FFFD, so the line is always
	// valid JSON; HTML escaping is off because nobody embeds this in HTML.
	var b []byte
	b = append(b, '[')
	b = strconv.AppendFloat(b, t, 'f', 6, 64)
	b = append(b, ", \""...)
	b = append(b, code...)
	b = append(b, "\", "...)
	b = appendJSONString(b, data)
	b = append(b, "]\n"...)
	r.write(b)
}

func (r *Recorder) write(b []byte) {
	if r.err != nil {
		return
	}
	if _, err := r.out.Write(b); err != nil {
		r.fail(err)
	}
}

func (r *Recorder) fail(err error) {
	if r.err == nil {
		r.err = errors.Join(errors.New("recording"), err)
	}
}

func appendJSONString(b []byte, s string) []byte {
	var sb jsonBuf
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	out := sb.b
	if n := len(out); n > 0 && out[n-1] == '\n' {
		out = out[:n-1]
	}
	return append(b, out...)
}

type jsonBuf struct{ b []byte }

func (j *jsonBuf) Write(p []byte) (int, error) { j.b = append(j.b, p...); return len(p), nil }
