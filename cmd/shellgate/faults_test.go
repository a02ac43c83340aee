package main

// Fault tests: the real shellgate binary in its own process, a real OpenSSH sshd,
// and faults injected the way an operator or a crash injects them: signals by PID,
// SIGKILL, SIGSTOP.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/bench"
	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/internal/testsshd"
	"github.com/shellgate/shellgate/terminal"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// shellgateBinary builds cmd/shellgate once per test process.
func shellgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shellgate-faults-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin, buildErr = bench.BuildShellgate(context.Background(), dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	// testpg.Run stops the PostgreSQL cluster the replica tests start, if any.
	code := testpg.Run(m.Run)
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// faultRig is a real sshd (throwaway login user) and the real shellgate binary
// set up for it over HTTP as an administrator would.
type faultRig struct {
	sshd *testsshd.SSHD
	sg   *bench.Shellgate
}

func newFaultRig(t *testing.T, terminals int, args ...string) *faultRig {
	t.Helper()
	d := testsshd.Start(t, testsshd.Options{ExtraConfig: []string{"LogLevel ERROR"}})
	d.RequireThrowawayUser(t)
	srv := &bench.SSHServer{Host: d.Host, Port: d.Port, User: d.User, HostKey: d.HostKey,
		Signer: d.ClientSigner, KeyPath: d.ClientKeyPath, Dir: d.Dir}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	sg, err := bench.StartShellgate(ctx, shellgateBinary(t), srv, terminals, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shellgate log:\n%s", sg.Log())
		}
		sg.Close()
	})
	return &faultRig{sshd: d, sg: sg}
}

// slowReader yields size pseudo-random bytes (seeded, so the test can hash them)
// at about rate bytes per second.
type slowReader struct {
	rng       *mathrand.ChaCha8
	left      int64
	rate      int
	started   chan struct{} // closed after the first read
	startOnce sync.Once
}

func newSlowReader(seed byte, size int64, rate int) *slowReader {
	return &slowReader{rng: mathrand.NewChaCha8([32]byte{seed}), left: size, rate: rate, started: make(chan struct{})}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), int64(r.rate/20), r.left)]
	// Throttling, not synchronisation: each read takes its share of a second.
	time.Sleep(time.Duration(len(p)) * time.Second / time.Duration(r.rate))
	r.rng.Read(p)
	r.left -= int64(len(p))
	r.startOnce.Do(func() { close(r.started) })
	return len(p), nil
}

