package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Stack is a named environment of an application with its servers.
type Stack struct {
	ID          int64
	Name        string
	Description string
	// UserPerKey: each attached key gets a login of its own, named after the key,
	// on every server, instead of going to the server's login user.
	UserPerKey bool
	// DebugTrace: terminal connections to its servers write ssh -v style lines to the
	// stack log (tab LogDebug).
	DebugTrace bool
	CreatedAt  time.Time
}

// Host-key states of a server, derived from its pinned and presented keys.
const (
	HostKeyUnconfirmed = "unconfirmed" // nothing pinned yet: nothing connects with credentials
	HostKeyPinned      = "pinned"
	HostKeyChanged     = "changed" // the server presented another key: blocked until re-pinned
)

// Server is one SSH server of a stack.
type Server struct {
	ID           int64
	StackID      int64
	Name         string
	Host         string
	Port         int
	LoginUser    string
	JumpServerID int64  // 0: connect directly
	IdentityFile string // noted from an imported ssh_config, informational
	// HostKeys are the pinned keys in "type base64" form; empty until confirmed.
	HostKeys []string
	PinnedAt time.Time
	// PresentedKey is the last key the server presented that is not pinned: awaiting
	// a first confirmation, or a changed key when HostKeys is set.
	PresentedKey string
	PresentedAt  time.Time
	CreatedAt    time.Time
	// ViaAgent: shellgate reaches the server through the outbound link of its agent
	// (Host:Port as seen from the agent's host), never by dialing it.
	ViaAgent bool
}

// HostKeyState is HostKeyUnconfirmed, HostKeyPinned or HostKeyChanged.
func (s *Server) HostKeyState() string {
	switch {
	case len(s.HostKeys) == 0:
		return HostKeyUnconfirmed
	case s.PresentedKey != "":
		return HostKeyChanged
	default:
		return HostKeyPinned
	}
}

// Deployment states.
const (
	DeployPending  = "pending"
	DeployDeployed = "deployed"
	DeployFailed   = "failed"
	DeployRemoving = "removing"
)

// Deployment is one key on one server: a job of the deployment queue until it is
// deployed, and again while it is being removed.
type Deployment struct {
	ID            int64
	StackID       int64
	ServerID      int64
	KeyID         int64
	KeyName       string
	PublicKey     string // "type base64"
	UserPerKey    bool
	State         string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	UpdatedAt     time.Time
	// ClaimToken identifies the claim that returned this row; FinishDeployment
	// needs it. Empty for rows that were listed, not claimed.
	ClaimToken string
}

// NeverRetry is the NextAttemptAt of a failed job that waits for a person (a changed
// host key), not for time.
var NeverRetry = time.UnixMilli(1 << 52).UTC()

// AttachedKey is a key attached to a stack, with its owner.
type AttachedKey struct {
	KeyID       int64
	Name        string
	OwnerID     int64
	Owner       string
	PublicKey   string
	KeyType     string
	Fingerprint string
	AttachedAt  time.Time
}

// KeyRef is what attaching needs to know about an SSH key.
type KeyRef struct {
	ID          int64
	UserID      int64
	Owner       string
	Name        string
	PublicKey   string // "type base64"
	KeyType     string
	Fingerprint string
}

// StackMember is a user granted a stack.
type StackMember struct {
	UserID   int64
	Username string
	AddedAt  time.Time
}

// StackLogLine is one line of a stack's log.
type StackLogLine struct {
	ID       int64
	StackID  int64
	ServerID int64 // 0: about the stack as a whole
	At       time.Time
	Tab      string // "deploy"; "ssh" later
	Line     string
}

// Stack log tabs.
const (
	LogDeploy = "deploy"
	LogSSH    = "ssh"
	LogDebug  = "debug" // ssh -v style lines of terminal connections, when Stack.DebugTrace
)

// GatewayIdentity is shellgate's own SSH key pair; the private key is sealed.
type GatewayIdentity struct {
	PublicKey     string // authorized_keys form with comment
	PrivateSealed []byte
	CreatedAt     time.Time
}

