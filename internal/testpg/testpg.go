// Package testpg starts a throwaway PostgreSQL cluster for tests: initdb into a
// temporary directory, a server on a free loopback port with its unix socket in that
// directory, password authentication, and everything stopped and removed at the end.
// One cluster serves a whole test binary: TestMain calls Run, tests call Need and
// create a database each, so a package pays for initdb once, and only when one of its
// tests needs PostgreSQL.
//
// The binaries are Debian's (package postgresql, /usr/lib/postgresql/N/bin), or
// initdb and postgres in PATH. initdb refuses to run as root, so as root the cluster
// runs as the postgres OS user that the Debian package creates. When PostgreSQL is
// missing, Need skips the test, or fails it when CI=true, so CI cannot silently skip.
package testpg

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway server. Its fields are read-only.
type Cluster struct {
	Dir      string // temporary directory: data/, the socket, the log
	Port     int
	Password string // of the superuser "postgres"
	// CAFile is the PEM certificate of the throwaway CA that signed the server's TLS
	// certificate (for 127.0.0.1 and localhost): connect with
	// sslmode=verify-full&sslrootcert=CAFile. Plain connections are accepted too.
	CAFile string

	cmd  *exec.Cmd
	done chan struct{} // closed when the server exits

	mu sync.Mutex
	n  int // databases created so far
}

var (
	running   bool // inside Run
	once      sync.Once
	shared    *Cluster
	sharedErr error
)

// Run calls run (the tests) and then stops the shared cluster if a test started it;
// call it from TestMain: os.Exit(testpg.Run(m.Run)). The cluster starts at the first
// Need, so a run of tests that need no PostgreSQL pays nothing.
func Run(run func() int) int {
	running = true
	code := run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Need returns the shared cluster, starting it on first use. Without PostgreSQL
// installed the test is skipped, or fails when CI=true; a cluster that fails to start
// fails the test.
func Need(t testing.TB) *Cluster {
	t.Helper()
	if !running {
		t.Fatal("testpg: call testpg.Run(m.Run) from the package's TestMain, which stops the cluster")
	}
	once.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		if errors.Is(sharedErr, ErrNotInstalled) && os.Getenv("CI") != "true" {
			t.Skipf("PostgreSQL: %v", sharedErr)
		}
		t.Fatalf("PostgreSQL: %v", sharedErr)
	}
	return shared
}

// ErrNotInstalled means initdb or postgres was not found.
var ErrNotInstalled = errors.New("not installed (Debian: apt-get install postgresql)")

// binDir finds the directory holding initdb and postgres: the newest
// /usr/lib/postgresql/N/bin, else PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", ErrNotInstalled
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start initialises and starts a new cluster.
func Start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres OS user (from Debian's postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "testpg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Password: randomHex(16), done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(pwfile, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--auth=scram-sha-256", "--pwfile="+pwfile, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	if err := c.writeTLS(cred); err != nil {
		return nil, err
	}

	// A free port can be taken between our probe and the server's bind; try a few.
	for attempt := 0; ; attempt++ {
		c.Port, err = freePort()
		if err != nil {
			return nil, err
		}
		err = c.startServer(bin, cred)
		if err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *Cluster) startServer(bin string, cred *syscall.Credential) error {
	logf, err := os.OpenFile(filepath.Join(c.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Durability is pointless for a cluster deleted at the end of the run.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(c.Dir, "data"),
		"-p", strconv.Itoa(c.Port), "-k", c.Dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB",
		"-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key")
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by its timeout takes the server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // the exit is reported through done
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			c.cmd, c.done = cmd, done
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(c.Dir, "postgres.log"))
			return fmt.Errorf("postgres exited: %s", tail(string(log), 2000))
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("postgres not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (fast shutdown, then kill) and removes its directory.
func (c *Cluster) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	os.RemoveAll(c.Dir)
}

// URL is the connection URL of a database as the superuser, over TCP on loopback.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/%s?sslmode=disable", c.Password, c.Port, database)
}

// Exec runs statements on the maintenance database "postgres".
func (c *Cluster) Exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// CreateDatabase creates an empty database (or a copy of template, when not "") with
// a fresh name and returns that name. Nobody may be connected to the template.
func (c *Cluster) CreateDatabase(ctx context.Context, template string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock() // two copies of one template at once would collide
	c.n++
	name := fmt.Sprintf("db%d_%s", c.n, randomHex(3))
	q := `CREATE DATABASE ` + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
	}
	if err := c.Exec(ctx, q); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return name, nil
}

// NewDatabase creates a database for one test and returns its URL.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name, err := c.CreateDatabase(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return c.URL(name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// writeTLS makes a throwaway CA and a server certificate for 127.0.0.1 and localhost
// signed by it, in the data directory (the key readable by the server's user only).
func (c *Cluster) writeTLS(cred *syscall.Credential) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testpg CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	data := filepath.Join(c.Dir, "data")
	c.CAFile = filepath.Join(c.Dir, "ca.crt")
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{c.CAFile, "CERTIFICATE", caDER, 0o644},
		{filepath.Join(data, "server.crt"), "CERTIFICATE", der, 0o644},
		{filepath.Join(data, "server.key"), "EC PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return err
		}
		if cred != nil {
			if err := os.Chown(f.path, int(cred.Uid), int(cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}
