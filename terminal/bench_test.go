package terminal

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkEchoLatency measures keystroke → echo round trips through the
// whole bridge (WebSocket, session, SSH, PTY echo and back) and, in the
// same run, straight over SSH; the extra p99 is what the bridge adds.
func BenchmarkEchoLatency(b *testing.B) {
	key := newSigner(b)
	srv := startServer(b, serverOpts{keys: []ssh.PublicKey{key.PublicKey()}})

	// Straight SSH.
	client, err := Dial(b.Context(), netDialer, srv.target("web-1", true), Auth{Signers: []ssh.Signer{key}}, nil, testOpts)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	sess, _ := client.NewSession()
	sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 1})
	in, _ := sess.StdinPipe()
	out, _ := sess.StdoutPipe()
	sess.Start("cat >/dev/null")
	buf := make([]byte, 64)
	direct := make([]time.Duration, 0, b.N)
	rt := func(i int) time.Duration {
		start := time.Now()
		k := []byte("a")
		if i%500 == 499 {
			k = []byte("\r")
		}
		in.Write(k)
		want := len(k)
		if k[0] == '\r' {
			want = 2
		}
		for got := 0; got < want; {
			n, err := out.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		return time.Since(start)
	}
	for i := range 200 { // warm up
		rt(i)
	}
	for i := range b.N {
		direct = append(direct, rt(i))
	}

	// Through the bridge.
	r := newRig(b, Config{}, sshHooks(srv, key, true, "bench"))
	c := r.dial()
	c.open("web-1")
	c.type_("cat >/dev/null\r")
	c.waitOutput("cat >/dev/null\r\n")
	time.Sleep(50 * time.Millisecond)
	bridged := make([]time.Duration, 0, b.N)
	brt := func(i int) time.Duration {
		k, want := "a", int64(1)
		if i%500 == 499 {
			k, want = "\r", 2
		}
		before := c.received()
		start := time.Now()
		c.type_(k)
		for c.received() < before+want {
			<-c.changed
		}
		return time.Since(start)
	}
	for i := range 200 {
		brt(i)
	}
	b.ResetTimer()
	for i := range b.N {
		bridged = append(bridged, brt(i))
	}
	b.StopTimer()
	p := func(d []time.Duration, q float64) float64 {
		slices.Sort(d)
		return float64(d[int(float64(len(d)-1)*q)].Microseconds())
	}
	b.ReportMetric(p(direct, 0.5), "direct-p50-µs")
	b.ReportMetric(p(direct, 0.99), "direct-p99-µs")
	b.ReportMetric(p(bridged, 0.5), "bridge-p50-µs")
	b.ReportMetric(p(bridged, 0.99), "bridge-p99-µs")
}