// GatewayIdentityAD is the additional data the gateway's private key is sealed with.
const GatewayIdentityAD = "gateway-identity:1"

// StackStore is the state behind stacks: servers, members, attached keys, the
// deployment queue, the stack log and the gateway identity.
//
// Authorization helpers return ErrNotFound, never a distinct "forbidden", for objects
// the user may not see, so ids of other stacks reveal nothing.
type StackStore interface {
	CreateStack(ctx context.Context, st *Stack) error
	// StackForUser returns the stack if admin or a member, else ErrNotFound.
	StackForUser(ctx context.Context, stackID, userID int64, admin bool) (*Stack, error)
	// ListStacksForUser lists every stack for admins, the member's stacks otherwise.
	ListStacksForUser(ctx context.Context, userID int64, admin bool) ([]Stack, error)
	// SetStackMode changes user-per-key mode; ErrConflict while keys are attached,
	// because the logins already deployed would be left behind.
	SetStackMode(ctx context.Context, stackID int64, userPerKey bool) error
	UpdateStack(ctx context.Context, stackID int64, name, description string) error
	// SetStackDebugTrace turns tracing of the stack's terminal connections on or off.
	SetStackDebugTrace(ctx context.Context, stackID int64, on bool) error

	AddStackMember(ctx context.Context, stackID, userID int64, at time.Time) error
	RemoveStackMember(ctx context.Context, stackID, userID int64) error
	ListStackMembers(ctx context.Context, stackID int64) ([]StackMember, error)

	// CreateServer adds a server and queues every key attached to its stack for it
	// (the jobs wait until its host key is pinned).
	CreateServer(ctx context.Context, sv *Server) error
	// ServerInStack returns the server only if it belongs to the stack.
	ServerInStack(ctx context.Context, stackID, serverID int64) (*Server, error)
	ListServers(ctx context.Context, stackID int64) ([]Server, error)
	// DeleteServer removes a server; ErrConflict if another server jumps through it.
	DeleteServer(ctx context.Context, stackID, serverID int64) error
	// SetPresentedKey records a key the server presented that is not pinned.
	SetPresentedKey(ctx context.Context, serverID int64, key string, at time.Time) error
	// PinPresentedKey pins the presented key, only if it is still exactly presented
	// (what the admin confirmed), replacing pinned keys, and makes the server's failed
	// jobs due at once. ErrNotFound when the presented key differs.
	PinPresentedKey(ctx context.Context, stackID, serverID int64, presented string, at time.Time) error
	// PinHostKeys pins keys from an imported known_hosts on a server that has none.
	// ErrConflict when keys are already pinned.
	PinHostKeys(ctx context.Context, stackID, serverID int64, keys []string, at time.Time) error

	// KeyRefByID returns what attaching needs to know about a key.
	KeyRefByID(ctx context.Context, keyID int64) (*KeyRef, error)
	// AttachableKeys lists keys of one user, or of everyone when userID is 0.
	AttachableKeys(ctx context.Context, userID int64) ([]KeyRef, error)
	// AttachKey attaches a key and queues its deployment to every server of the
	// stack. ErrConflict if already attached.
	AttachKey(ctx context.Context, stackID int64, key *KeyRef, by int64, at time.Time) error
	// DetachKey detaches a key and queues its removal from every server of the stack.
	DetachKey(ctx context.Context, stackID, keyID int64, at time.Time) error
	ListAttachedKeys(ctx context.Context, stackID int64) ([]AttachedKey, error)
	// KeyStacks lists the stacks a key is attached to (for "delete this key?").
	KeyStacks(ctx context.Context, keyID int64) ([]Stack, error)
	// DetachKeyEverywhere is the key-deletion hook: call it before deleting a key.
	// It detaches the key from every stack, queues its removal from every server and
	// writes "Removing key …" log lines. (A trigger on ssh_keys does the queueing
	// part too, as a safety net for any other delete path.)
	DetachKeyEverywhere(ctx context.Context, keyID int64, at time.Time) error

	ListDeployments(ctx context.Context, stackID int64) ([]Deployment, error)
	// ClaimDeployment takes the next due job with one conditional UPDATE, leasing it
	// until now+lease under token; ErrNotFound when nothing is due.
	ClaimDeployment(ctx context.Context, now time.Time, lease time.Duration, maxAttempts int, token string) (*Deployment, error)
	// FinishDeployment records the outcome of a claimed job. A nil jobErr means
	// deployed (or, for a removal, removed: the row goes). The outcome is dropped,
	// and the claim released, if the row changed state meanwhile (detached during
	// a deploy), so the newer intent runs next.
	FinishDeployment(ctx context.Context, d *Deployment, jobErr error, retryAt time.Time, now time.Time) error
	// RetryDeployments makes the stack's failed jobs due now with fresh attempts.
	RetryDeployments(ctx context.Context, stackID int64, now time.Time) error

	AppendStackLog(ctx context.Context, l *StackLogLine) error
	// ListStackLog returns the newest lines of a tab first.
	ListStackLog(ctx context.Context, stackID int64, tab string, limit int) ([]StackLogLine, error)

	GatewayIdentity(ctx context.Context) (*GatewayIdentity, error)
	// CreateGatewayIdentity stores the identity unless one exists (another replica
	// won the race); either way it returns the stored one.
	CreateGatewayIdentity(ctx context.Context, g *GatewayIdentity) (*GatewayIdentity, error)
}

