package store

import (
	"strconv"
	"strings"
	"testing"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT * FROM t WHERE a = ? AND b = ?`, `SELECT * FROM t WHERE a = $1 AND b = $2`},
		{`VALUES (?,?,?)`, `VALUES ($1,$2,$3)`},
		{`SELECT '?', ? FROM t`, `SELECT '?', $1 FROM t`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`SELECT "we?rd" FROM t WHERE x = ?`, `SELECT "we?rd" FROM t WHERE x = $1`},
		{"SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
		{`SELECT /* a ? b */ ?`, `SELECT /* a ? b */ $1`},
		{`DO $$ SELECT '?' $$; SELECT ?`, `DO $$ SELECT '?' $$; SELECT $1`},
		{`DO $f$ ? $f$, ?`, `DO $f$ ? $f$, $1`},
		{`SELECT $1 FROM t`, `SELECT $1 FROM t`}, // already PostgreSQL's form
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzRebind: for text without $, rebinding changes nothing but the placeholders, and
// numbers them 1…n in order (undoing the numbering gives the input back).
func FuzzRebind(f *testing.F) {
	for _, s := range []string{`a = ? AND b = '?'`, `"?" ? -- ?`, `/* ? */ ?`, `?`, `'' ? ""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if strings.Contains(q, "$") || strings.ContainsAny(q, "0123456789") {
			return // ?1 would read back as $11; neither appears in shellgate's queries
		}
		out := rebind(q)
		var b strings.Builder
		n := 0
		for i := 0; i < len(out); i++ {
			if out[i] != '$' {
				b.WriteByte(out[i])
				continue
			}
			j := i + 1
			for j < len(out) && out[j] >= '0' && out[j] <= '9' {
				j++
			}
			n++
			if got, err := strconv.Atoi(out[i+1 : j]); err != nil || got != n {
				t.Fatalf("rebind(%q) = %q: placeholder %d numbered %q", q, out, n, out[i+1:j])
			}
			b.WriteByte('?')
			i = j - 1
		}
		if b.String() != q {
			t.Fatalf("rebind(%q) = %q, which undoes to %q", q, out, b.String())
		}
	})
}
