// Package store keeps shellgate's state: accounts, web sessions, sign-in throttling and
// the audit log. One interface, Store, stands in front of one implementation per engine
// (SQLite now, PostgreSQL later); handlers and the terminal depend on the interface or on
// smaller interfaces of their own that it satisfies.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every implementation returns, so callers never see a driver's error types.
var (
	// ErrNotFound means no row matched.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique constraint refused the write (a name already taken).
	ErrConflict = errors.New("already exists")
)

// Role is a dashboard account's role.
type Role string

const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleMember }

// User is a dashboard account.
type User struct {
	ID           int64
	Username     string
	PasswordHash string
	Role         Role
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// IsAdmin reports whether u may use the admin pages.
func (u *User) IsAdmin() bool { return u.Role == RoleAdmin }

// WebSession is a signed-in browser. ID is the hash of the cookie's token.
type WebSession struct {
	ID         string
	UserID     int64
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	ClientIP   string
	UserAgent  string
}

// Event is one audit log entry. Events are append-only.
type Event struct {
	ID        int64
	At        time.Time
	Kind      string // e.g. "login", "user.create"
	ActorID   int64  // 0 when there is no signed-in actor (failed sign-in, CLI)
	ActorName string
	ClientIP  string
	UserAgent string
	OK        bool
	Target    string            // what the event is about, e.g. a username or a server
	Detail    map[string]string // free-form, never secrets
	StackID   int64             // 0 unless the event is about a stack or one of its servers
	ServerID  int64             // 0 unless the event is about one server
}

// EventFilter selects audit events, newest first.
type EventFilter struct {
	ActorID   int64  // 0: everyone
	ActorName string // exact, case-insensitive; "" for everyone
	Kind      string // exact kind, or a prefix ending in "." ("terminal." matches terminal.start and terminal.end)
	StackID   int64
	ServerID  int64
	Since     time.Time
	Until     time.Time
	Limit     int   // default 100, at most 10000
	BeforeID  int64 // paging: only events with a smaller id
}

// Store is shellgate's persistent state.
type Store interface {
	StackStore
	AgentStore
	TunnelStore
	CreateUser(ctx context.Context, u *User) error
	UserByID(ctx context.Context, id int64) (*User, error)
	UserByName(ctx context.Context, username string) (*User, error)
	ListUsers(ctx context.Context) ([]User, error)
	CountUsers(ctx context.Context) (int, error)
	// SetPassword sets a new password hash and, in the same transaction, ends every
	// web session of the user: a cookie copied before the change is worthless after it.
	SetPassword(ctx context.Context, id int64, hash string) error
	// SetDisabled disables or enables an account; disabling ends every web session of
	// the user in the same transaction.
	SetDisabled(ctx context.Context, id int64, disabled bool) error
	SetRole(ctx context.Context, id int64, role Role) error

	CreateWebSession(ctx context.Context, s *WebSession) error
	// WebSessionByID returns the session and its user, or ErrNotFound when the
	// session does not exist or has expired.
	WebSessionByID(ctx context.Context, id string, now time.Time) (*WebSession, *User, error)
	TouchWebSession(ctx context.Context, id string, now time.Time) error
	DeleteWebSession(ctx context.Context, id string) error

	RecordLoginFailure(ctx context.Context, username, clientIP string, at time.Time) error
	// LoginFailures counts failures since a time, for one username and for one address.
	LoginFailures(ctx context.Context, username, clientIP string, since time.Time) (byUser, byIP int, err error)
	ClearLoginFailures(ctx context.Context, username string) error

	AppendEvent(ctx context.Context, e *Event) error
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)

	KeyStore
	TicketStore
	AuditStore
	AccessStore

	Close() error
}