var _ StackStore = (*SQLite)(nil)

// normalizeFK also maps a foreign-key refusal (a RESTRICT) to ErrConflict.
func normalizeFK(err error) error {
	var se *sqlite.Error
	// An ON DELETE RESTRICT refusal comes back as SQLITE_CONSTRAINT_TRIGGER.
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_TRIGGER) {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return normalize(err)
}

func (s *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return normalize(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return normalize(tx.Commit())
}

func (s *SQLite) CreateStack(ctx context.Context, st *Stack) error {
	if st.CreatedAt.IsZero() {
		st.CreatedAt = time.Now()
	}
	st.CreatedAt = fromMS(ms(st.CreatedAt))
	return normalize(s.db.QueryRowContext(ctx,
		`INSERT INTO stacks (name, description, user_per_key, created_at) VALUES (?, ?, ?, ?) RETURNING id`,
		st.Name, st.Description, st.UserPerKey, ms(st.CreatedAt)).Scan(&st.ID))
}

const stackColumns = `s.id, s.name, s.description, s.user_per_key, s.debug_trace, s.created_at`

func scanStack(r scanner) (*Stack, error) {
	var st Stack
	var created int64
	if err := r.Scan(&st.ID, &st.Name, &st.Description, &st.UserPerKey, &st.DebugTrace, &created); err != nil {
		return nil, normalize(err)
	}
	st.CreatedAt = fromMS(created)
	return &st, nil
}

func (s *SQLite) StackForUser(ctx context.Context, stackID, userID int64, admin bool) (*Stack, error) {
	return scanStack(s.db.QueryRowContext(ctx,
		`SELECT `+stackColumns+` FROM stacks s
		 WHERE s.id = ? AND (? OR EXISTS (SELECT 1 FROM stack_members m WHERE m.stack_id = s.id AND m.user_id = ?))`,
		stackID, admin, userID))
}

func (s *SQLite) ListStacksForUser(ctx context.Context, userID int64, admin bool) ([]Stack, error) {
	return queryAll(ctx, s.db, scanStack, `SELECT `+stackColumns+` FROM stacks s
		 WHERE ? OR EXISTS (SELECT 1 FROM stack_members m WHERE m.stack_id = s.id AND m.user_id = ?)
		 ORDER BY s.name`, admin, userID)
}

func (s *SQLite) SetStackMode(ctx context.Context, stackID int64, userPerKey bool) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var cur bool
		var attached int
		err := tx.QueryRowContext(ctx,
			`SELECT user_per_key, (SELECT COUNT(*) FROM stack_keys WHERE stack_id = ?) FROM stacks WHERE id = ?`,
			stackID, stackID).Scan(&cur, &attached)
		if err != nil {
			return normalize(err)
		}
		if cur == userPerKey {
			return nil
		}
		if attached > 0 {
			return fmt.Errorf("%w: detach every key before changing the mode", ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `UPDATE stacks SET user_per_key = ? WHERE id = ?`, userPerKey, stackID)
		return normalize(err)
	})
}

