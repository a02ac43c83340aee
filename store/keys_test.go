package store_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

func mkUser(t *testing.T, st *store.SQLite, name string) *store.User {
	t.Helper()
	u := &store.User{Username: name, PasswordHash: "x", Role: store.RoleMember}
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func mkKey(userID int64, name, fp string) *store.Key {
	return &store.Key{
		UserID: userID, Name: name, PublicKey: "ssh-ed25519 AAAA" + name, Comment: "c " + name,
		Type: "ED25519", Bits: 256, Fingerprint: fp,
	}
}

func TestKeysCreateListGet(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	alice := mkUser(t, st, "alice")

	pub := mkKey(alice.ID, "laptop", "SHA256:aaa")
	if err := st.CreateKey(ctx, pub); err != nil {
		t.Fatal(err)
	}
	gen := mkKey(alice.ID, "build_bot", "SHA256:bbb")
	gen.PrivateSealed = []byte("sealed bytes")
	gen.PrivateOrigin = store.PrivateGenerated
	gen.DownloadUntil = time.Now().Add(10 * time.Minute)
	if err := st.CreateKey(ctx, gen); err != nil {
		t.Fatal(err)
	}
	prot := mkKey(alice.ID, "old_rsa", "SHA256:ccc")
	prot.Type, prot.Bits = "RSA", 4096
	prot.PrivateSealed, prot.PrivateProtected, prot.PrivateOrigin = []byte("p"), true, store.PrivateUploaded
	if err := st.CreateKey(ctx, prot); err != nil {
		t.Fatal(err)
	}

	keys, err := st.ListKeys(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
		if k.PrivateSealed != nil {
			t.Errorf("ListKeys loaded the sealed private part of %s", k.Name)
		}
	}
	if got := fmtNames(names); got != "build_bot,laptop,old_rsa" {
		t.Fatalf("ListKeys order %s", got)
	}
	if keys[0].HasPrivate != true || keys[1].HasPrivate != false || !keys[2].PrivateProtected || keys[2].Bits != 4096 {
		t.Fatalf("flags wrong: %+v", keys)
	}
	if keys[1].Comment != "c laptop" || keys[1].Fingerprint != "SHA256:aaa" || keys[1].CreatedAt.IsZero() {
		t.Fatalf("fields not round-tripped: %+v", keys[1])
	}

	got, err := st.KeyByID(ctx, alice.ID, gen.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.PrivateSealed, []byte("sealed bytes")) || got.PrivateOrigin != store.PrivateGenerated ||
		got.DownloadUntil.UnixMilli() != gen.DownloadUntil.UnixMilli() {
		t.Fatalf("KeyByID: %+v", got)
	}
	got, err = st.KeyByFingerprint(ctx, alice.ID, "SHA256:ccc")
	if err != nil || got.Name != "old_rsa" {
		t.Fatalf("KeyByFingerprint: %+v %v", got, err)
	}
	if _, err := st.KeyByFingerprint(ctx, alice.ID, "SHA256:zzz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown fingerprint: %v", err)
	}
}

func fmtNames(n []string) string {
	var b bytes.Buffer
	for i, s := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	return b.String()
}

func TestKeyNameUniquePerUser(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	alice, bob := mkUser(t, st, "alice"), mkUser(t, st, "bob")
	if err := st.CreateKey(ctx, mkKey(alice.ID, "laptop", "SHA256:a")); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateKey(ctx, mkKey(alice.ID, "laptop", "SHA256:b")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same name twice for one user: %v, want ErrConflict", err)
	}
	if err := st.CreateKey(ctx, mkKey(bob.ID, "laptop", "SHA256:a")); err != nil {
		t.Fatalf("same name for another user: %v", err)
	}
}

// TestKeysOfAnotherUserAreNotFound: a user who guesses or enumerates key ids gets
// ErrNotFound for every key that is not theirs, from every method.
func TestKeysOfAnotherUserAreNotFound(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	alice, mallory := mkUser(t, st, "alice"), mkUser(t, st, "mallory")
	k := mkKey(alice.ID, "laptop", "SHA256:a")
	k.PrivateSealed, k.PrivateOrigin, k.DownloadUntil = []byte("s"), store.PrivateGenerated, time.Now().Add(time.Hour)
	if err := st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := st.KeyByID(ctx, mallory.ID, k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("KeyByID: %v", err)
	}
	if _, err := st.KeyByFingerprint(ctx, mallory.ID, "SHA256:a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("KeyByFingerprint: %v", err)
	}
	if _, err := st.ClaimKeyDownload(ctx, mallory.ID, k.ID, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClaimKeyDownload: %v", err)
	}
	if err := st.DeleteKey(ctx, mallory.ID, k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteKey: %v", err)
	}
	if keys, _ := st.ListKeys(ctx, mallory.ID); len(keys) != 0 {
		t.Errorf("ListKeys shows %d keys of another user", len(keys))
	}
	// Alice's key survived all of that, and the download is still hers to claim.
	if _, err := st.ClaimKeyDownload(ctx, alice.ID, k.ID, time.Now()); err != nil {
		t.Fatalf("owner's claim after the attempts: %v", err)
	}
	if err := st.DeleteKey(ctx, alice.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.KeyByID(ctx, alice.ID, k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key still found: %v", err)
	}
}

// TestClaimKeyDownloadExactlyOnce: many requests race to download a generated private
// key; exactly one gets it, and nobody gets it after the window.
func TestClaimKeyDownloadExactlyOnce(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	alice := mkUser(t, st, "alice")
	now := time.Now()
	k := mkKey(alice.ID, "gen", "SHA256:g")
	k.PrivateSealed, k.PrivateOrigin, k.DownloadUntil = []byte("sealed"), store.PrivateGenerated, now.Add(10*time.Minute)
	if err := st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}

	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, losses := 0, 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := st.ClaimKeyDownload(ctx, alice.ID, k.ID, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
				if !bytes.Equal(got.PrivateSealed, []byte("sealed")) || got.Name != "gen" {
					t.Errorf("winner got %+v", got)
				}
			case errors.Is(err, store.ErrNotFound):
				losses++
			default:
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || losses != n-1 {
		t.Fatalf("%d claims won and %d lost, want 1 and %d", wins, losses, n-1)
	}

	late := mkKey(alice.ID, "late", "SHA256:l")
	late.PrivateSealed, late.PrivateOrigin, late.DownloadUntil = []byte("s"), store.PrivateGenerated, now.Add(10*time.Minute)
	if err := st.CreateKey(ctx, late); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimKeyDownload(ctx, alice.ID, late.ID, now.Add(11*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim after the window: %v, want ErrNotFound", err)
	}

	pubOnly := mkKey(alice.ID, "pub", "SHA256:p")
	if err := st.CreateKey(ctx, pubOnly); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimKeyDownload(ctx, alice.ID, pubOnly.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim of a public-only key: %v, want ErrNotFound", err)
	}
}
