package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/store"
)

// opsFlags parses the flags backup and restore share.
func opsFlags(name string, args []string, getenv func(string) string, stderr io.Writer, fileFlag, fileHelp string) (*config, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr(getenv, "SHELLGATE_DATA_DIR", "shellgate-data"), "data directory (SHELLGATE_DATA_DIR)")
	dbURL := fs.String("database-url", getenv("SHELLGATE_DATABASE_URL"), "database URL (SHELLGATE_DATABASE_URL)")
	file := fs.String(fileFlag, "", fileHelp)
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	if fs.NArg() > 0 {
		return nil, "", fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	if *file == "" {
		return nil, "", fmt.Errorf("%s: --%s FILE is required", name, fileFlag)
	}
	cfg := &config{DataDir: *dataDir, DatabaseURL: *dbURL}
	if strings.HasPrefix(cfg.DatabaseURL, "postgres") {
		return nil, "", fmt.Errorf("%s: the database is PostgreSQL: use pg_dump / pg_restore (see the README, Operations), and back up the master key the same way", name)
	}
	return cfg, *file, nil
}

// backupCommand copies the SQLite database, consistently, while shellgate may be
// running, and reminds the operator that the master key is not in the copy.
func backupCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, to, err := opsFlags("backup", args, getenv, stderr, "to", "write the backup to this new file")
	if err != nil {
		return err
	}
	dbPath, err := cfg.databasePath()
	if err != nil {
		return err
	}
	if err := store.BackupSQLite(ctx, dbPath, to); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	version, err := store.CheckSQLite(ctx, to)
	if err != nil {
		os.Remove(to)
		return fmt.Errorf("backup: the copy failed its check, removed: %w", err)
	}
	st, _ := os.Stat(to)
	keyPath, _ := filepath.Abs(filepath.Join(cfg.DataDir, secrets.FileName))
	fmt.Fprintf(stdout, "Backed up %s to %s (%d bytes, schema version %d).\n\n", dbPath, to, st.Size(), version)
	fmt.Fprintf(stdout, `The master key is NOT in this backup. Back it up separately:
  %s
Without it the SSH private keys and the gateway key in the backup cannot be opened, and
restore refuses the backup. Keep it apart from the database backups: whoever holds both
can use the private keys. Terminal recordings (%s) are not in the backup either.
`, keyPath, filepath.Join(cfg.DataDir, "recordings"))
	return nil
}

