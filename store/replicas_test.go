package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

// openReplicas opens n handles on one new database, each with its own connection pool,
// as n replicas (or n processes on one SQLite file) would. The first migrates it.
func openReplicas(t *testing.T, n int) []*store.DB {
	t.Helper()
	url := store.FreshURL(t)
	out := make([]*store.DB, n)
	for i := range out {
		db, err := store.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		out[i] = db
	}
	return out
}

// TestConcurrentOpenersMigrateOnce: replicas started together against a new database
// must not both run a migration (the second would fail on CREATE TABLE, or worse,
// apply a data migration twice). Between them they apply each migration exactly once.
func TestConcurrentOpenersMigrateOnce(t *testing.T) {
	if store.CurrentTestEngine() == store.EngineSQLite {
		// Switching a new file to WAL needs it alone; SQLite serves one replica.
		t.Skip("several processes creating one SQLite file at once is not a supported set-up")
	}
	url := store.FreshURL(t)
	const n = 6
	var wg sync.WaitGroup
	var applied atomic.Int64
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := store.Open(context.Background(), url)
			if err != nil {
				errs <- err
				return
			}
			applied.Add(int64(store.MigrationsApplied(db)))
			db.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("open: %v", err)
	}
	want := store.MigrationFiles(t, store.CurrentTestEngine())
	if got := applied.Load(); got != int64(want) {
		t.Fatalf("%d openers applied %d migrations between them, want each of the %d once", n, got, want)
	}
}

