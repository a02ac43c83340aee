package store

import (
	"context"
	"database/sql"
	"time"
)

// Origins of a key's private part.
const (
	PrivateNone      = ""
	PrivateUploaded  = "uploaded"
	PrivateGenerated = "generated"
)

// Key is an SSH key registered by a user. The private part, when shellgate holds one,
// is only ever stored sealed; the store never sees it in the clear.
type Key struct {
	ID          int64
	UserID      int64
	Name        string // [A-Za-z0-9_]{1,32}, unique per user
	PublicKey   string // canonical "type base64", no comment
	Comment     string
	Type        string // as ssh-keygen -l prints it: ED25519, RSA, ECDSA, ED25519-SK, ECDSA-SK
	Bits        int
	Fingerprint string // "SHA256:..." as ssh-keygen -lf prints it

	// HasPrivate reports whether shellgate holds a private part. ListKeys sets it
	// without loading PrivateSealed.
	HasPrivate bool
	// PrivateSealed is the private part sealed by the caller (nil when none). Only
	// KeyByID and ClaimKeyDownload load it.
	PrivateSealed []byte
	// PrivateProtected: the sealed bytes are themselves passphrase protected.
	PrivateProtected bool
	PrivateOrigin    string // PrivateNone, PrivateUploaded or PrivateGenerated
	// DownloadUntil ends the one-time download window of a generated key; zero when
	// no download is left.
	DownloadUntil time.Time
	CreatedAt     time.Time
}

// KeyStore keeps users' SSH keys. Every method is scoped to one user: a key id that
// belongs to someone else is ErrNotFound, never their data.
type KeyStore interface {
	// CreateKey inserts k and sets its ID and CreatedAt (if zero). A name the user
	// already has is ErrConflict.
	CreateKey(ctx context.Context, k *Key) error
	// ListKeys returns the user's keys by name, without their sealed private parts.
	ListKeys(ctx context.Context, userID int64) ([]Key, error)
	// KeyByID returns one of the user's keys, sealed private part included.
	KeyByID(ctx context.Context, userID, id int64) (*Key, error)
	// KeyByFingerprint finds the user's key with that fingerprint (without the
	// private part), to refuse registering the same key twice.
	KeyByFingerprint(ctx context.Context, userID int64, fingerprint string) (*Key, error)
	// DeleteKey removes one of the user's keys.
	DeleteKey(ctx context.Context, userID, id int64) error
	// ClaimKeyDownload ends the one-time download window of a generated key and
	// returns the key with its sealed private part, in one conditional UPDATE: of
	// concurrent claims (across replicas too) exactly one wins; the others, and any
	// claim after the window, get ErrNotFound.
	ClaimKeyDownload(ctx context.Context, userID, id int64, now time.Time) (*Key, error)
}

const keyColumns = `id, user_id, name, public_key, comment, key_type, bits, fingerprint,
	private_sealed IS NOT NULL, private_protected, private_origin, download_until, created_at`

const keyColumnsSealed = keyColumns + `, private_sealed`

func scanKey(r scanner, sealed bool) (*Key, error) {
	var k Key
	var until, created int64
	dest := []any{&k.ID, &k.UserID, &k.Name, &k.PublicKey, &k.Comment, &k.Type, &k.Bits, &k.Fingerprint,
		&k.HasPrivate, &k.PrivateProtected, &k.PrivateOrigin, &until, &created}
	if sealed {
		dest = append(dest, &k.PrivateSealed)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, normalize(err)
	}
	if until != 0 {
		k.DownloadUntil = fromMS(until)
	}
	k.CreatedAt = fromMS(created)
	return &k, nil
}

func (s *SQLite) CreateKey(ctx context.Context, k *Key) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now()
	}
	k.CreatedAt = fromMS(ms(k.CreatedAt))
	var sealed any // NULL, not an empty blob, when there is no private part
	if k.PrivateSealed != nil {
		sealed = k.PrivateSealed
	}
	var until int64
	if !k.DownloadUntil.IsZero() {
		until = ms(k.DownloadUntil)
	}
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO ssh_keys (user_id, name, public_key, comment, key_type, bits, fingerprint,
		                       private_sealed, private_protected, private_origin, download_until, created_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		k.UserID, k.Name, k.PublicKey, k.Comment, k.Type, k.Bits, k.Fingerprint,
		sealed, k.PrivateProtected, k.PrivateOrigin, until, ms(k.CreatedAt)).Scan(&k.ID)
	if err != nil {
		return normalize(err)
	}
	k.HasPrivate = k.PrivateSealed != nil
	return nil
}

func (s *SQLite) ListKeys(ctx context.Context, userID int64) ([]Key, error) {
	return queryAll(ctx, s.db, func(r scanner) (*Key, error) { return scanKey(r, false) }, `SELECT `+keyColumns+` FROM ssh_keys WHERE user_id = ? ORDER BY name`, userID)
}

func (s *SQLite) KeyByID(ctx context.Context, userID, id int64) (*Key, error) {
	return scanKey(s.db.QueryRowContext(ctx,
		`SELECT `+keyColumnsSealed+` FROM ssh_keys WHERE id = ? AND user_id = ?`, id, userID), true)
}

func (s *SQLite) KeyByFingerprint(ctx context.Context, userID int64, fingerprint string) (*Key, error) {
	return scanKey(s.db.QueryRowContext(ctx,
		`SELECT `+keyColumns+` FROM ssh_keys WHERE user_id = ? AND fingerprint = ? ORDER BY id LIMIT 1`,
		userID, fingerprint), false)
}

// DeleteKey also ends the terminals that authenticated with the key.
func (s *SQLite) DeleteKey(ctx context.Context, userID, id int64) error {
	return s.changeAccess(ctx, ReasonKeyDeleted, func(tx *sql.Tx) ([]string, error) {
		if err := execOne(ctx, tx, `DELETE FROM ssh_keys WHERE id = ? AND user_id = ?`, id, userID); err != nil {
			return nil, err
		}
		return []string{ScopeKey(id)}, nil
	})
}

func (s *SQLite) ClaimKeyDownload(ctx context.Context, userID, id int64, now time.Time) (*Key, error) {
	return scanKey(s.db.QueryRowContext(ctx,
		`UPDATE ssh_keys SET download_until = 0
		 WHERE id = ? AND user_id = ? AND download_until > ? AND private_sealed IS NOT NULL
		 RETURNING `+keyColumnsSealed, id, userID, ms(now)), true)
}
