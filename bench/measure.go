package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// NewMarker returns a marker unique to this run.
func NewMarker(what string) Marker { return Marker(what + "_" + strings.ToLower(rand.Text()[:8])) }

// Throughput types `head -c N /dev/urandom | base64` (N = outMiB × 3/4 MiB,
// so base64 prints outMiB MiB plus line ends) into sh and counts the output
// until the command's end marker. It returns the bytes received and the
// time from the keystroke to the marker.
func Throughput(ctx context.Context, sh Shell, outMiB int) (int64, time.Duration, error) {
	if err := Run(ctx, sh, "stty -echo", NewMarker("READY")); err != nil {
		return 0, 0, err
	}
	m := NewMarker("DONE")
	w := WatchFor(sh, m)
	cmd := fmt.Sprintf("head -c %d /dev/urandom | base64; %s\r", outMiB<<20*3/4, m.Command())
	start := time.Now()
	if err := sh.Type([]byte(cmd)); err != nil {
		return 0, 0, err
	}
	end, err := w.Wait(ctx)
	if err != nil {
		return 0, 0, err
	}
	return w.Bytes(), end.Sub(start), nil
}

// StartCat puts sh into `stty raw -echo; cat`, so every byte typed comes
// straight back, once, from the remote cat.
func StartCat(ctx context.Context, sh Shell) error {
	m := NewMarker("CAT")
	w := WatchFor(sh, m)
	if err := sh.Type([]byte("stty raw -echo; " + m.Command() + "; exec cat\r")); err != nil {
		return err
	}
	_, err := w.Wait(ctx)
	return err
}

// Echo measures n one-byte round trips through cat (after StartCat), one
// at a time, after warmup unmeasured ones.
func Echo(ctx context.Context, sh Shell, n, warmup int) ([]time.Duration, error) {
	var got atomic.Int64
	arrived := make(chan struct{}, 1)
	sh.SetOutput(func(p []byte) {
		got.Add(int64(len(p)))
		select {
		case arrived <- struct{}{}:
		default:
		}
	})
	// Drain anything left from StartCat (the marker's line end).
	time.Sleep(50 * time.Millisecond)
	base := got.Load()
	lat := make([]time.Duration, 0, n)
	key := []byte{'x'}
	for i := range n + warmup {
		timer := time.NewTimer(5 * time.Second)
		start := time.Now()
		if err := sh.Type(key); err != nil {
			return nil, err
		}
		for got.Load() < base+int64(i)+1 {
			select {
			case <-arrived:
			case <-timer.C:
				return nil, fmt.Errorf("echo %d: no answer within 5s", i)
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		d := time.Since(start)
		timer.Stop()
		if i >= warmup {
			lat = append(lat, d)
		}
	}
	return lat, nil
}

// Percentile returns the p-th percentile (0..100) of ds, nearest rank.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// Micros converts for reporting.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// RSSKiB reads VmRSS of a process from /proc.
func RSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// FindProcess returns the PID of a process whose command line contains
// needle (a random marker the benchmark put there), or 0.
func FindProcess(needle string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), needle) {
			return pid
		}
	}
	return 0
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
