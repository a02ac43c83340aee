// Package tunnel carries TCP streams between shellgate and hosts it cannot dial: a
// small agent on such a host dials out to shellgate over one WebSocket (an ordinary
// HTTP/1.1 upgrade on the dashboard's port) and shellgate opens multiplexed streams
// through it, each to a destination the agent's configuration allows. The Hub is
// shellgate's side, the Agent the host's side; docs/agent.md describes the protocol.
//
// It knows nothing of echo, templ, cookies or SSH: terminal.Dial sees an agent
// stream as one more net.Conn.
package tunnel

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Path is where the agent's WebSocket upgrade is served, on the dashboard's port.
const Path = "/agent/connect"

// ProtocolVersion is sent in the challenge and the hello; both sides refuse another.
const ProtocolVersion = 1

// Handshake message types (text frames, JSON, one object each).
const (
	// MsgChallenge (shellgate → agent, first frame): a fresh random nonce the agent signs.
	MsgChallenge = "challenge"
	// MsgHello (agent → shellgate): the agent's public key and its signature over
	// the challenge; plus the destination token on the first connection only.
	MsgHello = "hello"
	// MsgWelcome (shellgate → agent): accepted; from now on every frame is binary
	// and carries the multiplexer.
	MsgWelcome = "welcome"
)

// Close codes of the agent link (WebSocket close frames; the reason text is for
// people and never carries a secret).
const (
	// CloseNormal: the agent or shellgate stopped on purpose.
	CloseNormal = 1000
	// CloseGoingAway: shellgate is shutting down; the agent reconnects with backoff.
	CloseGoingAway = 1001
	// CloseProtocol: a malformed or unexpected handshake frame.
	CloseProtocol = 4400
	// CloseUnauthorized: the token is unknown, used or expired, or the credential is
	// not enrolled. Deliberately one code for all, so a guesser learns nothing. The
	// agent stops: retrying cannot help.
	CloseUnauthorized = 4401
	// CloseReplaced: a newer connection of the same agent took over this one.
	CloseReplaced = 4409
	// CloseRevoked: an admin generated a new token, revoking this agent's
	// credential (or a tunnel's source token was rotated). The client stops.
	CloseRevoked = 4410
	// CloseTunnelClosed: the tunnel was closed (for good) or deleted.
	CloseTunnelClosed = 4411
	// CloseTunnelExpired: the tunnel reached the end of its lifetime.
	CloseTunnelExpired = 4412
)

// Limits.
const (
	// maxHandshakeFrame bounds every handshake frame.
	maxHandshakeFrame = 8 << 10
	// maxOpenHeader bounds a stream's open request and reply.
	maxOpenHeader = 1 << 10
	// tokenBytes is the entropy of a destination token: 256 bits.
	tokenBytes = 32
	// DefaultHeartbeat is how often shellgate pings an agent; three missed
	// intervals mark the link dead on both sides.
	DefaultHeartbeat = 20 * time.Second
	// missedHeartbeats is how many intervals without a heartbeat end a link.
	missedHeartbeats = 3
)

// Challenge is MsgChallenge.
type Challenge struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Nonce   string `json:"nonce"` // base64, 32 random bytes
}

// Hello is MsgHello.
type Hello struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	// Token is the single-use destination token, present only when enrolling.
	Token string `json:"token,omitempty"`
	// PublicKey is the agent's ed25519 key in authorized_keys form, no comment.
	PublicKey string `json:"publicKey"`
	// Signature is base64 of the SSH wire signature over SignedData.
	Signature string `json:"signature"`
}

// Welcome is MsgWelcome.
type Welcome struct {
	Type string `json:"type"`
	// Server is the name of the server this agent stands for (for its log).
	Server string `json:"server"`
	// HeartbeatMS is shellgate's ping interval; the agent treats three intervals
	// without a ping as a dead link.
	HeartbeatMS int64 `json:"heartbeatMs"`
	// Enrolled is true when this connection enrolled the agent (its token is spent).
	Enrolled bool `json:"enrolled,omitempty"`
	// ExpiresAtMS is the tunnel's end (Unix ms), for a local proxy only.
	ExpiresAtMS int64 `json:"expiresAt,omitempty"`
}

