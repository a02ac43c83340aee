package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// TestBackupIsOneMoment: BackupSQLite runs while another connection commits
// transactions that each write two tables together; the copy must hold both halves
// of every transaction it holds (one consistent moment), pass the integrity check and
// carry the schema version.
func TestBackupIsOneMoment(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "live.db")
	st, err := store.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.DB()
	if _, err := db.Exec(`CREATE TABLE left_side (n INTEGER); CREATE TABLE right_side (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // bounded: at most 20000 transactions or until stopped
		defer wg.Done()
		for i := range 20000 {
			select {
			case <-stop:
				return
			default:
			}
			tx, err := db.Begin()
			if err != nil {
				return
			}
			tx.Exec(`INSERT INTO left_side (n) VALUES (?)`, i)
			tx.Exec(`INSERT INTO right_side (n) VALUES (?)`, i)
			tx.Commit()
		}
	}()
	// Wait until the writer is under way, then copy while it writes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		db.QueryRow(`SELECT COUNT(*) FROM left_side`).Scan(&n)
		if n >= 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var backups []string
	for i := range 3 {
		to := filepath.Join(dir, "copy"+string(rune('a'+i))+".db")
		if err := store.BackupSQLite(ctx, path, to); err != nil {
			t.Fatal(err)
		}
		backups = append(backups, to)
	}
	close(stop)
	wg.Wait()

	for _, b := range backups {
		version, err := store.CheckSQLite(ctx, b)
		if err != nil || version != store.LatestSQLiteMigration() {
			t.Fatalf("%s: version %d, %v", b, version, err)
		}
		if fi, _ := os.Stat(b); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %04o", b, fi.Mode().Perm())
		}
		c, err := sql.Open("sqlite", "file:"+b+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var l, r, lmax, rmax int
		c.QueryRow(`SELECT COUNT(*), COALESCE(MAX(n), -1) FROM left_side`).Scan(&l, &lmax)
		c.QueryRow(`SELECT COUNT(*), COALESCE(MAX(n), -1) FROM right_side`).Scan(&r, &rmax)
		c.Close()
		if l == 0 || l != r || lmax != rmax {
			t.Fatalf("%s is not one moment: left %d (max %d), right %d (max %d)", b, l, lmax, r, rmax)
		}
	}
	if err := store.BackupSQLite(ctx, path, backups[0]); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	if err := store.BackupSQLite(ctx, filepath.Join(dir, "missing.db"), filepath.Join(dir, "x.db")); err == nil {
		t.Fatal("backup of a missing database succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !os.IsNotExist(err) {
		t.Fatal("backup created the database it was asked to copy")
	}
}

// TestDatabaseInfoAndDeploymentCounts feed the system page and the queue gauge.
func TestDatabaseInfoAndDeploymentCounts(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	info, err := st.DatabaseInfo(ctx)
	if err != nil || !strings.HasPrefix(info.Engine, "SQLite 3.") || info.Size <= 0 || !strings.HasSuffix(info.Path, "t.db") {
		t.Fatalf("info %+v, %v", info, err)
	}
	counts, err := st.DeploymentCounts(ctx)
	if err != nil || len(counts) != 0 {
		t.Fatalf("empty queue: %v, %v", counts, err)
	}
}