func (s *SQLite) SetStackDebugTrace(ctx context.Context, stackID int64, on bool) error {
	return s.updateOne(ctx, `UPDATE stacks SET debug_trace = ? WHERE id = ?`, on, stackID)
}

func (s *SQLite) UpdateStack(ctx context.Context, stackID int64, name, description string) error {
	return s.updateOne(ctx, `UPDATE stacks SET name = ?, description = ? WHERE id = ?`, name, description, stackID)
}

func (s *SQLite) AddStackMember(ctx context.Context, stackID, userID int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO stack_members (stack_id, user_id, added_at) VALUES (?, ?, ?)`, stackID, userID, ms(at))
	return normalizeFK(err)
}

// RemoveStackMember also ends the member's terminals and transfers on the stack.
func (s *SQLite) RemoveStackMember(ctx context.Context, stackID, userID int64) error {
	return s.changeAccess(ctx, ReasonMemberRemoved, func(tx *sql.Tx) ([]string, error) {
		if err := execOne(ctx, tx, `DELETE FROM stack_members WHERE stack_id = ? AND user_id = ?`, stackID, userID); err != nil {
			return nil, err
		}
		return []string{ScopeMember(stackID, userID)}, nil
	})
}

func (s *SQLite) ListStackMembers(ctx context.Context, stackID int64) ([]StackMember, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT u.id, u.username, m.added_at FROM stack_members m JOIN users u ON u.id = m.user_id
		 WHERE m.stack_id = ? ORDER BY u.username`, stackID)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	var out []StackMember
	for rows.Next() {
		var m StackMember
		var at int64
		if err := rows.Scan(&m.UserID, &m.Username, &at); err != nil {
			return nil, normalize(err)
		}
		m.AddedAt = fromMS(at)
		out = append(out, m)
	}
	return out, normalize(rows.Err())
}

const serverColumns = `id, stack_id, name, host, port, login_user, COALESCE(jump_server_id, 0), identity_file,
	host_keys, pinned_at, presented_key, presented_at, created_at,
	EXISTS (SELECT 1 FROM agents a WHERE a.server_id = servers.id)`

func scanServer(r scanner) (*Server, error) {
	var sv Server
	var keys string
	var pinned, presented, created int64
	if err := r.Scan(&sv.ID, &sv.StackID, &sv.Name, &sv.Host, &sv.Port, &sv.LoginUser, &sv.JumpServerID,
		&sv.IdentityFile, &keys, &pinned, &sv.PresentedKey, &presented, &created, &sv.ViaAgent); err != nil {
		return nil, normalize(err)
	}
	sv.HostKeys = splitKeys(keys)
	if pinned != 0 {
		sv.PinnedAt = fromMS(pinned)
	}
	if presented != 0 {
		sv.PresentedAt = fromMS(presented)
	}
	sv.CreatedAt = fromMS(created)
	return &sv, nil
}

