package logring

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestRingKeepsNewestWarnings checks what the system page relies on: only warnings and
// errors are kept, newest first, at most size of them, and the real log still gets
// every record.
func TestRingKeepsNewestWarnings(t *testing.T) {
	var out bytes.Buffer
	r := New(3)
	log := slog.New(r.Handler(slog.NewTextHandler(&out, nil), slog.LevelWarn)).With("component", "test")
	log.Info("hello")
	for i := range 5 {
		log.Error("boom", "n", i, slog.Group("req", "path", "/x y"))
	}
	got := r.Entries()
	if len(got) != 3 {
		t.Fatalf("kept %d entries, want 3", len(got))
	}
	for i, e := range got {
		want := fmt.Sprintf("component=test n=%d req.path=\"/x y\"", 4-i)
		if e.Message != "boom" || e.Attrs != want || e.Level != slog.LevelError {
			t.Errorf("entry %d = %+v, want attrs %q", i, e, want)
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Errorf("the real handler got %d lines, want 6:\n%s", n, out.String())
	}
}

// TestRingBoundsValues keeps one huge error from filling memory.
func TestRingBoundsValues(t *testing.T) {
	r := New(2)
	log := slog.New(r.Handler(slog.DiscardHandler, slog.LevelWarn))
	log.Warn("big", "err", strings.Repeat("x", 10000))
	if e := r.Entries()[0]; len(e.Attrs) > maxValue+20 {
		t.Fatalf("attrs kept %d bytes", len(e.Attrs))
	}
	if len(r.Entries()) != 1 {
		t.Fatal("one record, one entry")
	}
}
