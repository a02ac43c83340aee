// Package password hashes and verifies dashboard passwords with argon2id, in the PHC
// string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash), and generates strong ones.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Parameters are the first row of OWASP's Password Storage Cheat Sheet for argon2id:
// 19 MiB, 2 passes, 1 lane. One hash stays small enough that a bounded number of them
// (see Limiter) cannot exhaust a small server's memory. Hashes made with other
// parameters (64 MiB, 3 passes, 2 lanes before) still verify, and NeedsRehash tells
// the caller to store a new hash at the next sign-in.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	saltLen   = 16
	hashLen   = 32
)

// MinLength is the shortest password accepted for an account.
const MinLength = 12

// ErrMismatch means the password does not match the hash.
var ErrMismatch = errors.New("password does not match")

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of an argon2id hash of pw with a random salt.
func Hash(pw string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	sum := argon2.IDKey([]byte(pw), salt, passes, memoryKiB, lanes, hashLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, memoryKiB, passes, lanes, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// Verify checks pw against a PHC string made by Hash, in constant time.
func Verify(encoded, pw string) error {
	p, err := parse(encoded)
	if err != nil {
		return err
	}
	got := argon2.IDKey([]byte(pw), p.salt, p.t, p.m, p.p, uint32(len(p.hash)))
	if subtle.ConstantTimeCompare(got, p.hash) != 1 {
		return ErrMismatch
	}
	return nil
}

// params are the parts of a PHC string.
type params struct {
	m, t       uint32
	p          uint8
	salt, hash []byte
}

func parse(encoded string) (*params, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return nil, errors.New("unsupported password hash format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return nil, errors.New("unsupported argon2 version")
	}
	var p params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.m, &p.t, &p.p); err != nil {
		return nil, fmt.Errorf("bad argon2 parameters: %w", err)
	}
	if p.m > maxMemoryKiB || p.t == 0 || p.t > 16 || p.p == 0 {
		return nil, errors.New("argon2 parameters out of range")
	}
	var err error
	if p.salt, err = b64.DecodeString(parts[4]); err != nil {
		return nil, fmt.Errorf("bad salt: %w", err)
	}
	if p.hash, err = b64.DecodeString(parts[5]); err != nil || len(p.hash) < 16 || len(p.hash) > 64 {
		return nil, errors.New("bad hash")
	}
	return &p, nil
}

// maxMemoryKiB bounds the memory a stored hash may ask for (a hash written into the
// database by hand must not make one sign-in allocate gigabytes).
const maxMemoryKiB = 256 * 1024

// NeedsRehash reports whether a hash was made with other parameters than Hash uses
// now, so the caller should store a new hash of the password it just verified.
func NeedsRehash(encoded string) bool {
	p, err := parse(encoded)
	return err != nil || p.m != memoryKiB || p.t != passes || p.p != lanes || len(p.salt) != saltLen || len(p.hash) != hashLen
}

// memoryOf is the memory (KiB) verifying against encoded takes.
func memoryOf(encoded string) int64 {
	if p, err := parse(encoded); err == nil {
		return int64(p.m)
	}
	return 0
}

// dummy is verified against when a username does not exist, so that a wrong username
// takes as long as a wrong password and timing does not reveal which accounts exist.
// It is a constant with the current parameters (a test keeps them in step) rather
// than a hash computed at start: computing it made every process, the agent and the
// local proxy included, allocate argon2's memory and spend ~50 ms before main.
const dummy = "$argon2id$v=19$m=19456,t=2,p=1$UigHyYUTsGZiPnMPa/27Tg$Rv+A7di27CRllw3yAfTD5Da0sn+PbqIZchuTRkmElyY"

// VerifyNothing spends the time a Verify would, for a username that does not exist.
func VerifyNothing(pw string) { _ = Verify(dummy, pw) }

// CheckStrength returns a plain-words reason why pw is not acceptable, or nil.
func CheckStrength(pw string) error {
	if utf8.RuneCountInString(pw) < MinLength {
		return fmt.Errorf("use at least %d characters", MinLength)
	}
	if len(pw) > 1024 {
		return errors.New("use at most 1024 bytes")
	}
	return nil
}

// Generate returns a random password of 20 characters from an alphabet without look-alikes
// (about 115 bits).
func Generate() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	return pick(alphabet, 20)
}

func pick(alphabet string, n int) string {
	out := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		// Rejection sampling keeps the choice uniform.
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue
		}
		out[i] = alphabet[int(buf[0])%len(alphabet)]
		i++
	}
	return string(out)
}