// OpenRequest is the first thing shellgate writes on a new stream.
type OpenRequest struct {
	Addr string `json:"addr"` // host:port as dialed from the agent's host
}

// OpenReply is the agent's answer; then raw bytes flow both ways.
type OpenReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// SignedData is what the agent signs: a context string, the nonce and the Host it
// dialed, so a signature is good for one connection to one shellgate only.
func SignedData(nonce []byte, host string) []byte {
	var b []byte
	b = append(b, "shellgate-agent-auth-v1\x00"...)
	b = append(b, nonce...)
	b = append(b, 0)
	b = append(b, strings.ToLower(host)...)
	return b
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// DecodeHello parses and validates a hello frame (not its signature).
func DecodeHello(data []byte) (*Hello, ssh.PublicKey, []byte, error) {
	var h Hello
	if err := decodeStrict(data, &h); err != nil {
		return nil, nil, nil, fmt.Errorf("hello: %w", err)
	}
	if h.Type != MsgHello || h.Version != ProtocolVersion {
		return nil, nil, nil, fmt.Errorf("hello: type %q version %d", h.Type, h.Version)
	}
	key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(h.PublicKey))
	if err != nil || len(rest) != 0 {
		return nil, nil, nil, errors.New("hello: bad public key")
	}
	if key.Type() != ssh.KeyAlgoED25519 {
		return nil, nil, nil, errors.New("hello: public key must be ed25519")
	}
	sig, err := base64.StdEncoding.DecodeString(h.Signature)
	if err != nil {
		return nil, nil, nil, errors.New("hello: bad signature encoding")
	}
	if h.Token != "" && !validToken(h.Token) {
		return nil, nil, nil, errors.New("hello: malformed token")
	}
	return &h, key, sig, nil
}

// VerifyHello checks that sig is key's signature over SignedData(nonce, host).
func VerifyHello(key ssh.PublicKey, sig, nonce []byte, host string) error {
	var s ssh.Signature
	if err := ssh.Unmarshal(sig, &s); err != nil {
		return errors.New("hello: bad signature")
	}
	if s.Format != ssh.KeyAlgoED25519 {
		return errors.New("hello: signature format")
	}
	return key.Verify(SignedData(nonce, host), &s)
}

// NewToken returns a fresh destination token (256 random bits, base64url) and
// the hash to store in its place.
func NewToken() (token, hash string) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	token = "sgd_" + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the stored form of a token: hex SHA-256. Tokens carry 256 bits of
// entropy, so a fast hash is enough: nothing to brute-force.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func validToken(t string) bool {
	if len(t) > 100 || !strings.HasPrefix(t, "sgd_") {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(t[4:])
	return err == nil && len(b) == tokenBytes
}

// KeyLine is a public key in the stored form: "type base64", no comment.
func KeyLine(k ssh.PublicKey) string {
	b := ssh.MarshalAuthorizedKey(k)
	return strings.TrimSpace(string(b))
}

// signHello builds the hello for key over the challenge.
func signHello(priv ed25519.PrivateKey, nonce []byte, host, token string) ([]byte, error) {
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	sig, err := signer.Sign(rand.Reader, SignedData(nonce, host))
	if err != nil {
		return nil, err
	}
	return json.Marshal(Hello{
		Type: MsgHello, Version: ProtocolVersion, Token: token,
		PublicKey: KeyLine(signer.PublicKey()),
		Signature: base64.StdEncoding.EncodeToString(ssh.Marshal(sig)),
	})
}

// writeFrame writes v as one length-prefixed (uint16) JSON frame on a stream.
func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxOpenHeader {
		return errors.New("frame too large")
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	_, err = w.Write(buf)
	return err
}

// readFrame reads one length-prefixed JSON frame into v, strictly.
func readFrame(r io.Reader, v any) error {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	l := int(binary.BigEndian.Uint16(n[:]))
	if l == 0 || l > maxOpenHeader {
		return fmt.Errorf("frame of %d bytes", l)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return decodeStrict(b, v)
}

// normalizeAddr lower-cases the host of host:port and checks its shape, so an
// allow list compares like with like.
func normalizeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", fmt.Errorf("bad address %q", addr)
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
