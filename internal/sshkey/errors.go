package sshkey

import "errors"

// Kinds of input errors. Every error that ParsePublic, ParsePrivate,
// Generate and ValidName return for bad input is an *InputError whose Kind is
// one of these, so callers can both classify it (errors.Is) and show its
// Message to the user (errors.As).
var (
	ErrEmpty              = errors.New("no key given")
	ErrPrivateKeyPasted   = errors.New("a private key was pasted where a public key belongs")
	ErrMultipleKeys       = errors.New("more than one key")
	ErrLineBreak          = errors.New("key broken over several lines")
	ErrOptions            = errors.New("authorized_keys options are not accepted")
	ErrMalformed          = errors.New("malformed key")
	ErrTypeMismatch       = errors.New("key type does not match key data")
	ErrUnsupportedType    = errors.New("unsupported key type")
	ErrUnsupportedFormat  = errors.New("unsupported key file format")
	ErrCertificate        = errors.New("certificates are not accepted")
	ErrWeakKey            = errors.New("weak key refused")
	ErrNotPrivateKey      = errors.New("not a private key")
	ErrPassphraseRequired = errors.New("private key is passphrase protected")
	ErrWrongPassphrase    = errors.New("wrong passphrase")
	ErrInvalidName        = errors.New("invalid key name")
)

// InputError is an error in user input. Message is written for the person
// who gave the input and is safe to show them: it never contains key
// material. Kind is one of the Err* values of this package.
type InputError struct {
	Kind    error
	Message string
	// Err is the underlying library error, if any, for logs.
	Err error
}

func (e *InputError) Error() string { return e.Message }

// Unwrap returns Kind and, if set, the underlying error.
func (e *InputError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

func inputErr(kind error, msg string) *InputError {
	return &InputError{Kind: kind, Message: msg}
}

const newKeyAdvice = "create a new key with: ssh-keygen -t ed25519"

// privateKeyPastedMessage is the message of every ErrPrivateKeyPasted error.
// Handlers must not log or echo the input that caused it.
const privateKeyPastedMessage = "This is a PRIVATE key. A private key must never be pasted or sent anywhere — " +
	"anyone who has it can log in as you. Paste the PUBLIC key instead: the contents of the .pub file " +
	"(for example ~/.ssh/id_ed25519.pub). If this private key was shared somewhere, replace it with a new one."