func splitKeys(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (s *SQLite) CreateServer(ctx context.Context, sv *Server) error {
	if sv.CreatedAt.IsZero() {
		sv.CreatedAt = time.Now()
	}
	sv.CreatedAt = fromMS(ms(sv.CreatedAt))
	if sv.Port == 0 {
		sv.Port = 22
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if sv.JumpServerID != 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers WHERE id = ? AND stack_id = ?`,
				sv.JumpServerID, sv.StackID).Scan(&n); err != nil {
				return normalize(err)
			}
			if n == 0 {
				return fmt.Errorf("jump server %d: %w", sv.JumpServerID, ErrNotFound)
			}
		}
		err := tx.QueryRowContext(ctx,
			`INSERT INTO servers (stack_id, name, host, port, login_user, jump_server_id, identity_file, host_keys, pinned_at, created_at)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			sv.StackID, sv.Name, sv.Host, sv.Port, sv.LoginUser, nullID(sv.JumpServerID), sv.IdentityFile,
			strings.Join(sv.HostKeys, "\n"), msOrZero(sv.PinnedAt), ms(sv.CreatedAt)).Scan(&sv.ID)
		if err != nil {
			return normalizeFK(err)
		}
		// A server added later receives every attached key.
		_, err = tx.ExecContext(ctx,
			`INSERT INTO deployments (stack_id, server_id, key_id, key_name, public_key, user_per_key, state, updated_at)
			 SELECT sk.stack_id, ?, k.id, k.name, k.public_key, st.user_per_key, 'pending', ?
			 FROM stack_keys sk JOIN ssh_keys k ON k.id = sk.key_id JOIN stacks st ON st.id = sk.stack_id
			 WHERE sk.stack_id = ?`, sv.ID, ms(sv.CreatedAt), sv.StackID)
		return normalize(err)
	})
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return ms(t)
}

func (s *SQLite) ServerInStack(ctx context.Context, stackID, serverID int64) (*Server, error) {
	return scanServer(s.db.QueryRowContext(ctx,
		`SELECT `+serverColumns+` FROM servers WHERE id = ? AND stack_id = ?`, serverID, stackID))
}

func (s *SQLite) ListServers(ctx context.Context, stackID int64) ([]Server, error) {
	return queryAll(ctx, s.db, scanServer, `SELECT `+serverColumns+` FROM servers WHERE stack_id = ? ORDER BY name`, stackID)
}

// DeleteServer also ends every terminal and transfer to the server.
func (s *SQLite) DeleteServer(ctx context.Context, stackID, serverID int64) error {
	return s.changeAccess(ctx, ReasonServerDeleted, func(tx *sql.Tx) ([]string, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM servers WHERE id = ? AND stack_id = ?`, serverID, stackID)
		if err != nil {
			return nil, normalizeFK(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, ErrNotFound
		}
		return []string{ScopeServer(serverID)}, nil
	})
}

func (s *SQLite) SetPresentedKey(ctx context.Context, serverID int64, key string, at time.Time) error {
	return s.updateOne(ctx, `UPDATE servers SET presented_key = ?, presented_at = ? WHERE id = ?`, key, ms(at), serverID)
}

func (s *SQLite) PinPresentedKey(ctx context.Context, stackID, serverID int64, presented string, at time.Time) error {
	if presented == "" {
		return ErrNotFound
	}
	// A re-pin ends what is open to the server: it was opened trusting the old key.
	return s.changeAccess(ctx, ReasonHostKeyRepinned, func(tx *sql.Tx) ([]string, error) {
		res, err := tx.ExecContext(ctx,
			`UPDATE servers SET host_keys = presented_key, pinned_at = ?, presented_key = '', presented_at = 0
			 WHERE id = ? AND stack_id = ? AND presented_key = ?`, ms(at), serverID, stackID, presented)
		if err != nil {
			return nil, normalize(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, ErrNotFound
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE deployments SET attempts = 0, next_attempt_at = 0, updated_at = ?
			 WHERE server_id = ? AND (state = 'failed' OR last_error <> '')`, ms(at), serverID)
		return []string{ScopeServer(serverID)}, normalize(err)
	})
}

