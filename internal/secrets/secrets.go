// Package secrets holds shellgate's master key ring and encrypts secrets at rest.
//
// The key ring lives in one file, master.key, in the data directory. It is
// created on first start with 32 random bytes and mode 0600, and refused
// when group or other users may read it, the way OpenSSH refuses an
// unprotected private key file. There is no built-in default key.
//
// Every ciphertext names the key that sealed it, so after Rotate adds a new
// primary key the old ones still open what they sealed. Keys used for
// encryption and for other purposes (cookie signing, for example) are
// derived from a master key with HKDF-SHA256 and never used directly.
//
// File format (text, one key per line, '#' starts a comment):
//
//	<key id: 8 hex digits> <32 bytes in standard base64>
//
// The last key line is the primary key: it seals new secrets and feeds
// Derive. Older lines are kept only to open older ciphertexts.
package secrets

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// FileName is the name of the key ring file inside the data directory.
const FileName = "master.key"

// KeySize is the size in bytes of every master key.
const KeySize = 32

// formatV1 is the first byte of every ciphertext sealed by this version:
// AES-256-GCM under an HKDF-derived key, then the 4-byte key id, the 12-byte
// nonce and the sealed data with its 16-byte tag.
const formatV1 byte = 1

const (
	idSize     = 4
	nonceSize  = 12
	headerSize = 1 + idSize
	overhead   = headerSize + nonceSize + 16
)

// sealInfo is the HKDF info of the AES key that Seal uses. Derive prefixes
// its purposes differently, so no caller of Derive can obtain it.
const sealInfo = "shellgate/seal/v1"

const derivePrefix = "shellgate/derive/"

var (
	// ErrTampered is returned by Open when a ciphertext fails authentication:
	// it was modified, truncated, or sealed for other additional data.
	ErrTampered = errors.New("stored secret failed its integrity check")
	// ErrUnknownKey is returned by Open when the ciphertext names a key id that
	// is not in the key ring (the key was removed, or the id bytes are damaged).
	ErrUnknownKey = errors.New("stored secret was sealed with a key that is not in the key ring")
	// ErrUnprotectedKeyFile is returned when master.key may be read or
	// written by group or other users.
	ErrUnprotectedKeyFile = errors.New("UNPROTECTED MASTER KEY FILE")
	// ErrBadKeyFile is returned when master.key cannot be parsed.
	ErrBadKeyFile = errors.New("master key file is malformed")
)

type key struct {
	id     uint32
	secret []byte
	aead   cipher.AEAD
}

// Keyring holds the master keys. It is safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	keys []*key // last one is primary
}

// LoadOrCreateMaster loads dir/master.key, creating dir (0700) and the file
// (0600) with one fresh random key if the file does not exist yet.
func LoadOrCreateMaster(dir string) (*Keyring, error) {
	path := filepath.Join(dir, FileName)
	kr, err := load(path)
	if err == nil {
		return kr, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	k, err := newKey(nil)
	if err != nil {
		return nil, err
	}
	kr = &Keyring{keys: []*key{k}}
	// Link, not rename: if another process created the file meanwhile, we
	// must load its key rather than replace it.
	if err := kr.write(path, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return load(path)
		}
		return nil, err
	}
	return kr, nil
}

// Load reads an existing key ring without creating one.
func Load(dir string) (*Keyring, error) {
	return load(filepath.Join(dir, FileName))
}

func load(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat master key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadKeyFile, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: permissions %04o for %s are too open; the master key must not be accessible by other users (run: chmod 600 %s)",
			ErrUnprotectedKeyFile, perm, path, path)
	}
	data, err := readLimited(f, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	keys, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Keyring{keys: keys}, nil
}

func readLimited(f *os.File, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrBadKeyFile, limit)
	}
	return data, nil
}

// parseKeyFile parses the text format described in the package comment.
func parseKeyFile(data []byte) ([]*key, error) {
	var keys []*key
	seen := map[uint32]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: line %d: want \"<id> <base64 key>\"", ErrBadKeyFile, n)
		}
		if len(fields[0]) != 2*idSize {
			return nil, fmt.Errorf("%w: line %d: key id must be %d hex digits", ErrBadKeyFile, n, 2*idSize)
		}
		id64, err := strconv.ParseUint(fields[0], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: key id: %w", ErrBadKeyFile, n, err)
		}
		id := uint32(id64)
		if seen[id] {
			return nil, fmt.Errorf("%w: line %d: duplicate key id %08x", ErrBadKeyFile, n, id)
		}
		secret, err := base64.StdEncoding.Strict().DecodeString(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: key: %w", ErrBadKeyFile, n, err)
		}
		if len(secret) != KeySize {
			return nil, fmt.Errorf("%w: line %d: key is %d bytes, want %d", ErrBadKeyFile, n, len(secret), KeySize)
		}
		k, err := makeKey(id, secret)
		if err != nil {
			return nil, err
		}
		seen[id] = true
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key in file", ErrBadKeyFile)
	}
	return keys, nil
}

func formatKeyFile(keys []*key) []byte {
	var b bytes.Buffer
	b.WriteString("# shellgate master key ring. Keep it secret and back it up with the database:\n")
	b.WriteString("# without it, stored private keys cannot be decrypted.\n")
	b.WriteString("# One key per line: <id> <base64>. The last line is the primary key; older\n")
	b.WriteString("# lines are kept so that secrets sealed under them can still be opened.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%08x %s\n", k.id, base64.StdEncoding.EncodeToString(k.secret))
	}
	return b.Bytes()
}

