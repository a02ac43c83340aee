package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/bench"
	"github.com/shellgate/shellgate/internal/testsshd"
)

// The soak test is not part of `make test`: `make soak` runs it (SOAKFLAGS
// shortens it, e.g. SOAKFLAGS='-soak.sessions=50 -soak.for=1m').
var (
	soak         = flag.Bool("soak", false, "run TestSoak")
	soakSessions = flag.Int("soak.sessions", 200, "terminal sessions typing at once")
	soakFor      = flag.Duration("soak.for", 10*time.Minute, "how long they type")
	soakKeys     = flag.Int("soak.keys-per-sec", 5, "keystrokes per second per session")
	soakHeap     = flag.String("soak.heapprofile", "", "write a heap profile here after the close")
)

// processFigures are what must come back after a load: goroutines, open
// descriptors, resident memory.
type processFigures struct {
	goroutines, fds int
	rssKiB          int64
	heapMiB         float64 // Go heap in use (spans with live objects)
	stackMiB        float64 // goroutine stacks
	goMiB           float64 // memory the Go runtime holds from the OS (Sys − HeapReleased); RSS beyond it is outside Go (the SQLite driver's C-style heap, the binary)
}

func (p processFigures) String() string {
	return fmt.Sprintf("%d goroutines, %d descriptors, %.1f MiB RSS (Go heap in use %.1f MiB, stacks %.1f MiB, Go runtime total %.1f MiB)",
		p.goroutines, p.fds, float64(p.rssKiB)/1024, p.heapMiB, p.stackMiB, p.goMiB)
}

// measure returns the figures of this process after a GC that returns freed
// memory to the OS: what is still held, not garbage waiting for a cycle.
func measure(t *testing.T) processFigures {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	rss, err := bench.RSSKiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return processFigures{goroutines: runtime.NumGoroutine(), fds: len(fds), rssKiB: rss,
		heapMiB: float64(ms.HeapInuse) / (1 << 20), stackMiB: float64(ms.StackInuse) / (1 << 20),
		goMiB: float64(ms.Sys-ms.HeapReleased) / (1 << 20)}
}

func within(now, base, pct int64) bool { return now*100 <= base*(100+pct) }

// TestSoak: shellgate (run in this process, so its goroutines can be counted)
// serves soak.sessions terminals to a real sshd, all typing for soak.for, then
// closed by their shells exiting. Goroutines, descriptors and RSS must come back
// within 10 % of the baseline taken before the load. The client side runs in
// the same process; it is gone after the close, so it counts in neither figure.
func TestSoak(t *testing.T) {
	if !*soak {
		t.Skip("the soak test runs with -soak (make soak)")
	}
	d := testsshd.Start(t, testsshd.Options{ExtraConfig: []string{"MaxStartups 256:30:1024", "LogLevel ERROR"}})
	srv := &bench.SSHServer{Host: d.Host, Port: d.Port, User: d.User, HostKey: d.HostKey,
		Signer: d.ClientSigner, KeyPath: d.ClientKeyPath, Dir: d.Dir}

	ctx, cancel := context.WithTimeout(t.Context(), *soakFor+10*time.Minute)
	defer cancel()
	serveCtx, stopServe := context.WithCancel(ctx)
	password := "soak-" + strings.Repeat("x", 20)
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": password}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(serveCtx, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json",
			"--max-terminals", fmt.Sprint(*soakSessions + 10)},
			func(k string) string { return env[k] }, strings.NewReader(""), pw, io.Discard)
		pw.Close()
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "shellgate is listening on "); ok {
				urlc <- strings.TrimSpace(u)
			}
		}
	}()
	var url string
	select {
	case url = <-urlc:
	case err := <-done:
		t.Fatalf("shellgate stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("shellgate did not listen")
	}
	defer func() {
		stopServe()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	sg, err := bench.Attach(ctx, url, password, srv, *soakSessions)
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up: one terminal opened and closed, so lazily built state (the
	// HTTP client's and server's pools, templates) is in the baseline.
	warm, err := bench.OpenIdle(ctx, sg, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	closeTerms(t, warm)
	base := measure(t)
	t.Logf("baseline: %s", base)

	start := time.Now()
	terms, err := bench.OpenIdle(ctx, sg, *soakSessions, 8)
	if err != nil {
		closeTerms(t, terms)
		t.Fatal(err)
	}
	opened := time.Since(start)
	shells := make([]bench.Shell, len(terms))
	var wg sync.WaitGroup
	errs := make(chan error, len(terms))
	for i, tm := range terms {
		shells[i] = tm
		wg.Go(func() { errs <- bench.StartCat(ctx, tm) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			closeTerms(t, terms)
			t.Fatal(err)
		}
	}
	loaded := measure(t)
	res := bench.Typing(ctx, shells, *soakKeys, *soakFor)
	during := measure(t)
	// The client's own record of the run is not the server's memory: keep the
	// figures, drop the latencies before measuring again.
	p50, p99 := bench.Percentile(res.Latencies, 50), bench.Percentile(res.Latencies, 99)
	sent, lost := res.Sent, res.Lost
	res = bench.TypingResult{}
	shells = nil
	// The tabs close (cat in raw mode ignores Ctrl-C and Ctrl-D): each session
	// waits its grace period (60 s) for a resume, then ends.
	var cwg sync.WaitGroup
	for _, tm := range terms {
		cwg.Go(func() { tm.Close() })
	}
	cwg.Wait()
	terms = nil // the client's sockets are closed; their buffers are not the server's

	var after processFigures
	back := pollUntil(3*time.Minute, func() bool {
		after = measure(t)
		return within(int64(after.goroutines), int64(base.goroutines), 10) &&
			within(int64(after.fds), int64(base.fds), 10) && within(after.rssKiB, base.rssKiB, 10)
	})
	if *soakHeap != "" {
		if f, err := os.Create(*soakHeap); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	t.Logf("%d sessions opened in %s; typed %s at %d keys/s each: %d keystrokes, %d lost, echo p50 %s p99 %s",
		*soakSessions, opened.Round(time.Millisecond), *soakFor, *soakKeys, sent, lost, p50, p99)
	t.Logf("loaded: %s", loaded)
	t.Logf("after typing: %s", during)
	t.Logf("after close: %s", after)
	if lost > 0 {
		t.Errorf("%d of %d keystrokes never echoed", lost, sent)
	}
	if !back {
		t.Errorf("not back within 10 %% of the baseline (%s) three minutes after the close: %s", base, after)
	}
}

// closeTerms ends each shell at its prompt (exit), so the sessions end for
// good instead of waiting, detached, for a resume.
func closeTerms(t *testing.T, terms []*bench.Term) {
	t.Helper()
	var wg sync.WaitGroup
	for _, tm := range terms {
		if tm == nil {
			continue
		}
		wg.Go(func() {
			tm.Type([]byte("exit\r"))
			select {
			case <-tm.Done():
			case <-time.After(30 * time.Second):
				t.Errorf("a terminal did not close within 30 s of exit")
			}
			tm.Close()
		})
	}
	wg.Wait()
}
