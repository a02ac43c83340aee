package terminal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// The terminal WebSocket protocol. docs/protocol.md is the prose version;
// protocol.json is the machine-readable mirror the browser code imports (a
// test keeps it equal to these constants).
//
// Binary frames carry raw terminal bytes, both ways, unframed. Text frames
// carry one JSON control message each: an object whose "type" names it.

// Control message types sent by the browser.
const (
	TypeOpen   = "open"   // start a new terminal: {server, cols, rows, ticket}
	TypeResume = "resume" // reattach to a detached session: {session, token, offset}
	TypeResize = "resize" // the terminal changed size: {cols, rows}
	TypeAck    = "ack"    // output up to offset has been rendered: {offset}
	TypeAnswer = "answer" // answers to the last prompt, in order: {answers[]}
	TypePing   = "ping"   // application-level liveness probe; answered with pong
)

// TypeHostKey is sent both ways: the server asks about a host key
// {fingerprint, keyType, changed}, the browser answers {accept}.
const TypeHostKey = "hostkey"

// Control message types sent by the server.
const (
	TypeStatus  = "status"  // connection state changed: {state, message, exitStatus}
	TypePrompt  = "prompt"  // authentication questions: {name, instruction, questions[{text, echo}]}
	TypeSession = "session" // the session exists; keep id and token to resume: {id, resumeToken, window}
	TypePong    = "pong"    // reply to ping
	TypeError   = "error"   // why the socket is about to close: {code, message}
	// TypeInputAck returns input credit: input up to offset has been written to
	// the remote shell: {offset}. Sent each time at least InputAckStep more
	// bytes were written.
	TypeInputAck = "inputack"
)

// States carried by status messages.
const (
	StateConnecting = "connecting" // dialing, key exchange, authentication
	StatePrompt     = "prompt"     // waiting for the person (prompt or host key question)
	StateConnected  = "connected"  // the shell is running; binary frames flow
	StateClosed     = "closed"     // the session ended; exitStatus is set when the shell exited
)

// WebSocket close codes. 1000–1011 keep their RFC 6455 meaning; 4000–4999
// are ours.
const (
	CloseNormal          = 1000 // the remote shell exited (exit, logout, Ctrl+D)
	CloseGoingAway       = 1001 // the server is shutting down
	ClosePolicy          = 1008 // protocol violation (malformed or unexpected message)
	CloseTooBig          = 1009 // a message exceeded ReadLimit
	CloseInternal        = 1011 // unexpected server error
	CloseAuthFailed      = 4001 // the SSH server refused every authentication method
	CloseHostKeyChanged  = 4002 // the server's host key differs from the pinned one; nothing was sent
	CloseHostKeyRejected = 4003 // the person did not accept an unknown host key
	CloseTicketInvalid   = 4004 // the open ticket is unknown, used, expired or not for this server
	CloseSessionNotFound = 4005 // resume failed: no such session, wrong token, or offset no longer kept
	CloseTooManySessions = 4006 // the per-user session limit is reached
	CloseTerminated      = 4007 // an administrator closed the session
	CloseConnectFailed   = 4008 // the SSH server could not be reached (refused, timeout, not SSH, no common algorithms)
	CloseConnectionLost  = 4009 // the SSH connection died (keepalive missed, network)
	CloseTakenOver       = 4010 // another socket resumed this session
	CloseRevoked         = 4011 // access ended: sign-out, password change, account disabled, removed from the stack, server or key gone, host key re-pinned
)

// Limits enforced by the decoder and the bridge.
const (
	MaxCols       = 1000     // cols must be 1..MaxCols
	MaxRows       = 1000     // rows must be 1..MaxRows
	MaxAnswers    = 32       // at most this many answers per prompt
	MaxFieldLen   = 1024     // longest string field (ticket, answer, server, token)
	ReadLimit     = 64 << 10 // largest message the server accepts, in bytes
	DefaultWindow = 1 << 20  // unacknowledged output allowed before the server stops reading
	// InputWindow is the browser's input credit: input sent but not yet
	// written to the remote shell (not yet covered by an inputack). More is a
	// protocol violation (1008).
	InputWindow  = 256 << 10
	InputAckStep = 4 << 10  // the server sends inputack whenever this much more input was written
	PasteChunk   = 16 << 10 // the browser sends a paste in binary frames of at most this many bytes
	// ReconnectInput bounds what the browser keeps of keystrokes typed while
	// it is reconnecting; beyond it, it says input was dropped.
	ReconnectInput = 64 << 10
	// ControlRate is the sustained rate of text frames (control messages) a
	// socket may send per second, with bursts of ControlBurst; beyond it the
	// socket closes with 1008.
	ControlRate  = 2000
	ControlBurst = 4000
)