func newKey(existing []*key) (*key, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	for {
		var idb [idSize]byte
		if _, err := rand.Read(idb[:]); err != nil {
			return nil, fmt.Errorf("generate key id: %w", err)
		}
		id := binary.BigEndian.Uint32(idb[:])
		taken := false
		for _, k := range existing {
			taken = taken || k.id == id
		}
		if !taken {
			return makeKey(id, secret)
		}
	}
}

func makeKey(id uint32, secret []byte) (*key, error) {
	aesKey, err := hkdf.Key(sha256.New, secret, nil, sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive seal key: %w", err)
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	return &key{id: id, secret: secret, aead: aead}, nil
}

// write stores the key ring at path with mode 0600 through a temporary file,
// so a crash never leaves a half-written key ring. With replace false it
// fails with fs.ErrExist if path already exists.
func (kr *Keyring) write(path string, replace bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".master.key-*")
	if err != nil {
		return fmt.Errorf("write master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp already uses 0600; be explicit since this file is the crown jewel.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write master key: %w", err)
	}
	if _, err := tmp.Write(formatKeyFile(kr.keys)); err != nil {
		tmp.Close()
		return fmt.Errorf("write master key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write master key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write master key: %w", err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write master key: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // best effort: make the new directory entry durable
		d.Close()
	}
	return nil
}

// Rotate adds a new random primary key, writes the key ring to dir/master.key
// and starts sealing with the new key. Old keys stay in the ring so existing
// ciphertexts still open; re-seal them and remove old lines by hand if the
// old key is to be retired.
func (kr *Keyring) Rotate(dir string) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	k, err := newKey(kr.keys)
	if err != nil {
		return err
	}
	next := &Keyring{keys: append(append([]*key(nil), kr.keys...), k)}
	if err := next.write(filepath.Join(dir, FileName), true); err != nil {
		return err
	}
	kr.keys = next.keys
	return nil
}

// PrimaryID returns the id of the key that seals new secrets.
func (kr *Keyring) PrimaryID() uint32 {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys[len(kr.keys)-1].id
}

// IDs returns the ids of all keys, oldest first; the last one is primary.
func (kr *Keyring) IDs() []uint32 {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	ids := make([]uint32, len(kr.keys))
	for i, k := range kr.keys {
		ids[i] = k.id
	}
	return ids
}

// Derive returns n bytes derived with HKDF-SHA256 from the primary key for
// the given purpose (for example "cookie-hash"). Different purposes give
// independent keys; the same purpose gives the same key until Rotate.
// It panics if n is not in 1..8160 (255 SHA-256 blocks), a programming error.
func (kr *Keyring) Derive(purpose string, n int) []byte {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return derive(kr.keys[len(kr.keys)-1], purpose, n)
}

// DeriveAll is Derive for every key, primary first, for consumers that accept
// several keys during a rotation (gorilla/sessions' CookieStore does).
func (kr *Keyring) DeriveAll(purpose string, n int) [][]byte {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([][]byte, 0, len(kr.keys))
	for i := len(kr.keys) - 1; i >= 0; i-- {
		out = append(out, derive(kr.keys[i], purpose, n))
	}
	return out
}

func derive(k *key, purpose string, n int) []byte {
	if n < 1 || n > 255*sha256.Size {
		panic(fmt.Sprintf("secrets: Derive(%q, %d): length out of range", purpose, n))
	}
	b, err := hkdf.Key(sha256.New, k.secret, nil, derivePrefix+purpose, n)
	if err != nil {
		panic(fmt.Sprintf("secrets: Derive(%q, %d): %v", purpose, n, err))
	}
	return b
}

// Seal encrypts plaintext with the primary key. additionalData is not stored
// but must be given again to Open: use it to bind the ciphertext to where it
// is stored (for example "key:42"), so that a ciphertext copied to another
// row does not open there.
//
// Layout: version (1) | key id (4, big endian) | nonce (12) | sealed data | tag (16).
// The version byte and key id are authenticated too.
func (kr *Keyring) Seal(plaintext, additionalData []byte) ([]byte, error) {
	kr.mu.RLock()
	k := kr.keys[len(kr.keys)-1]
	kr.mu.RUnlock()
	out := make([]byte, headerSize+nonceSize, overhead+len(plaintext))
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:headerSize], k.id)
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	nonce := out[headerSize:]
	return k.aead.Seal(out, nonce, plaintext, aad(out[:headerSize], additionalData)), nil
}

// Open decrypts a ciphertext made by Seal with any key in the ring. It
// returns an error wrapping ErrTampered if the ciphertext was altered or the
// additional data differs, and ErrUnknownKey if its key is not in the ring.
func (kr *Keyring) Open(ciphertext, additionalData []byte) ([]byte, error) {
	if len(ciphertext) < overhead {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrTampered, len(ciphertext))
	}
	if v := ciphertext[0]; v != formatV1 {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrTampered, v)
	}
	id := binary.BigEndian.Uint32(ciphertext[1:headerSize])
	kr.mu.RLock()
	var k *key
	for _, c := range kr.keys {
		if c.id == id {
			k = c
		}
	}
	kr.mu.RUnlock()
	if k == nil {
		return nil, fmt.Errorf("%w: key id %08x", ErrUnknownKey, id)
	}
	nonce := ciphertext[headerSize : headerSize+nonceSize]
	pt, err := k.aead.Open(nil, nonce, ciphertext[headerSize+nonceSize:], aad(ciphertext[:headerSize], additionalData))
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

// aad authenticates the header along with the caller's additional data. The
// header has a fixed size, so the concatenation is unambiguous.
func aad(header, additionalData []byte) []byte {
	b := make([]byte, 0, len(header)+len(additionalData))
	return append(append(b, header...), additionalData...)
}