func seededSum(seed byte, size int64) [32]byte {
	h := sha256.New()
	io.Copy(h, io.LimitReader(mathrand.NewChaCha8([32]byte{seed}), size))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// transferResult is how a transfer ended, seen by the client.
type transferResult struct {
	status int
	bytes  int64
	sum    [32]byte
	err    error
}

// slowUpload sends size bytes at rate into dir/name; started closes when
// the body is flowing.
func (r *faultRig) slowUpload(ctx context.Context, dir, name string, body *slowReader) <-chan transferResult {
	out := make(chan transferResult, 1)
	go func() {
		q := url.Values{"dir": {dir}, "name": {name}, "size": {strconv.FormatInt(body.left, 10)}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, r.sg.FilesURL("upload", q), body)
		req.ContentLength = body.left
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := r.sg.Admin().Do(req)
		if err != nil {
			out <- transferResult{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out <- transferResult{status: resp.StatusCode}
	}()
	return out
}

// slowDownload reads remote at about rate bytes per second and hashes it;
// started closes when the first bytes have arrived.
func (r *faultRig) slowDownload(ctx context.Context, remote string, rate int, started chan<- struct{}) <-chan transferResult {
	out := make(chan transferResult, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.sg.FilesURL("download", url.Values{"path": {remote}}), nil)
		resp, err := r.sg.Admin().Do(req)
		if err != nil {
			close(started)
			out <- transferResult{err: err}
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		buf := make([]byte, rate/20)
		var n int64
		first := true
		for {
			k, err := io.ReadFull(resp.Body, buf)
			h.Write(buf[:k])
			n += int64(k)
			if first {
				close(started)
				first = false
			}
			if err != nil {
				res := transferResult{status: resp.StatusCode, bytes: n}
				copy(res.sum[:], h.Sum(nil))
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					res.err = err
				} else if err == io.ErrUnexpectedEOF && n < resp.ContentLength {
					res.err = err
				}
				out <- res
				return
			}
			time.Sleep(50 * time.Millisecond) // throttling, not synchronisation
		}
	}()
	return out
}

func (r *faultRig) readyz(t *testing.T) int {
	resp, err := http.Get(r.sg.URL + "/readyz")
	if err != nil {
		return 0 // not listening any more: not ready either
	}
	resp.Body.Close()
	return resp.StatusCode
}

func tempUploads(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if terminal.IsTempName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// inFlight starts what the SIGTERM tests cut into: three terminals at their
// prompt, an upload and a download of size bytes at rate bytes per second,
// both flowing.
func (r *faultRig) inFlight(t *testing.T, ctx context.Context, size int64, rate int) ([]*bench.Term, <-chan transferResult, <-chan transferResult) {
	t.Helper()
	home := r.sshd.Home
	src := make([]byte, size)
	rand.Read(src)
	if err := os.WriteFile(filepath.Join(home, "source.bin"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	terms, err := bench.OpenIdle(ctx, r.sg, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, tm := range terms {
			if tm != nil {
				tm.Close()
			}
		}
	})
	body := newSlowReader(7, size, rate)
	up := r.slowUpload(ctx, home, "upload.bin", body)
	dlStarted := make(chan struct{})
	down := r.slowDownload(ctx, home+"/source.bin", rate, dlStarted)
	<-body.started
	<-dlStarted
	if !pollUntil(10*time.Second, func() bool { return len(tempUploads(t, home)) == 1 }) {
		t.Fatal("the upload's temporary file did not appear")
	}
	return terms, up, down
}

// restartMessage waits for each terminal's socket to end and checks it was
// told the server is restarting (close code 1001 and the plain message).
func restartMessage(t *testing.T, terms []*bench.Term) {
	t.Helper()
	for i, tm := range terms {
		select {
		case <-tm.Done():
		case <-time.After(15 * time.Second):
			t.Fatalf("terminal %d still open after shutdown", i)
		}
		var ce *websocket.CloseError
		if tm.CloseCode() != terminal.CloseGoingAway || !errors.As(tm.Err(), &ce) || !strings.Contains(ce.Text, "restarting") {
			t.Errorf("terminal %d ended with %d %v, want 1001 and the restart message", i, tm.CloseCode(), tm.Err())
		}
	}
}

// TestSIGTERMLetsTransfersFinish: SIGTERM arrives while an upload, a download and
// three terminals are in flight (a rolling deploy). /readyz turns 503 at once so
// the load balancer stops sending work; the transfers finish, byte for byte,
// within the drain period; the terminals are told the server is restarting; the
// process exits with status 0 and leaves no temporary file.
func TestSIGTERMLetsTransfersFinish(t *testing.T) {
	r := newFaultRig(t, 3, "--drain-timeout", "30s")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const size, rate = 6 << 20, 2 << 20 // three seconds each
	if code := r.readyz(t); code != http.StatusOK {
		t.Fatalf("/readyz before: %d", code)
	}
	terms, up, down := r.inFlight(t, ctx, size, rate)

	sent := time.Now()
	if err := r.sg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !pollUntil(2*time.Second, func() bool { return r.readyz(t) != http.StatusOK }) {
		t.Error("/readyz still 200 two seconds into the drain")
	}
	u, d := <-up, <-down
	if u.err != nil || u.status != http.StatusOK {
		t.Errorf("upload during the drain: %d %v", u.status, u.err)
	}
	got, err := os.ReadFile(filepath.Join(r.sshd.Home, "upload.bin"))
	if err != nil || sha256.Sum256(got) != seededSum(7, size) {
		t.Errorf("uploaded file incomplete or different: %d bytes, %v", len(got), err)
	}
	src, _ := os.ReadFile(filepath.Join(r.sshd.Home, "source.bin"))
	if d.err != nil || d.status != http.StatusOK || d.bytes != size || d.sum != sha256.Sum256(src) {
		t.Errorf("download during the drain: %d, %d bytes, %v", d.status, d.bytes, d.err)
	}
	restartMessage(t, terms)
	if err := r.sg.Wait(30 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took := time.Since(sent); took > 30*time.Second {
		t.Errorf("shutdown took %s, longer than the drain period", took)
	}
	if left := tempUploads(t, r.sshd.Home); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestSIGTERMWithShortDrainCutsTransfers: with a 1 s drain period, transfers that
// cannot finish in time are cut when it ends; the upload's temporary file is
// removed before the process exits (status 0), and the terminals are told.
func TestSIGTERMWithShortDrainCutsTransfers(t *testing.T) {
	r := newFaultRig(t, 3, "--drain-timeout", "1s")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const size, rate = 32 << 20, 1 << 20 // half a minute each: far past the drain
	terms, up, down := r.inFlight(t, ctx, size, rate)

	sent := time.Now()
	if err := r.sg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.sg.Wait(20 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	took := time.Since(sent)
	if took < time.Second {
		t.Errorf("exited after %s, before the drain period", took)
	}
	// The temporary file was removed before the process ended: look now.
	if left := tempUploads(t, r.sshd.Home); len(left) > 0 {
		t.Errorf("temporary files left after exit: %v", left)
	}
	if _, err := os.Stat(filepath.Join(r.sshd.Home, "upload.bin")); !os.IsNotExist(err) {
		t.Errorf("a cut upload became a file: %v", err)
	}
	if u := <-up; u.err == nil && u.status == http.StatusOK {
		t.Error("the upload succeeded although it was cut")
	}
	if d := <-down; d.err == nil && d.bytes == size {
		t.Error("the download completed although it was cut")
	}
	restartMessage(t, terms)
}

// TestDeploymentOfAKilledProcessIsRetried: shellgate is SIGKILLed while its
// worker holds a deployment (two-minute lease); the restarted process reclaims
// the job of the worker that is gone and deploys it within seconds, not after
// the lease.
func TestDeploymentOfAKilledProcessIsRetried(t *testing.T) {
	r := newFaultRig(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(r.sg.DataDir(), "shellgate.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The administrator installs shellgate's key on the server, as the stack
	// page tells them to.
	gw, err := r.sg.Admin().GatewayKey(ctx, r.sg.StackID)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := os.OpenFile(r.sshd.AuthorizedKeysPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(ak, gw)
	ak.Close()
	if err := r.sg.Admin().Retry(ctx, r.sg.StackID); err != nil {
		t.Fatal(err)
	}
	state := func(key string) (state, token string) {
		db.QueryRow(`SELECT state, claim_token FROM deployments WHERE key_name = ?`, key).Scan(&state, &token)
		return state, token
	}
	if !pollUntil(30*time.Second, func() bool { s, _ := state("benchkey"); return s == "deployed" }) {
		t.Fatal("the first key was not deployed")
	}

	// sshd stops answering (SIGSTOP): the next deployment hangs in its handshake.
	pidText, err := os.ReadFile(filepath.Join(r.sshd.Dir, "sshd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	sshdPID, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err := syscall.Kill(sshdPID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(sshdPID, syscall.SIGCONT)
		}
	}()
	if err := r.sg.Admin().AttachKey(ctx, r.sg.StackID, "second", newKeyPEM(t)); err != nil {
		t.Fatal(err)
	}
	var firstToken string
	if !pollUntil(20*time.Second, func() bool { _, firstToken = state("second"); return firstToken != "" }) {
		t.Fatal("the second key's deployment was not claimed")
	}

	// The process dies holding the claim; it comes back, and sshd with it.
	if err := r.sg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	syscall.Kill(sshdPID, syscall.SIGCONT)
	stopped = false
	if !pollUntil(20*time.Second, func() bool { s, _ := state("second"); return s == "deployed" }) {
		s, tok := state("second")
		t.Fatalf("not deployed 20 s after the restart (state %q, claim %q, first claim %q): the lease was waited out", s, tok, firstToken)
	}
	t.Logf("deployed %s after the restart", time.Since(restarted).Round(100*time.Millisecond))
	if ak, err := os.ReadFile(filepath.Join(r.sshd.Home, ".ssh", "authorized_keys")); err != nil || bytes.Count(ak, []byte("\n")) < 2 {
		t.Errorf("authorized_keys after the retry: %v\n%s", err, ak)
	}
}

// newKeyPEM is a fresh ed25519 private key in OpenSSH form.
func newKeyPEM(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, fmt.Sprintf("fault-test-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// TestSecondSignalCutsAtOnce: an operator who does not want to wait for the drain
// (30 s here) sends a second SIGTERM: the transfers are cut at once, the upload
// still removes its temporary file, and the process exits 0 long before the drain
// period would have ended.
func TestSecondSignalCutsAtOnce(t *testing.T) {
	r := newFaultRig(t, 3, "--drain-timeout", "30s")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const size, rate = 64 << 20, 1 << 20 // a minute each: far past the drain
	terms, up, down := r.inFlight(t, ctx, size, rate)

	if err := r.sg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !pollUntil(5*time.Second, func() bool { return r.readyz(t) != http.StatusOK }) {
		t.Fatal("not draining after the first signal")
	}
	second := time.Now()
	if err := r.sg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.sg.Wait(15 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took := time.Since(second); took > 15*time.Second {
		t.Errorf("exited %s after the second signal", took)
	}
	if left := tempUploads(t, r.sshd.Home); len(left) > 0 {
		t.Errorf("temporary files left after exit: %v", left)
	}
	if u := <-up; u.err == nil && u.status == http.StatusOK {
		t.Error("the upload succeeded although it was cut")
	}
	if d := <-down; d.err == nil && d.bytes == size {
		t.Error("the download completed although it was cut")
	}
	restartMessage(t, terms)
}