// restoreCommand replaces the SQLite database with a backup, after checking that the
// backup is sound, that this shellgate can read its schema and that the master key in
// the data dir opens every sealed secret in it. The previous database is kept beside.
// It refuses while a shellgate process runs with the data dir.
func restoreCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, from, err := opsFlags("restore", args, getenv, stderr, "from", "the backup file to restore")
	if err != nil {
		return err
	}
	dbPath, err := cfg.databasePath()
	if err != nil {
		return err
	}
	keys, err := secrets.Load(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("restore: %w\nPut the master key that belongs to this backup at %s (mode 0600) first; nothing was changed",
			err, filepath.Join(cfg.DataDir, secrets.FileName))
	}
	// A running server keeps its database open and would go on writing to the file
	// being replaced (or to its write-ahead log), and its live sessions and caches
	// would not match the restored data: restore only while none runs.
	unlock, err := lockDataDir(cfg.DataDir, true)
	if errors.Is(err, errDataDirInUse) {
		return fmt.Errorf("restore: shellgate is running with %s (it holds %s). Stop it first (e.g. systemctl stop shellgate), then restore, then start it again; nothing was changed",
			cfg.DataDir, filepath.Join(cfg.DataDir, lockFileName))
	} else if err != nil {
		return err
	}
	defer unlock()

	version, err := store.CheckSQLite(ctx, from)
	if err != nil {
		return fmt.Errorf("restore: %w; nothing was changed", err)
	}
	if latest := store.LatestSQLiteMigration(); version > latest {
		return fmt.Errorf("restore: the backup has schema version %d, newer than this shellgate knows (%d): restore it with the shellgate that made it; nothing was changed", version, latest)
	}
	// Work on a copy in the data dir: migrations apply to the copy, the checks read
	// it, and the final rename is atomic on the same file system.
	tmp, err := os.CreateTemp(filepath.Dir(dbPath), filepath.Base(dbPath)+".restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	keep := false
	defer func() {
		if !keep {
			for _, p := range []string{tmpPath, tmpPath + "-wal", tmpPath + "-shm"} {
				os.Remove(p)
			}
		}
	}()
	os.Remove(tmpPath) // BackupSQLite wants a new file
	if err := store.BackupSQLite(ctx, from, tmpPath); err != nil {
		return fmt.Errorf("restore: copy the backup: %w", err)
	}
	st, err := store.OpenSQLite(ctx, tmpPath)
	if err != nil {
		return fmt.Errorf("restore: open the backup: %w; nothing was changed", err)
	}
	n, err := checkSealed(ctx, st, keys)
	st.Close()
	if err != nil {
		return fmt.Errorf("restore: refused, nothing was changed: %w", err)
	}

	// Replace: the current database (with its WAL, if any) moves aside, then the copy
	// takes its name.
	aside := ""
	if _, err := os.Stat(dbPath); err == nil {
		aside = fmt.Sprintf("%s.before-restore-%s", dbPath, time.Now().UTC().Format("20060102T150405Z"))
		for _, sfx := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(dbPath+sfx, aside+sfx); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("restore: move the current database aside: %w", err)
			}
		}
	}
	for _, sfx := range []string{"-wal", "-shm"} {
		os.Remove(tmpPath + sfx)
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		return fmt.Errorf("restore: put the backup in place: %w (the previous database is at %s)", err, aside)
	}
	keep = true
	if d, err := os.Open(filepath.Dir(dbPath)); err == nil {
		d.Sync()
		d.Close()
	}
	fmt.Fprintf(stdout, "Restored %s from %s (schema version %d; the master key opened all %d sealed keys).\n", dbPath, from, version, n)
	if aside != "" {
		fmt.Fprintf(stdout, "The previous database is kept as %s; delete it when you are satisfied.\n", aside)
	}
	fmt.Fprintln(stdout, "Start shellgate again. Everyone signs in again only if the master key changed.")
	return nil
}

// checkSealed opens every secret sealed under the master key in st: the gateway's
// private key and every stored private SSH key. It returns how many it opened, or why
// one did not open (another master key, or an altered row).
func checkSealed(ctx context.Context, st store.Store, keys *secrets.Keyring) (int, error) {
	n := 0
	g, err := st.GatewayIdentity(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound): // never started: nothing sealed yet
	case err != nil:
		return 0, err
	default:
		if _, err := keys.Open(g.PrivateSealed, []byte(store.GatewayIdentityAD)); err != nil {
			return 0, fmt.Errorf("the master key in use (id %08x) does not open the backup's gateway key: %w. "+
				"Restore the master.key that was backed up with this database", keys.PrimaryID(), err)
		}
		n++
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return n, err
	}
	for _, u := range users {
		list, err := st.ListKeys(ctx, u.ID)
		if err != nil {
			return n, err
		}
		for _, k := range list {
			if !k.HasPrivate {
				continue
			}
			full, err := st.KeyByID(ctx, u.ID, k.ID)
			if err != nil {
				return n, err
			}
			if _, err := keys.Open(full.PrivateSealed, handlers.SealedKeyAD(u.ID, full.Name, full.Fingerprint)); err != nil {
				return n, fmt.Errorf("the master key in use (id %08x) does not open %s's key %q: %w. "+
					"Restore the master.key that was backed up with this database", keys.PrimaryID(), u.Username, full.Name, err)
			}
			n++
		}
	}
	return n, nil
}
