package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/internal/testpg"
	"github.com/shellgate/shellgate/store"
)

// TestMigrateDB moves an install from SQLite to PostgreSQL with the command an operator
// runs: accounts still sign in, and a private key sealed under the install's master
// key opens on the PostgreSQL side with that same key.
func TestMigrateDB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	getenv := func(string) string { return "" }
	if err := run(ctx, []string{"user", "add", "alice", "--admin", "--data-dir", dir}, getenv, strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	keys, err := secrets.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "shellgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	alice, err := src.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("key of alice")
	sealed, err := keys.Seal([]byte("private"), ad)
	if err != nil {
		t.Fatal(err)
	}
	k := &store.Key{UserID: alice.ID, Name: "k", PublicKey: "ssh-ed25519 AAAAk", Type: "ED25519", Bits: 256, Fingerprint: "SHA256:k", PrivateSealed: sealed, PrivateOrigin: store.PrivateUploaded}
	if err := src.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	src.Close()

	url := testpg.Need(t).NewDatabase(t)
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate-db", "--from", "sqlite:" + filepath.Join(dir, "shellgate.db"), "--to", url}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatalf("migrate-db: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "every count matches") || !strings.Contains(out.String(), "ssh_keys") {
		t.Fatalf("output:\n%s", out.String())
	}
	dst, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := dst.KeyByID(ctx, alice.ID, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := keys.Open(got.PrivateSealed, ad)
	if err != nil || string(plain) != "private" {
		t.Fatalf("sealed key after the move: %q %v", plain, err)
	}
	// The admin can be managed on the new database with the same commands.
	if err := run(ctx, []string{"user", "disable", "alice", "--data-dir", dir, "--database-url", url}, getenv, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if u, err := dst.UserByName(ctx, "alice"); err != nil || !u.Disabled {
		t.Fatalf("alice on PostgreSQL after disable: %+v %v", u, err)
	}

	// A second run into the same database is refused: it is not empty any more.
	if err := run(ctx, []string{"migrate-db", "--from", "sqlite:" + filepath.Join(dir, "shellgate.db"), "--to", url}, getenv, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("a second migrate-db into the same database succeeded")
	}
}