// race runs claim once on each replica, all at once, several times over, and returns
// how many claims succeeded; any error other than ErrNotFound fails the test.
func race(t *testing.T, replicas []*store.DB, perReplica int, claim func(db *store.DB) error) int {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, db := range replicas {
		for range perReplica {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				switch err := claim(db); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrNotFound):
					t.Errorf("claim: %v", err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

// TestSingleUseClaimsAcrossReplicas: a terminal ticket, a key download, an agent's or a
// tunnel's token replayed to several replicas at once (a load balancer spreading an
// attacker's or a retrying browser's requests) is honoured exactly once, because one
// conditional statement decides in the database, not a check in one process's memory.
func TestSingleUseClaimsAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	replicas := openReplicas(t, 5)
	st := replicas[0]
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3 {
		id := fmt.Sprintf("ticket-%d", i)
		if err := st.CreateTicket(ctx, &store.Ticket{ID: id, UserID: u.ID, WebSessionID: "ws", StackID: 1, ServerID: 2,
			CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		wins := race(t, replicas, 10, func(db *store.DB) error {
			_, err := db.ClaimTicket(ctx, id, u.ID, "ws", 2, now)
			return err
		})
		if wins != 1 {
			t.Fatalf("%s: %d of 50 concurrent claims on 5 replicas won, want exactly 1", id, wins)
		}
	}

	k := &store.Key{UserID: u.ID, Name: "gen", PublicKey: "ssh-ed25519 AAAAgen", Type: "ED25519", Bits: 256,
		Fingerprint: "SHA256:gen", PrivateSealed: []byte("sealed"), PrivateOrigin: store.PrivateGenerated,
		DownloadUntil: now.Add(10 * time.Minute)}
	if err := st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	wins := race(t, replicas, 10, func(db *store.DB) error {
		_, err := db.ClaimKeyDownload(ctx, u.ID, k.ID, now)
		return err
	})
	if wins != 1 {
		t.Fatalf("key download: %d of 50 concurrent claims won, want exactly 1", wins)
	}

	// An agent's enrollment token and a tunnel's source token, replayed at once.
	stack := &store.Stack{Name: "prod"}
	if err := st.CreateStack(ctx, stack); err != nil {
		t.Fatal(err)
	}
	sv := &store.Server{StackID: stack.ID, Name: "hidden", Host: "10.0.0.9", LoginUser: "u"}
	if err := st.CreateServer(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if err := st.SetAgentToken(ctx, sv.ID, "agent-token", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	wins = race(t, replicas, 10, func(db *store.DB) error {
		_, _, err := db.ClaimAgentToken(ctx, "agent-token", fmt.Sprint("ssh-ed25519 AAAAagent", n.Add(1)), now)
		return err
	})
	if wins != 1 {
		t.Fatalf("agent token: %d of 50 concurrent claims won, want exactly 1", wins)
	}
	tn := &store.Tunnel{ServerID: sv.ID, CreatedBy: u.ID, Services: "ssh", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateTunnel(ctx, tn, "tunnel-token"); err != nil {
		t.Fatal(err)
	}
	wins = race(t, replicas, 10, func(db *store.DB) error {
		_, err := db.ClaimTunnelToken(ctx, "tunnel-token", fmt.Sprint("proxy-key-", n.Add(1)), now)
		return err
	})
	if wins != 1 {
		t.Fatalf("tunnel token: %d of 50 concurrent claims won, want exactly 1", wins)
	}
}

// TestDeployLeaseAcrossReplicas: deployment workers on several replicas poll the same
// queue; each job runs on exactly one of them until its lease ends, and workers racing
// at the same moment take different jobs rather than all but one coming back empty.
func TestDeployLeaseAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	replicas := openReplicas(t, 4)
	st := replicas[0]
	alice := mustUser(t, st, "alice", store.RoleMember)
	stack := &store.Stack{Name: "prod"}
	if err := st.CreateStack(ctx, stack); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const servers = 6
	for i := range servers {
		sv := &store.Server{StackID: stack.ID, Name: fmt.Sprintf("web-%d", i), Host: "10.0.0.5", LoginUser: "deploy",
			HostKeys: []string{"ssh-ed25519 AAAAh"}, PinnedAt: now}
		if err := st.CreateServer(ctx, sv); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AttachKey(ctx, stack.ID, mustKey(t, st, alice.ID, "laptop"), alice.ID, now); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	claimed := map[int64]int{}
	var tok atomic.Int32
	// As many workers as jobs, all at once: each job goes to exactly one of them, and
	// none is left behind because two workers collided on the same row.
	race(t, replicas, (servers+len(replicas)-1)/len(replicas), func(db *store.DB) error {
		d, err := db.ClaimDeployment(ctx, now, time.Minute, 5, fmt.Sprint("w", tok.Add(1)))
		if err != nil {
			return err
		}
		mu.Lock()
		claimed[d.ID]++
		mu.Unlock()
		return nil
	})
	if len(claimed) != servers {
		t.Fatalf("%d distinct jobs claimed, want %d", len(claimed), servers)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("job %d claimed %d times under one lease", id, n)
		}
	}
}

// TestOpenKeepsPasswordsOutOfErrors: a mistyped or unreachable database URL ends up in
// a log; the password in it must not.
func TestOpenKeepsPasswordsOutOfErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, url := range []string{
		"mysql://root:hunter2@db/sg",
		"postgres://sg:hunter2@127.0.0.1:1/sg?sslmode=disable",  // nothing listens on port 1
		"postgres://sg:hunter2@127.0.0.1/sg?sslmode=not-a-mode", // refused by the parser
	} {
		db, err := store.Open(ctx, url)
		if err == nil {
			db.Close()
			t.Fatalf("%s: opened", url)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error repeats the password: %v", err)
		}
		t.Logf("%v", err)
	}
}

// TestReadyOnBothEngines: a replica reports ready (for /readyz) only when its
// database answers and holds the newest migration its binary knows, on either engine.
func TestReadyOnBothEngines(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	if err := st.Ready(ctx); err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	if _, err := st.DB().ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)`); err != nil {
		t.Fatal(err)
	}
	if err := st.Ready(ctx); err == nil {
		t.Fatal("ready with the newest migration missing")
	}
	st.Close()
	if err := st.Ready(ctx); err == nil {
		t.Fatal("ready with the database closed")
	}
}

// TestPostgresTLSAndEnvironment: the password and TLS settings may come from the URL or
// from the standard PG* variables; with sslmode=verify-full a server whose certificate
// is not signed by the configured CA is refused before the password is sent.
func TestPostgresTLSAndEnvironment(t *testing.T) {
	if store.CurrentTestEngine() != store.EnginePostgres {
		t.Skip("PostgreSQL connection settings: runs in the postgres pass")
	}
	c := testpg.Need(t)
	ctx := context.Background()
	name, err := c.CreateDatabase(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s", c.Port, name)

	t.Setenv("PGPASSWORD", c.Password)
	t.Setenv("PGSSLMODE", "verify-full")
	t.Setenv("PGSSLROOTCERT", c.CAFile)
	st, err := store.Open(ctx, base)
	if err != nil {
		t.Fatalf("password and TLS from PG* variables: %v", err)
	}
	var ssl bool
	if err := st.DB().QueryRowContext(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("connection not encrypted: %v %v", ssl, err)
	}
	st.Close()

	// A CA that did not sign the server's certificate: refused.
	other := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(other, otherCA(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := store.Open(ctx, base+"?sslmode=verify-full&sslrootcert="+other); err == nil {
		st.Close()
		t.Fatal("verify-full accepted a server certificate from another CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("refused, but not for the certificate: %v", err)
	}
	// The URL wins over the environment.
	t.Setenv("PGPASSWORD", "wrong")
	if st, err := store.Open(ctx, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/%s", c.Password, c.Port, name)); err != nil {
		t.Fatalf("password in the URL: %v", err)
	} else {
		st.Close()
	}
}

func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestPostgresBehindPgBouncer: a transaction-pooling PgBouncer cannot keep prepared
// statements, so such set-ups add default_query_exec_mode=exec or simple_protocol to
// the URL; the store's queries (rebound placeholders, flags, bytea) work in both.
func TestPostgresBehindPgBouncer(t *testing.T) {
	if store.CurrentTestEngine() != store.EnginePostgres {
		t.Skip("PostgreSQL query modes: runs in the postgres pass")
	}
	for _, mode := range []string{"exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Open(ctx, store.FreshURL(t)+"&default_query_exec_mode="+mode)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember, Disabled: true}
			if err := st.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			if got, err := st.UserByID(ctx, u.ID); err != nil || !got.Disabled {
				t.Fatalf("user %+v %v", got, err)
			}
			sealed := []byte{0, 0xff, '\'', '\\', 'x'}
			k := &store.Key{UserID: u.ID, Name: "k", PublicKey: "ssh-ed25519 AAAAk", Type: "ED25519", Bits: 256,
				Fingerprint: "SHA256:k'; --", PrivateSealed: sealed, PrivateOrigin: store.PrivateGenerated, DownloadUntil: time.Now().Add(time.Hour)}
			if err := st.CreateKey(ctx, k); err != nil {
				t.Fatal(err)
			}
			got, err := st.ClaimKeyDownload(ctx, u.ID, k.ID, time.Now())
			if err != nil || string(got.PrivateSealed) != string(sealed) || got.Fingerprint != k.Fingerprint {
				t.Fatalf("key %+v %v", got, err)
			}
			if ok, err := st.AppendStackLogOnce(ctx, &store.StackLogLine{StackID: mustStack(t, st), Tab: "ssh", Line: "l"}, "d"); err != nil || !ok {
				t.Fatalf("stack log: %v %v", ok, err)
			}
		})
	}
}

func mustStack(t *testing.T, st *store.DB) int64 {
	t.Helper()
	s := &store.Stack{Name: "s"}
	if err := st.CreateStack(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

// TestLiveSessionsGoWithTheirReplica: the sessions a replica held are forgotten when it
// stops cleanly or is presumed gone, so no list shows a terminal nobody holds.
func TestLiveSessionsGoWithTheirReplica(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	now := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		if err := st.RegisterReplica(ctx, &store.Replica{ID: id, Hostname: "h", StartedAt: now, HeartbeatAt: now}); err != nil {
			t.Fatal(err)
		}
		if err := st.AddLiveSession(ctx, &store.LiveSession{ID: "s-" + id, ReplicaID: id, Username: "u", StartedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := st.LiveSession(ctx, "s-b"); err != nil || l.ReplicaID != "b" {
		t.Fatalf("LiveSession: %+v %v", l, err)
	}
	if err := st.RemoveReplica(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.HeartbeatReplica(ctx, "c", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n, err := st.RemoveStaleReplicas(ctx, now.Add(time.Second)); err != nil || n != 1 { // b is stale
		t.Fatalf("stale: %d %v", n, err)
	}
	all, err := st.ListLiveSessions(ctx)
	if err != nil || len(all) != 1 || all[0].ID != "s-c" {
		t.Fatalf("left: %+v %v, want only c's session", all, err)
	}
	if err := st.RemoveLiveSession(ctx, "s-c"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LiveSession(ctx, "s-c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed session: %v", err)
	}
}