func (s *SQLite) PinHostKeys(ctx context.Context, stackID, serverID int64, keys []string, at time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE servers SET host_keys = ?, pinned_at = ?, presented_key = '', presented_at = 0
		 WHERE id = ? AND stack_id = ? AND host_keys = ''`, strings.Join(keys, "\n"), ms(at), serverID, stackID)
	if err != nil {
		return normalize(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.ServerInStack(ctx, stackID, serverID); err != nil {
			return err
		}
		return fmt.Errorf("%w: host key already pinned", ErrConflict)
	}
	return nil
}

const keyRefQuery = `SELECT k.id, k.user_id, u.username, k.name, k.public_key, k.key_type, k.fingerprint
	FROM ssh_keys k JOIN users u ON u.id = k.user_id`

func scanKeyRef(r scanner) (*KeyRef, error) {
	var k KeyRef
	if err := r.Scan(&k.ID, &k.UserID, &k.Owner, &k.Name, &k.PublicKey, &k.KeyType, &k.Fingerprint); err != nil {
		return nil, normalize(err)
	}
	return &k, nil
}

func (s *SQLite) KeyRefByID(ctx context.Context, keyID int64) (*KeyRef, error) {
	return scanKeyRef(s.db.QueryRowContext(ctx, keyRefQuery+` WHERE k.id = ?`, keyID))
}

func (s *SQLite) AttachableKeys(ctx context.Context, userID int64) ([]KeyRef, error) {
	return queryAll(ctx, s.db, scanKeyRef, keyRefQuery+` WHERE (? = 0 OR k.user_id = ?) ORDER BY u.username, k.name`, userID, userID)
}

func (s *SQLite) AttachKey(ctx context.Context, stackID int64, key *KeyRef, by int64, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO stack_keys (stack_id, key_id, attached_by, attached_at) VALUES (?, ?, ?, ?)`,
			stackID, key.ID, nullID(by), ms(at))
		if err != nil {
			return normalizeFK(err)
		}
		// A row still being removed (detached a moment ago) becomes a deploy again.
		_, err = tx.ExecContext(ctx,
			`INSERT INTO deployments (stack_id, server_id, key_id, key_name, public_key, user_per_key, state, updated_at)
			 SELECT sv.stack_id, sv.id, ?, ?, ?, st.user_per_key, 'pending', ?
			 FROM servers sv JOIN stacks st ON st.id = sv.stack_id WHERE sv.stack_id = ?
			 ON CONFLICT (server_id, key_id) DO UPDATE SET
			   state = 'pending', attempts = 0, next_attempt_at = 0, last_error = '',
			   key_name = excluded.key_name, public_key = excluded.public_key,
			   user_per_key = excluded.user_per_key, updated_at = excluded.updated_at`,
			key.ID, key.Name, key.PublicKey, ms(at), stackID)
		return normalize(err)
	})
}

