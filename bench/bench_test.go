package bench

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// Sizes and counts; cmd/shellgate-bench passes them through. The defaults
// are the figures and fit the whole run in under ten minutes on two
// cores.
var (
	throughputMiB = flag.Int("sg.throughput-mib", 256, "terminal output per throughput run, MiB")
	echoCount     = flag.Int("sg.echo", 1000, "measured one-byte round trips per echo run")
	fileMiB       = flag.Int("sg.file-mib", 1024, "file size for download and upload, MiB")
	idleLevels    = flag.String("sg.idle", "100,1000", "idle session counts at which RSS is read")
	typingLevels  = flag.String("sg.typing", "10,100,500", "concurrent typing session counts")
	typingFor     = flag.Duration("sg.typing-for", 10*time.Second, "typing time per concurrency level")
	keysPerSec    = flag.Int("sg.keys-per-sec", 10, "keystrokes per second per typing session")
	floodFor      = flag.Duration("sg.flood-for", 60*time.Second, "flood duration")
	floodAckKiB   = flag.Int("sg.flood-ack-kib", 256, "slow client's ack rate during the flood, KiB/s")
	bridgeBin     = flag.String("sg.bridge-bin", "", "shellgate-bench binary for the bridge child (default: go build it)")
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

// paths are the three ways to a PTY shell; the bridge is in-process for
// throughput and latency, so both ends share one Go runtime as in the
// issue's plan until the real endpoint exists.
func paths(srv *SSHServer, ep Endpoint) []struct {
	name string
	dial func(ctx context.Context) (Shell, error)
} {
	return []struct {
		name string
		dial func(ctx context.Context) (Shell, error)
	}{
		{"direct", func(context.Context) (Shell, error) { return DialDirect(srv) }},
		{"openssh", func(context.Context) (Shell, error) { return DialOpenSSH(srv) }},
		{"bridge-inproc", func(ctx context.Context) (Shell, error) { return ep.Connect(ctx) }},
	}
}

// BenchmarkThroughput: a PTY session printing base64 of random bytes,
// direct with x/crypto/ssh, with the OpenSSH client, and through the
// bridge (acking every 256 KiB, as a browser acks after rendering).
func BenchmarkThroughput(b *testing.B) {
	srv := startSSHD(b)
	ep := NewInProcessBridge(srv)
	b.Cleanup(func() { ep.Close() })
	for _, p := range paths(srv, ep) {
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
	ep := NewInProcessBridge(srv)
	b.Cleanup(func() { ep.Close() })
	for _, p := range paths(srv, ep) {
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

// childBin returns the shellgate-bench binary for ChildBridge: the one
// given with -sg.bridge-bin (cmd/shellgate-bench passes itself), else one
// built now.
func childBin(b *testing.B) string {
	b.Helper()
	if *bridgeBin != "" {
		return *bridgeBin
	}
	out := filepath.Join(b.TempDir(), "shellgate-bench")
	cmd := exec.Command("go", "build", "-o", out, "github.com/shellgate/shellgate/cmd/shellgate-bench")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build shellgate-bench: %v\n%s", err, msg)
	}
	return out
}
