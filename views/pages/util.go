package pages

import (
	"strconv"
	"time"
)

func itoa(n int) string { return strconv.Itoa(n) }

// when formats a time for tables: UTC, to the minute, sortable.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// whenISO is the machine-readable form for <time datetime>.
func whenISO(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func i64(n int64) string { return strconv.FormatInt(n, 10) }

// day is a date without the time, for narrow columns.
func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// whenSec formats a log timestamp: UTC, to the second.
func whenSec(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// plural says "1 server" or "3 servers".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