// DetachKey also ends the terminals on the stack that authenticated with the key.
func (s *SQLite) DetachKey(ctx context.Context, stackID, keyID int64, at time.Time) error {
	return s.changeAccess(ctx, ReasonKeyDetached, func(tx *sql.Tx) ([]string, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM stack_keys WHERE stack_id = ? AND key_id = ?`, stackID, keyID)
		if err != nil {
			return nil, normalize(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, ErrNotFound
		}
		// claimed_until is left alone: a deploy that is running finishes first, sees
		// the state changed, and the removal runs after it.
		_, err = tx.ExecContext(ctx,
			`UPDATE deployments SET state = 'removing', attempts = 0, next_attempt_at = 0, last_error = '', updated_at = ?
			 WHERE stack_id = ? AND key_id = ?`, ms(at), stackID, keyID)
		return []string{ScopeAttachment(stackID, keyID)}, normalize(err)
	})
}

func (s *SQLite) ListAttachedKeys(ctx context.Context, stackID int64) ([]AttachedKey, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT k.id, k.name, u.id, u.username, k.public_key, k.key_type, k.fingerprint, sk.attached_at
		 FROM stack_keys sk JOIN ssh_keys k ON k.id = sk.key_id JOIN users u ON u.id = k.user_id
		 WHERE sk.stack_id = ? ORDER BY k.name, u.username`, stackID)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	var out []AttachedKey
	for rows.Next() {
		var k AttachedKey
		var at int64
		if err := rows.Scan(&k.KeyID, &k.Name, &k.OwnerID, &k.Owner, &k.PublicKey, &k.KeyType, &k.Fingerprint, &at); err != nil {
			return nil, normalize(err)
		}
		k.AttachedAt = fromMS(at)
		out = append(out, k)
	}
	return out, normalize(rows.Err())
}

func (s *SQLite) KeyStacks(ctx context.Context, keyID int64) ([]Stack, error) {
	return queryAll(ctx, s.db, scanStack, `SELECT `+stackColumns+` FROM stacks s JOIN stack_keys sk ON sk.stack_id = s.id WHERE sk.key_id = ? ORDER BY s.name`, keyID)
}

func (s *SQLite) DetachKeyEverywhere(ctx context.Context, keyID int64, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO stack_log (stack_id, server_id, at, tab, line)
			 SELECT sk.stack_id, NULL, ?, 'deploy', 'Key ' || k.name || ' was deleted; removing it from every server'
			 FROM stack_keys sk JOIN ssh_keys k ON k.id = sk.key_id WHERE sk.key_id = ?`, ms(at), keyID)
		if err != nil {
			return normalize(err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM stack_keys WHERE key_id = ?`, keyID); err != nil {
			return normalize(err)
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE deployments SET state = 'removing', attempts = 0, next_attempt_at = 0, last_error = '', updated_at = ?
			 WHERE key_id = ?`, ms(at), keyID)
		return normalize(err)
	})
}

const deploymentColumns = `id, stack_id, server_id, key_id, key_name, public_key, user_per_key, state, attempts,
	next_attempt_at, last_error, updated_at`

func scanDeployment(r scanner) (*Deployment, error) {
	var d Deployment
	var next, updated int64
	if err := r.Scan(&d.ID, &d.StackID, &d.ServerID, &d.KeyID, &d.KeyName, &d.PublicKey, &d.UserPerKey, &d.State,
		&d.Attempts, &next, &d.LastError, &updated); err != nil {
		return nil, normalize(err)
	}
	d.NextAttemptAt, d.UpdatedAt = fromMS(next), fromMS(updated)
	return &d, nil
}

func (s *SQLite) ListDeployments(ctx context.Context, stackID int64) ([]Deployment, error) {
	return queryAll(ctx, s.db, scanDeployment, `SELECT `+deploymentColumns+` FROM deployments WHERE stack_id = ? ORDER BY server_id, key_name`, stackID)
}

// ClaimDeployment's UPDATE is the only way a job is taken: the subquery picks the
// oldest due job on a server whose host key is pinned and not changed, and the outer
// WHERE re-checks the lease, so of two workers racing for a row exactly one gets it
// (SQLite serialises writers; on PostgreSQL the re-check runs after the row lock, and
// the subquery would add FOR UPDATE SKIP LOCKED).
func (s *SQLite) ClaimDeployment(ctx context.Context, now time.Time, lease time.Duration, maxAttempts int, token string) (*Deployment, error) {
	n := ms(now)
	d, err := scanDeployment(s.db.QueryRowContext(ctx,
		`UPDATE deployments SET claimed_until = ?, claim_token = ?, attempts = attempts + 1
		 WHERE id = (
		     SELECT d.id FROM deployments d JOIN servers sv ON sv.id = d.server_id
		     WHERE d.state IN ('pending', 'failed', 'removing') AND d.next_attempt_at <= ? AND d.claimed_until <= ?
		       AND d.attempts < ? AND sv.host_keys <> '' AND sv.presented_key = ''
		     ORDER BY d.next_attempt_at, d.id LIMIT 1)
		   AND claimed_until <= ?
		 RETURNING `+deploymentColumns,
		n+lease.Milliseconds(), token, n, n, maxAttempts, n))
	if err != nil {
		return nil, err
	}
	d.ClaimToken = token
	return d, nil
}

func (s *SQLite) FinishDeployment(ctx context.Context, d *Deployment, jobErr error, retryAt, now time.Time) error {
	var res sql.Result
	var err error
	switch {
	case jobErr == nil && d.State == DeployRemoving:
		res, err = s.db.ExecContext(ctx, `DELETE FROM deployments WHERE id = ? AND claim_token = ? AND state = 'removing'`,
			d.ID, d.ClaimToken)
	case jobErr == nil:
		res, err = s.db.ExecContext(ctx,
			`UPDATE deployments SET state = 'deployed', last_error = '', claimed_until = 0, claim_token = '', updated_at = ?
			 WHERE id = ? AND claim_token = ? AND state = ?`, ms(now), d.ID, d.ClaimToken, d.State)
	default:
		next := DeployFailed
		if d.State == DeployRemoving {
			next = DeployRemoving
		}
		res, err = s.db.ExecContext(ctx,
			`UPDATE deployments SET state = ?, last_error = ?, next_attempt_at = ?, claimed_until = 0, claim_token = '', updated_at = ?
			 WHERE id = ? AND claim_token = ? AND state = ?`,
			next, truncateErr(jobErr.Error()), ms(retryAt), ms(now), d.ID, d.ClaimToken, d.State)
	}
	if err != nil {
		return normalize(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// The intent changed while we worked: release the claim for the next run.
		_, err = s.db.ExecContext(ctx, `UPDATE deployments SET claimed_until = 0, claim_token = '' WHERE id = ? AND claim_token = ?`,
			d.ID, d.ClaimToken)
		return normalize(err)
	}
	return nil
}

func truncateErr(s string) string {
	if len(s) > 500 {
		return s[:500] + "…"
	}
	return s
}

func (s *SQLite) RetryDeployments(ctx context.Context, stackID int64, now time.Time) error {
	_, err := s.db.ExecContext(ctx,
		`UPDATE deployments SET attempts = 0, next_attempt_at = 0, updated_at = ?
		 WHERE stack_id = ? AND (state = 'failed' OR (state = 'removing' AND last_error <> ''))`, ms(now), stackID)
	return normalize(err)
}

func (s *SQLite) AppendStackLog(ctx context.Context, l *StackLogLine) error {
	if l.At.IsZero() {
		l.At = time.Now()
	}
	if l.Tab == "" {
		l.Tab = LogDeploy
	}
	return normalize(s.db.QueryRowContext(ctx,
		`INSERT INTO stack_log (stack_id, server_id, at, tab, line) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		l.StackID, nullID(l.ServerID), ms(l.At), l.Tab, l.Line).Scan(&l.ID))
}

