package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// Sizes and counts; cmd/shellgate-bench passes them through. The defaults
// are the figures and fit the whole run in under ten minutes on two
// cores.
var (
	throughputMiB = flag.Int("sg.throughput-mib", 128, "terminal output per throughput run, MiB")
	echoCount     = flag.Int("sg.echo", 1000, "measured one-byte round trips per echo run")
	fileMiB       = flag.Int("sg.file-mib", 1024, "file size for download and upload, MiB")
	idleLevels    = flag.String("sg.idle", "100,1000", "idle session counts at which RSS is read")
	typingLevels  = flag.String("sg.typing", "10,100,500", "concurrent typing session counts")
	typingFor     = flag.Duration("sg.typing-for", 10*time.Second, "typing time per concurrency level")
	keysPerSec    = flag.Int("sg.keys-per-sec", 10, "keystrokes per second per typing session")
	floodFor      = flag.Duration("sg.flood-for", 60*time.Second, "flood duration")
	floodAckKiB   = flag.Int("sg.flood-ack-kib", 256, "slow client's ack rate during the flood, KiB/s")
	shellgateBin  = flag.String("sg.shellgate-bin", "", "shellgate binary (default: go build ./cmd/shellgate)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(m.Run())
}

// startSSHD starts the real OpenSSH sshd with the cipher pinned (so every
// client negotiates the same one) and room for a thousand connections
// opened briskly.
func startSSHD(b *testing.B) *SSHServer {
	b.Helper()
	d := testsshd.Start(b, testsshd.Options{ExtraConfig: []string{
		"Ciphers " + Cipher,
		"MaxStartups 256:30:1024",
		"LogLevel ERROR", // a thousand sessions would otherwise log a megabyte
	}})
	return &SSHServer{Host: d.Host, Port: d.Port, User: d.User, HostKey: d.HostKey,
		Signer: d.ClientSigner, KeyPath: d.ClientKeyPath, Dir: d.Dir}
}

func benchCtx(b *testing.B, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(b.Context(), d)
	b.Cleanup(cancel)
	return ctx
}

// paths are the ways to a PTY shell: (a) direct, (b) OpenSSH, (c) the real
// shellgate endpoint in its own process, and for echo also the bridge
// alone in this process, which tells the bridge's share of (c) from the
// HTTP server's and the second process's.
type path struct {
	name string
	dial func(ctx context.Context) (Shell, error)
}

func paths(srv *SSHServer, sg *Shellgate) []path {
	return []path{
		{"direct", func(context.Context) (Shell, error) { return DialDirect(srv) }},
		{"openssh", func(context.Context) (Shell, error) { return DialOpenSSH(srv) }},
		{"shellgate", func(ctx context.Context) (Shell, error) { return sg.Connect(ctx) }},
	}
}

// startShellgate builds (once per process, unless -sg.shellgate-bin) and
// starts the real shellgate for srv, ready for sessions terminals at once.
func startShellgate(b *testing.B, srv *SSHServer, sessions int) *Shellgate {
	b.Helper()
	bin := *shellgateBin
	if bin == "" {
		var err error
		if bin, err = BuildShellgate(b.Context(), b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	ctx := benchCtx(b, 5*time.Minute)
	sg, err := StartShellgate(ctx, bin, srv, sessions)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sg.Close() })
	return sg
}

// BenchmarkThroughput: a PTY session printing base64 of random bytes,
// direct with x/crypto/ssh, with the OpenSSH client, and through the
// bridge (acking every 256 KiB, as a browser acks after rendering).
func BenchmarkThroughput(b *testing.B) {
	srv := startSSHD(b)
	sg := startShellgate(b, srv, 1)
	for _, p := range paths(srv, sg) {
		b.Run(p.name, func(b *testing.B) {
			for range b.N {
				ctx := benchCtx(b, 5*time.Minute)
				sh, err := p.dial(ctx)
				if err != nil {
					b.Fatal(err)
				}
				n, d, err := Throughput(ctx, sh, *throughputMiB)
				sh.Close()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/d.Seconds()/1e6, "MB/s")
				b.ReportMetric(float64(n)/(1<<20), "MiB")
			}
		})
	}
}