// Question is one prompt line; Echo false means a secret (do not show typing).
type Question struct {
	Text string `json:"text"`
	Echo bool   `json:"echo"`
}

// Browser → server messages.
type (
	OpenMessage struct {
		Server string `json:"server"`
		Cols   int    `json:"cols"`
		Rows   int    `json:"rows"`
		Ticket string `json:"ticket"`
	}
	ResumeMessage struct {
		Session string `json:"session"`
		Token   string `json:"token"`
		Offset  int64  `json:"offset"`
	}
	ResizeMessage struct {
		Cols int `json:"cols"`
		Rows int `json:"rows"`
	}
	AckMessage struct {
		Offset int64 `json:"offset"`
	}
	AnswerMessage struct {
		Answers []string `json:"answers"`
	}
	HostKeyAnswer struct {
		Accept bool `json:"accept"`
	}
	PingMessage struct{}
)

// Server → browser messages.
type (
	StatusMessage struct {
		State   string `json:"state"`
		Message string `json:"message,omitempty"`
		// ExitStatus is set only on closed, when the remote shell reported one.
		ExitStatus *int `json:"exitStatus,omitempty"`
	}
	PromptMessage struct {
		Name        string     `json:"name"`
		Instruction string     `json:"instruction"`
		Questions   []Question `json:"questions"`
	}
	HostKeyMessage struct {
		Fingerprint string `json:"fingerprint"` // SHA256:… as ssh-keygen -l prints it
		KeyType     string `json:"keyType"`
		Changed     bool   `json:"changed"` // true: pinned key differs; informational, the socket closes with 4002
	}
	SessionMessage struct {
		ID          string `json:"id"`
		ResumeToken string `json:"resumeToken"`
		Window      int64  `json:"window"` // unacked bytes the server sends before pausing
		// InputReceived is the input the session has received so far: after a
		// resume the browser sends again what it sent beyond it.
		InputReceived int64 `json:"inputReceived"`
		// InputWritten is the input written to the shell so far, the base of
		// the browser's input credit (InputWindow).
		InputWritten int64 `json:"inputWritten"`
		InputWindow  int64 `json:"inputWindow"` // input credit, see InputWindow
	}
	InputAckMessage struct {
		Offset int64 `json:"offset"` // input written to the remote shell so far
	}
	PongMessage  struct{}
	ErrorMessage struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
)

// Message is any control message; MessageType is its "type" field.
type Message interface{ MessageType() string }

func (OpenMessage) MessageType() string     { return TypeOpen }
func (ResumeMessage) MessageType() string   { return TypeResume }
func (ResizeMessage) MessageType() string   { return TypeResize }
func (AckMessage) MessageType() string      { return TypeAck }
func (AnswerMessage) MessageType() string   { return TypeAnswer }
func (HostKeyAnswer) MessageType() string   { return TypeHostKey }
func (PingMessage) MessageType() string     { return TypePing }
func (StatusMessage) MessageType() string   { return TypeStatus }
func (PromptMessage) MessageType() string   { return TypePrompt }
func (HostKeyMessage) MessageType() string  { return TypeHostKey }
func (SessionMessage) MessageType() string  { return TypeSession }
func (PongMessage) MessageType() string     { return TypePong }
func (InputAckMessage) MessageType() string { return TypeInputAck }
func (ErrorMessage) MessageType() string    { return TypeError }

// ErrProtocol marks a malformed or unexpected control message.
var ErrProtocol = errors.New("terminal protocol violation")

// EncodeControl renders m as a text-frame payload with its "type" first.
func EncodeControl(m Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(body) + 24)
	b.WriteString(`{"type":`)
	typ, _ := json.Marshal(m.MessageType())
	b.Write(typ)
	if len(body) > 2 { // body is an object: splice its fields after "type"
		b.WriteByte(',')
		b.Write(body[1:])
	} else {
		b.WriteByte('}')
	}
	return b.Bytes(), nil
}