func (s *SQLite) ListStackLog(ctx context.Context, stackID int64, tab string, limit int) ([]StackLogLine, error) {
	if limit <= 0 || limit > 1000 {
		limit = 200
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, stack_id, COALESCE(server_id, 0), at, tab, line FROM stack_log
		 WHERE stack_id = ? AND tab = ? ORDER BY at DESC, id DESC LIMIT ?`, stackID, tab, limit)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	var out []StackLogLine
	for rows.Next() {
		var l StackLogLine
		var at int64
		if err := rows.Scan(&l.ID, &l.StackID, &l.ServerID, &at, &l.Tab, &l.Line); err != nil {
			return nil, normalize(err)
		}
		l.At = fromMS(at)
		out = append(out, l)
	}
	return out, normalize(rows.Err())
}

func (s *SQLite) GatewayIdentity(ctx context.Context) (*GatewayIdentity, error) {
	var g GatewayIdentity
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT public_key, private_sealed, created_at FROM gateway_identity WHERE id = 1`).
		Scan(&g.PublicKey, &g.PrivateSealed, &at)
	if err != nil {
		return nil, normalize(err)
	}
	g.CreatedAt = fromMS(at)
	return &g, nil
}

func (s *SQLite) CreateGatewayIdentity(ctx context.Context, g *GatewayIdentity) (*GatewayIdentity, error) {
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO gateway_identity (id, public_key, private_sealed, created_at) VALUES (1, ?, ?, ?)
		 ON CONFLICT (id) DO NOTHING`, g.PublicKey, g.PrivateSealed, ms(g.CreatedAt))
	if err != nil {
		return nil, normalize(err)
	}
	return s.GatewayIdentity(ctx)
}
