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

// Parameters follow RFC 9106's second recommended option, scaled for a small server:
// 64 MiB, 3 passes, 2 lanes (~50 ms on one core of a 2020s machine).
const (
	memoryKiB = 64 * 1024
	passes    = 3
	lanes     = 2
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
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return errors.New("unsupported password hash format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("unsupported argon2 version")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return fmt.Errorf("bad argon2 parameters: %w", err)
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return fmt.Errorf("bad salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil {
		return fmt.Errorf("bad hash: %w", err)
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

// dummy is verified against when a username does not exist, so that a wrong username
// takes as long as a wrong password and timing does not reveal which accounts exist.
// It is a constant with the current parameters (a test keeps them in step) rather
// than a hash computed at start: computing it made every process, the agent and the
// local proxy included, allocate argon2's 64 MiB and spend ~50 ms before main.
const dummy = "$argon2id$v=19$m=65536,t=3,p=2$Rpv/GLLbBrWaSQOoWcMwpw$pwMzmrHS3mfwoLhir2oVanLAd5iOJSOh5phbeQvZ+HM"

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