// BenchmarkEcho: one-byte round trips through `stty raw -echo; cat`.
func BenchmarkEcho(b *testing.B) {
	srv := startSSHD(b)
	sg := startShellgate(b, srv, 1)
	bridge := NewInProcessBridge(srv)
	b.Cleanup(func() { bridge.Close() })
	all := append(paths(srv, sg), path{"bridge-inproc", func(ctx context.Context) (Shell, error) { return bridge.Connect(ctx) }})
	for _, p := range all {
		b.Run(p.name, func(b *testing.B) {
			for range b.N {
				ctx := benchCtx(b, 2*time.Minute)
				sh, err := p.dial(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := StartCat(ctx, sh); err != nil {
					sh.Close()
					b.Fatal(err)
				}
				lat, err := Echo(ctx, sh, *echoCount, 50)
				sh.Close()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(Micros(Percentile(lat, 50)), "p50-us")
				b.ReportMetric(Micros(Percentile(lat, 99)), "p99-us")
				b.ReportMetric(Micros(Percentile(lat, 100)), "max-us")
			}
		})
	}
}

// BenchmarkFiles: a file downloaded and uploaded with OpenSSH's sftp
// (defaults: 32 KiB requests, 64 in flight), and with shellgate's file
// HTTP API once it exists. Downloads go to /dev/null and uploads read
// from the page cache, so the figures are the transfer's, not the disk's;
// uploads still land on the remote disk (the same one).
func BenchmarkFiles(b *testing.B) {
	srv := startSSHD(b)
	// Readable by the sshd login user, outside its home; sftp reaches it by
	// absolute path (internal-sftp, no chroot).
	dir := b.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(dir, "source.bin")
	gen := exec.Command("sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > %s && chmod 644 %s", *fileMiB<<20, src, src))
	if out, err := gen.CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	size := float64(int64(*fileMiB) << 20)
	wantN, wantSum, err := FileSum(src)
	if err != nil {
		b.Fatal(err)
	}
	// Where shellgate uploads land: writable by the sshd login user.
	upDir := filepath.Join(dir, "up")
	if err := os.Mkdir(upDir, 0o777); err != nil || os.Chmod(upDir, 0o1777) != nil {
		b.Fatal("mkdir up:", err)
	}
	sg := startShellgate(b, srv, 1)
	ctx := benchCtx(b, 10*time.Minute)

	b.Run("download/openssh", func(b *testing.B) {
		for range b.N {
			d, err := SFTPBatch(ctx, srv, "get "+src+" /dev/null")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(size/d.Seconds()/1e6, "MB/s")
		}
	})
	b.Run("download/shellgate", func(b *testing.B) {
		for range b.N {
			t, err := sg.Download(ctx, src)
			if errors.Is(err, ErrNotBuilt) {
				b.Skip(err)
			}
			if err != nil {
				b.Fatal(err)
			}
			if t.Bytes != wantN || t.SHA256 != wantSum {
				b.Fatalf("download: got %d bytes, sha256 %x; want %d, %x", t.Bytes, t.SHA256, wantN, wantSum)
			}
			b.ReportMetric(size/t.Took.Seconds()/1e6, "MB/s")
		}
	})
	b.Run("upload/openssh", func(b *testing.B) {
		for range b.N {
			d, err := SFTPBatch(ctx, srv, "put "+src+" upload.bin")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(size/d.Seconds()/1e6, "MB/s")
			if _, err := SFTPBatch(ctx, srv, "rm upload.bin"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("upload/shellgate", func(b *testing.B) {
		for range b.N {
			name := "upload-" + strings.ToLower(rand.Text()[:8]) + ".bin"
			d, err := sg.Upload(ctx, src, upDir, name)
			if errors.Is(err, ErrNotBuilt) {
				b.Skip(err)
			}
			if err != nil {
				b.Fatal(err)
			}
			// The remote is this machine: check what landed.
			landed := filepath.Join(upDir, name)
			n, sum, err := FileSum(landed)
			os.Remove(landed)
			if err != nil {
				b.Fatal(err)
			}
			if n != wantN || sum != wantSum {
				b.Fatalf("upload: %d bytes landed, sha256 %x; want %d, %x", n, sum, wantN, wantSum)
			}
			b.ReportMetric(size/d.Seconds()/1e6, "MB/s")
		}
	})
}

func levels(b *testing.B, s string) []int {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			b.Fatalf("bad level %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out
}

// settledRSS waits for the server to go quiet, then reads its RSS: at
// least 2 s, then until two readings 1 s apart differ by under 1% (the Go
// scavenger returning the 64 MiB argon2 needs per sign-in), at most 30 s.
func settledRSS(b *testing.B, pid int) int64 {
	time.Sleep(2 * time.Second)
	prev, err := RSSKiB(pid)
	if err != nil {
		b.Fatal(err)
	}
	for range 28 {
		time.Sleep(time.Second)
		rss, err := RSSKiB(pid)
		if err != nil {
			b.Fatal(err)
		}
		if d := rss - prev; max(d, -d)*100 < prev {
			return rss
		}
		prev = rss
	}
	return prev
}

// BenchmarkSessions: memory of the bridge process (a child, so only the
// server is measured) with 0 and then more idle terminals, then the same
// terminals typing at once: echo latency under load.
func BenchmarkSessions(b *testing.B) {
	srv := startSSHD(b)
	most := slices.Max(append(levels(b, *idleLevels), levels(b, *typingLevels)...))
	ep := startShellgate(b, srv, most)
	if err := ep.Quiesce(benchCtx(b, time.Minute)); err != nil {
		b.Fatal(err)
	}
	ctx := benchCtx(b, 10*time.Minute)
	var terms []*Term
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, t := range terms {
			if t != nil {
				wg.Go(func() { t.Close() })
			}
		}
		wg.Wait()
	})

	rss0 := settledRSS(b, ep.PID())
	b.Run("idle=0", func(b *testing.B) { b.ReportMetric(float64(rss0), "RSS-KiB") })
	for _, n := range levels(b, *idleLevels) {
		b.Run(fmt.Sprintf("idle=%d", n), func(b *testing.B) {
			if n > len(terms) {
				more, err := OpenIdle(ctx, ep, n-len(terms), 8)
				terms = append(terms, more...)
				if err != nil {
					b.Fatal(err)
				}
			}
			rss := settledRSS(b, ep.PID())
			b.ReportMetric(float64(rss), "RSS-KiB")
			b.ReportMetric(float64(ep.GC().LiveMB), "live-MB")
			if n > 0 {
				b.ReportMetric(float64(rss-rss0)/float64(n), "KiB/session")
			}
		})
	}

	inCat := 0
	for _, n := range levels(b, *typingLevels) {
		b.Run(fmt.Sprintf("typing=%d", n), func(b *testing.B) {
			if n > len(terms) {
				more, err := OpenIdle(ctx, ep, n-len(terms), 8)
				terms = append(terms, more...)
				if err != nil {
					b.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for _, t := range terms[inCat:n] {
				wg.Go(func() { errs <- StartCat(ctx, t) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			inCat = max(inCat, n)
			shells := make([]Shell, n)
			for i := range n {
				shells[i] = terms[i]
			}
			reportTyping(b, Typing(ctx, shells, *keysPerSec, *typingFor))
		})
		// The same load straight to sshd with x/crypto/ssh: what the
		// machine itself does at this many sessions.
		b.Run(fmt.Sprintf("typing-direct=%d", n), func(b *testing.B) {
			shells := make([]Shell, n)
			b.Cleanup(func() {
				for _, sh := range shells {
					if sh != nil {
						sh.Close()
					}
				}
			})
			var wg sync.WaitGroup
			errs := make(chan error, n)
			sem := make(chan struct{}, 8)
			for i := range shells {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					sh, err := DialDirect(srv)
					if err == nil {
						shells[i] = sh
						err = StartCat(ctx, sh)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			reportTyping(b, Typing(ctx, shells, *keysPerSec, *typingFor))
		})
	}
}

func reportTyping(b *testing.B, res TypingResult) {
	if res.Lost > 0 {
		b.Errorf("%d of %d keystrokes never echoed", res.Lost, res.Sent)
	}
	b.ReportMetric(Micros(Percentile(res.Latencies, 50)), "p50-us")
	b.ReportMetric(Micros(Percentile(res.Latencies, 99)), "p99-us")
	b.ReportMetric(Micros(Percentile(res.Latencies, 100)), "max-us")
	b.ReportMetric(float64(len(res.Latencies)), "echoes")
}

// BenchmarkFlood: one terminal floods (`yes`) to a client that acks
// slowly; the bridge process's RSS is sampled throughout, then Ctrl+C is
// typed and the time until the remote `yes` is gone is measured.
func BenchmarkFlood(b *testing.B) {
	srv := startSSHD(b)
	ep := startShellgate(b, srv, 1)
	for range b.N {
		ctx := benchCtx(b, *floodFor+2*time.Minute)
		terms, err := OpenIdle(ctx, ep, 1, 1)
		if err != nil {
			b.Fatal(err)
		}
		t := terms[0]
		if err := ep.Quiesce(ctx); err != nil {
			b.Fatal(err)
		}
		before := settledRSS(b, ep.PID())
		gcBefore := ep.GC()
		ep.ResetGCPeaks()

		// The slow client: acks at a fixed rate, never more than received.
		t.SetAckEvery(0)
		t.AckAll()
		perTick := int64(*floodAckKiB) << 10 / 10
		ackCtx, stopAck := context.WithCancel(ctx)
		var ackWG sync.WaitGroup
		ackWG.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					t.Ack(min(t.Received(), t.Acked()+perTick))
				case <-ackCtx.Done():
					return
				}
			}
		})

		needle := "sgflood_" + strings.ToLower(rand.Text()[:10])
		start := time.Now()
		startOff := t.Received()
		if err := t.Type([]byte("yes " + needle + "\r")); err != nil {
			b.Fatal(err)
		}
		pid := 0
		for pid == 0 && time.Since(start) < 10*time.Second {
			time.Sleep(10 * time.Millisecond)
			pid = FindProcess(needle)
		}
		if pid == 0 {
			b.Fatal("the flood process did not appear")
		}
		peak := before
		sample := time.NewTicker(250 * time.Millisecond)
		for time.Since(start) < *floodFor {
			<-sample.C
			rss, err := RSSKiB(ep.PID())
			if err != nil {
				b.Fatal(err)
			}
			peak = max(peak, rss)
		}
		sample.Stop()
		end, _ := RSSKiB(ep.PID())
		gc := ep.GC()
		delivered := t.Received() - startOff
		elapsed := time.Since(start)

		// Ctrl+C, while the client is still acking slowly.
		sent := time.Now()
		if err := t.Type([]byte{0x03}); err != nil {
			b.Fatal(err)
		}
		for Alive(pid) && time.Since(sent) < 10*time.Second {
			time.Sleep(time.Millisecond)
		}
		ctrlC := time.Since(sent)
		if Alive(pid) {
			b.Errorf("Ctrl+C did not stop the flood within 10s")
		}
		stopAck()
		ackWG.Wait()
		t.Close()

		b.ReportMetric(float64(before), "RSS-before-KiB")
		b.ReportMetric(float64(peak-before), "growth-KiB")
		b.ReportMetric(float64(end-before), "end-growth-KiB")
		b.ReportMetric(float64(delivered)/elapsed.Seconds()/1024, "delivered-KiB/s")
		b.ReportMetric(float64(ctrlC)/float64(time.Millisecond), "ctrlc-ms")
		// The runtime's account (gctrace), to tell live data from GC headroom.
		b.ReportMetric(float64(gcBefore.LiveMB), "live-before-MB")
		b.ReportMetric(float64(gc.PeakLiveMB), "live-peak-MB")
		b.ReportMetric(float64(gc.PeakHeapMB), "heap-peak-MB")
		b.ReportMetric(float64(gc.PeakGoalMB), "goal-peak-MB")
		b.ReportMetric(float64(gc.Cycles-gc.CyclesAtMark), "gc-cycles")
	}
}