// DecodeControl parses one browser → server text frame strictly: known type,
// no unknown fields, no trailing data, values within the limits above. The
// result is a pointer to one of the browser message types.
func DecodeControl(data []byte) (Message, error) {
	return decode(data, clientMessages)
}

// DecodeServerControl parses one server → browser text frame; Go clients
// (tests, benchmarks, a CLI) use it.
func DecodeServerControl(data []byte) (Message, error) {
	return decode(data, serverMessages)
}

var clientMessages = map[string]func() Message{
	TypeOpen:    func() Message { return new(OpenMessage) },
	TypeResume:  func() Message { return new(ResumeMessage) },
	TypeResize:  func() Message { return new(ResizeMessage) },
	TypeAck:     func() Message { return new(AckMessage) },
	TypeAnswer:  func() Message { return new(AnswerMessage) },
	TypeHostKey: func() Message { return new(HostKeyAnswer) },
	TypePing:    func() Message { return new(PingMessage) },
}

var serverMessages = map[string]func() Message{
	TypeStatus:   func() Message { return new(StatusMessage) },
	TypePrompt:   func() Message { return new(PromptMessage) },
	TypeHostKey:  func() Message { return new(HostKeyMessage) },
	TypeSession:  func() Message { return new(SessionMessage) },
	TypePong:     func() Message { return new(PongMessage) },
	TypeError:    func() Message { return new(ErrorMessage) },
	TypeInputAck: func() Message { return new(InputAckMessage) },
}

func decode(data []byte, table map[string]func() Message) (Message, error) {
	// A map first: it rejects non-objects and lets us check every key
	// exactly (json.Unmarshal alone would ignore unknown keys and match
	// names case-insensitively).
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	var typ string
	if err := json.Unmarshal(fields["type"], &typ); err != nil {
		return nil, fmt.Errorf("%w: missing or malformed type", ErrProtocol)
	}
	newMsg, ok := table[typ]
	if !ok {
		return nil, fmt.Errorf("%w: unknown message type %q", ErrProtocol, typ)
	}
	m := newMsg()
	known := jsonFields(m)
	for k := range fields {
		if k != "type" && !slices.Contains(known, k) {
			return nil, fmt.Errorf("%w: %s: unknown field %q", ErrProtocol, typ, k)
		}
	}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProtocol, typ, err)
	}
	if err := validate(m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProtocol, typ, err)
	}
	return m, nil
}

// jsonFields lists the JSON names of a message's fields.
func jsonFields(m Message) []string {
	t := reflect.TypeOf(m).Elem()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

func validate(m Message) error {
	size := func(cols, rows int) error {
		if cols < 1 || cols > MaxCols || rows < 1 || rows > MaxRows {
			return fmt.Errorf("size %dx%d outside 1..%d x 1..%d", cols, rows, MaxCols, MaxRows)
		}
		return nil
	}
	str := func(name, v string) error {
		if len(v) > MaxFieldLen {
			return fmt.Errorf("%s longer than %d bytes", name, MaxFieldLen)
		}
		return nil
	}
	switch m := m.(type) {
	case *OpenMessage:
		if m.Server == "" || m.Ticket == "" {
			return errors.New("server and ticket are required")
		}
		return errors.Join(size(m.Cols, m.Rows), str("server", m.Server), str("ticket", m.Ticket))
	case *ResumeMessage:
		if m.Session == "" || m.Token == "" {
			return errors.New("session and token are required")
		}
		if m.Offset < 0 {
			return errors.New("negative offset")
		}
		return errors.Join(str("session", m.Session), str("token", m.Token))
	case *ResizeMessage:
		return size(m.Cols, m.Rows)
	case *AckMessage:
		if m.Offset < 0 {
			return errors.New("negative offset")
		}
	case *AnswerMessage:
		if len(m.Answers) > MaxAnswers {
			return fmt.Errorf("more than %d answers", MaxAnswers)
		}
		for _, a := range m.Answers {
			if err := str("answer", a); err != nil {
				return err
			}
		}
	}
	return nil
}
