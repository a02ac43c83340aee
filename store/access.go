package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Access scopes name what a live terminal or file transfer depends on. Every change that
// ends or narrows someone's access bumps the epoch of the scopes it touches, in the same
// transaction as the change; a live session compares the epochs it started under with
// the current ones (AccessEpochs) and ends when one moved.
func ScopeUser(userID int64) string { return "user:" + strconv.FormatInt(userID, 10) }

// ScopeWebSession is one signed-in browser (its WebSession.ID).
func ScopeWebSession(id string) string { return "web:" + id }

// ScopeMember is one user's membership of one stack.
func ScopeMember(stackID, userID int64) string {
	return "member:" + strconv.FormatInt(stackID, 10) + ":" + strconv.FormatInt(userID, 10)
}

// ScopeServer is one server: deleting it or re-pinning its host key bumps it.
func ScopeServer(serverID int64) string { return "server:" + strconv.FormatInt(serverID, 10) }

// ScopeKey is one SSH key: deleting it bumps it.
func ScopeKey(keyID int64) string { return "key:" + strconv.FormatInt(keyID, 10) }

// ScopeAttachment is one key attached to one stack: detaching bumps it.
func ScopeAttachment(stackID, keyID int64) string {
	return "attach:" + strconv.FormatInt(stackID, 10) + ":" + strconv.FormatInt(keyID, 10)
}

// scopeAll counts every bump (see AccessSeq).
const scopeAll = "*"

// Reasons recorded with a bump; a revoked session shows them to its person and writes
// them to the audit log ("Access ended: you signed out.").
const (
	ReasonSignedOut       = "you signed out"
	ReasonPasswordChanged = "the password of the account was changed"
	ReasonDisabled        = "the account was disabled"
	ReasonRoleChanged     = "the account's role changed"
	ReasonEndedByAdmin    = "an administrator ended all sessions of the account"
	ReasonMemberRemoved   = "the account was removed from the stack's members"
	ReasonServerDeleted   = "the server was deleted"
	ReasonHostKeyRepinned = "the server's host key was re-pinned"
	ReasonKeyDetached     = "the key used was detached from the stack"
	ReasonKeyDeleted      = "the key used was deleted"
)

// AccessEpoch is the state of one scope: how often it was bumped, and why last.
type AccessEpoch struct {
	Epoch  int64
	Reason string
}

// AccessStore is what revocation needs from the store.
type AccessStore interface {
	// AccessEpochs returns the epoch of each scope; a scope never bumped is absent
	// (epoch 0).
	AccessEpochs(ctx context.Context, scopes []string) (map[string]AccessEpoch, error)
	// AccessSeq counts every bump so far. A watcher that sees it move re-checks the
	// live sessions of this process: it catches changes made by another process
	// (another replica, the `user` command) that no in-process hint announced.
	AccessSeq(ctx context.Context) (int64, error)
	// EndUserSessions signs a user out everywhere (every web session deleted) and
	// ends every terminal and transfer of theirs, in one transaction.
	EndUserSessions(ctx context.Context, userID int64) error
	// OnAccessChange registers f, called after every committed bump with the new
	// AccessSeq and the scopes bumped. f must not block (it only wakes sessions).
	OnAccessChange(f func(seq int64, scopes []string))
}

// accessHints holds the OnAccessChange callbacks of one store.
type accessHints struct {
	mu sync.Mutex
	fs []func(int64, []string)
}

func (h *accessHints) add(f func(int64, []string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fs = append(h.fs, f)
}

func (h *accessHints) publish(seq int64, scopes []string) {
	h.mu.Lock()
	fs := h.fs
	h.mu.Unlock()
	for _, f := range fs {
		f(seq, scopes)
	}
}

func (s *SQLite) OnAccessChange(f func(seq int64, scopes []string)) { s.hints.add(f) }

type execer interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// bumpAccess raises the epoch of scopes inside tx and returns the new AccessSeq.
func bumpAccess(ctx context.Context, tx execer, reason string, scopes ...string) (int64, error) {
	now := ms(time.Now())
	const upsert = `INSERT INTO access_epochs (scope, epoch, reason, changed_at) VALUES (?, 1, ?, ?)
		ON CONFLICT (scope) DO UPDATE SET epoch = access_epochs.epoch + 1, reason = excluded.reason, changed_at = excluded.changed_at
		RETURNING epoch`
	var seq int64
	for _, sc := range append(scopes, scopeAll) {
		if err := tx.QueryRowContext(ctx, upsert, sc, reason, now).Scan(&seq); err != nil {
			return 0, normalize(err)
		}
	}
	return seq, nil
}

// changeAccess runs fn and the bump of the scopes it returns in one transaction, then
// publishes the hint. fn returning no scopes commits without a bump.
func (s *SQLite) changeAccess(ctx context.Context, reason string, fn func(tx *sql.Tx) ([]string, error)) error {
	var seq int64
	var scopes []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if scopes, err = fn(tx); err != nil || len(scopes) == 0 {
			return err
		}
		seq, err = bumpAccess(ctx, tx, reason, scopes...)
		return err
	})
	if err == nil && len(scopes) > 0 {
		s.hints.publish(seq, scopes)
	}
	return err
}

func (s *SQLite) AccessEpochs(ctx context.Context, scopes []string) (map[string]AccessEpoch, error) {
	out := make(map[string]AccessEpoch, len(scopes))
	if len(scopes) == 0 {
		return out, nil
	}
	args := make([]any, len(scopes))
	for i, sc := range scopes {
		args[i] = sc
	}
	rows, err := s.db.QueryContext(ctx, `SELECT scope, epoch, reason FROM access_epochs WHERE scope IN (?`+
		strings.Repeat(", ?", len(scopes)-1)+`)`, args...)
	if err != nil {
		return nil, normalize(err)
	}
	defer rows.Close()
	for rows.Next() {
		var sc string
		var e AccessEpoch
		if err := rows.Scan(&sc, &e.Epoch, &e.Reason); err != nil {
			return nil, normalize(err)
		}
		out[sc] = e
	}
	return out, normalize(rows.Err())
}

func (s *SQLite) AccessSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT epoch FROM access_epochs WHERE scope = ?`, scopeAll).Scan(&seq)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	return seq, normalize(err)
}

func (s *SQLite) EndUserSessions(ctx context.Context, userID int64) error {
	return s.changeAccess(ctx, ReasonEndedByAdmin, func(tx *sql.Tx) ([]string, error) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE user_id = ?`, userID); err != nil {
			return nil, normalize(err)
		}
		return []string{ScopeUser(userID)}, nil
	})
}
