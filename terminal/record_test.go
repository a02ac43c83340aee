package terminal

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type castEvent struct {
	T    float64
	Code string
	Data string
}

// parseCast checks every line is JSON and returns the header and events.
func parseCast(t *testing.T, b []byte) (CastHeader, []castEvent) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var h CastHeader
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
		t.Fatalf("header %q: %v", lines[0], err)
	}
	var evs []castEvent
	for _, l := range lines[1:] {
		if !utf8.ValidString(l) {
			t.Fatalf("line is not UTF-8: %q", l)
		}
		var raw []any
		if err := json.Unmarshal([]byte(l), &raw); err != nil || len(raw) != 3 {
			t.Fatalf("event line %q: %v", l, err)
		}
		evs = append(evs, castEvent{raw[0].(float64), raw[1].(string), raw[2].(string)})
	}
	return h, evs
}

func TestRecorderHeaderAndEvents(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf, CastHeader{Title: "web-1", Env: map[string]string{"TERM": "xterm-256color"}, Timestamp: 1700000000}, false)
	r.Resize(100, 30)
	r.Write([]byte("hello \x1b[1mworld\x1b[0m <&>\r\n"))
	r.Resize(120, 40)
	r.Resize(120, 40) // unchanged: no event
	if r.Input() != nil {
		t.Fatal("input recorded without opting in")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	h, evs := parseCast(t, buf.Bytes())
	if h.Version != 2 || h.Width != 100 || h.Height != 30 || h.Title != "web-1" || h.Timestamp != 1700000000 || h.Env["TERM"] != "xterm-256color" {
		t.Fatalf("header %+v", h)
	}
	if len(evs) != 2 || evs[0].Code != "o" || evs[0].Data != "hello \x1b[1mworld\x1b[0m <&>\r\n" || evs[1].Code != "r" || evs[1].Data != "120x40" {
		t.Fatalf("events %+v", evs)
	}
	if !strings.Contains(buf.String(), "<&>") {
		t.Fatal("HTML escaping makes the file harder to read")
	}
}

func TestRecorderTimingMonotonic(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf, CastHeader{}, true)
	// A clock that jumps backwards must not make events go back in time.
	steps := []time.Duration{time.Second, 3 * time.Second, 2 * time.Second, 5 * time.Second}
	i := 0
	r.since = func(time.Time) time.Duration { d := steps[i%len(steps)]; i++; return d }
	for range steps {
		r.Write([]byte("x"))
	}
	r.Input().Write([]byte("ls\r"))
	r.Close()
	_, evs := parseCast(t, buf.Bytes())
	if len(evs) != 5 {
		t.Fatalf("events %+v", evs)
	}
	for k := 1; k < len(evs); k++ {
		if evs[k].T < evs[k-1].T {
			t.Fatalf("time went back: %+v", evs)
		}
	}
	if evs[4].Code != "i" || evs[4].Data != "ls\r" {
		t.Fatalf("input event %+v", evs[4])
	}
}

func TestRecorderUTF8SplitAcrossWrites(t *testing.T) {
	text := "héllo — 世界 🎉 done"
	b := []byte(text)
	// Every way of cutting the text in two, and byte by byte.
	for cut := 0; cut <= len(b); cut++ {
		var buf bytes.Buffer
		r := NewRecorder(&buf, CastHeader{Width: 80, Height: 24}, false)
		r.Write(b[:cut])
		r.Write(b[cut:])
		r.Close()
		_, evs := parseCast(t, buf.Bytes())
		var got strings.Builder
		for _, e := range evs {
			got.WriteString(e.Data)
		}
		if got.String() != text {
			t.Fatalf("cut %d: got %q", cut, got.String())
		}
	}
	var buf bytes.Buffer
	r := NewRecorder(&buf, CastHeader{}, false)
	for i := range b {
		r.Write(b[i : i+1])
	}
	r.Close()
	_, evs := parseCast(t, buf.Bytes())
	var got strings.Builder
	for _, e := range evs {
		got.WriteString(e.Data)
	}
	if got.String() != text {
		t.Fatalf("byte by byte: got %q", got.String())
	}
}

func TestRecorderInvalidBytesStayValidJSON(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf, CastHeader{}, false)
	r.Write([]byte{'a', 0xff, 0xfe, 'b', 0x80})
	r.Write([]byte{0xe4, 0xb8}) // a truncated character at the very end
	r.Close()
	_, evs := parseCast(t, buf.Bytes())
	var got strings.Builder
	for _, e := range evs {
		got.WriteString(e.Data)
	}
	if !strings.HasPrefix(got.String(), "a") || !strings.Contains(got.String(), "b") || !strings.Contains(got.String(), "\uFFFD") {
		t.Fatalf("got %q", got.String())
	}
}

func FuzzCompleteUTF8(f *testing.F) {
	f.Add([]byte("世界"), 2)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		n := completeUTF8(b)
		if n < len(b)-3 || n > len(b) {
			t.Fatalf("cut %d of %d", n, len(b))
		}
		if utf8.Valid(b) && !utf8.Valid(b[:n]) {
			t.Fatalf("split a character: %q at %d", b, n)
		}
	})
}
