// Package logring keeps the most recent warnings and errors of the structured log in
// memory, for the admin's system page. It is a log/slog handler that passes every
// record on to the real handler unchanged and copies those at or above a level into a
// fixed-size ring, so its memory is bounded whatever the log volume.
package logring

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Entry is one remembered record.
type Entry struct {
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   string // key=value pairs, groups dotted, as the text handler prints them
}

// Ring holds the last records; it is safe for concurrent use.
type Ring struct {
	mu      sync.Mutex
	entries []Entry // circular, len == cap once full
	next    int
	full    bool
	size    int
}

// New returns a ring that keeps the last size records.
func New(size int) *Ring {
	if size < 1 {
		size = 1
	}
	return &Ring{entries: make([]Entry, 0, size), size: size}
}

func (r *Ring) add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		r.entries = append(r.entries, e)
		if len(r.entries) == r.size {
			r.full = true
		}
		return
	}
	r.entries[r.next] = e
	r.next = (r.next + 1) % r.size
}

// Entries returns the remembered records, newest first.
func (r *Ring) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	n := len(r.entries)
	for i := 0; i < n; i++ {
		// The newest is just before next (or at the end before the ring filled).
		idx := (r.next - 1 - i + 2*n) % n
		if !r.full {
			idx = n - 1 - i
		}
		out = append(out, r.entries[idx])
	}
	return out
}

// Handler returns a slog.Handler that sends every record to next and copies records
// at or above min into r.
func (r *Ring) Handler(next slog.Handler, min slog.Level) slog.Handler {
	return &handler{next: next, ring: r, min: min}
}

type handler struct {
	next   slog.Handler
	ring   *Ring
	min    slog.Level
	prefix string // attrs added by WithAttrs, already formatted
	group  string // open group, dotted
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min || h.next.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= h.min {
		var b strings.Builder
		b.WriteString(h.prefix)
		rec.Attrs(func(a slog.Attr) bool {
			appendAttr(&b, h.group, a)
			return true
		})
		h.ring.add(Entry{Time: rec.Time, Level: rec.Level, Message: rec.Message, Attrs: strings.TrimSpace(b.String())})
	}
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	return &handler{next: h.next.WithAttrs(attrs), ring: h.ring, min: h.min, prefix: b.String(), group: h.group}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &handler{next: h.next.WithGroup(name), ring: h.ring, min: h.min, prefix: h.prefix, group: g}
}

// maxValue bounds one attribute's text so one huge error cannot fill memory.
const maxValue = 500

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	key := a.Key
	if group != "" {
		key = group + "." + key
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, sub := range a.Value.Group() {
			appendAttr(b, key, sub)
		}
		return
	}
	v := a.Value.String()
	if len(v) > maxValue {
		v = v[:maxValue] + "…"
	}
	if strings.ContainsAny(v, " \t\n\"=") {
		v = fmt.Sprintf("%q", v)
	}
	b.WriteString(" ")
	b.WriteString(key)
	b.WriteString("=")
	b.WriteString(v)
}
