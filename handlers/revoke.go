package handlers

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/revoke"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// Revocation reaches live terminals and transfers through one mechanism (package
// revoke): each takes a Grant of the access scopes it was authorised under before
// checking them, and ends when one of their epochs moves. The store bumps them in the
// transactions that sign out, change passwords, disable accounts, remove members,
// delete servers, re-pin host keys, detach or delete keys.

// baseScopes are what every terminal and transfer of u on a server depends on.
func baseScopes(u *store.User, webSession string, stackID, serverID int64) []string {
	return []string{
		store.ScopeUser(u.ID), store.ScopeWebSession(webSession),
		store.ScopeMember(stackID, u.ID), store.ScopeServer(serverID),
	}
}

// jumpScopes are the server scopes of a jump chain starting at id (0: none).
func jumpScopes(servers []store.Server, id int64) []string {
	byID := make(map[int64]*store.Server, len(servers))
	for i := range servers {
		byID[servers[i].ID] = &servers[i]
	}
	var scopes []string
	for seen := map[int64]bool{}; id != 0 && !seen[id]; {
		seen[id] = true
		scopes = append(scopes, store.ScopeServer(id))
		sv, ok := byID[id]
		if !ok {
			break
		}
		id = sv.JumpServerID
	}
	return scopes
}

// stillSignedIn re-reads the browser session after a Grant was taken: a sign-out
// between the request's session check and the Grant is seen here.
func (s *Server) stillSignedIn(ctx context.Context, webSession string) error {
	_, u, err := s.store.WebSessionByID(ctx, webSession, s.cfg.Now())
	if err != nil || u.Disabled {
		return &terminal.RevokedError{Reason: store.ReasonSignedOut}
	}
	return nil
}

// usedKeys notes which of the offered keys the SSH server asked to sign with: the
// key that authenticated (x/crypto asks the server before it signs).
type usedKeys struct {
	mu    sync.Mutex
	ids   []int64
	names []string
}

func (k *usedKeys) note(id int64, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, x := range k.ids {
		if x == id {
			return
		}
	}
	k.ids = append(k.ids, id)
	k.names = append(k.names, name)
}

// names lists the keys that authenticated, for the audit log.
func (k *usedKeys) nameList() string {
	if k == nil {
		return ""
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.names, ", ")
}

func (k *usedKeys) list() []int64 {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int64(nil), k.ids...)
}

// noteSigns wraps a signer so that a signature notes its key, keeping the
// algorithm interfaces (RSA keys sign with SHA-2 only through them).
func noteSigns(sg ssh.Signer, note func()) ssh.Signer {
	as, ok := sg.(ssh.AlgorithmSigner)
	if !ok {
		return plainNoter{sg, note}
	}
	n := algNoter{as, note}
	if ms, ok := sg.(ssh.MultiAlgorithmSigner); ok {
		return multiNoter{n, ms.Algorithms()}
	}
	return n
}

type plainNoter struct {
	ssh.Signer
	note func()
}

func (p plainNoter) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	p.note()
	return p.Signer.Sign(r, data)
}

type algNoter struct {
	ssh.AlgorithmSigner
	note func()
}

func (a algNoter) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	a.note()
	return a.AlgorithmSigner.Sign(r, data)
}

func (a algNoter) SignWithAlgorithm(r io.Reader, data []byte, alg string) (*ssh.Signature, error) {
	a.note()
	return a.AlgorithmSigner.SignWithAlgorithm(r, data, alg)
}

type multiNoter struct {
	algNoter
	algs []string
}

func (m multiNoter) Algorithms() []string { return m.algs }

// terminalGuard finishes a terminal's Grant once the shell runs: it adds the keys
// that authenticated, then checks they are still attached (a detach before the
// Grant saw them is caught here, one after it by the Grant).
func (s *Server) terminalGuard(g *revoke.Grant, u *store.User, st *store.Stack, used *usedKeys) terminal.Guard {
	ids := used.list()
	if len(ids) == 0 {
		return g
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var scopes []string
	for _, id := range ids {
		scopes = append(scopes, store.ScopeKey(id), store.ScopeAttachment(st.ID, id))
	}
	if err := g.Add(ctx, scopes...); err != nil {
		return revokedGuard("access could not be checked")
	}
	attached, err := s.store.ListAttachedKeys(ctx, st.ID)
	if err != nil {
		return revokedGuard("access could not be checked")
	}
	for _, id := range ids {
		found := false
		for _, a := range attached {
			found = found || (a.KeyID == id && a.OwnerID == u.ID)
		}
		if !found {
			return revokedGuard(store.ReasonKeyDetached)
		}
	}
	return g
}

// revokedGuard is access that ended before the watch began.
type revokedGuard string

func (r revokedGuard) Watch(revoked func(string)) func() {
	revoked(string(r))
	return func() {}
}

// guardTransfer ties a file request to its Grant: when access ends, the request's
// context is cancelled with a RevokedError, a blocked write to the browser fails at
// once, and the audit log says why.
func (s *Server) guardTransfer(c echo.Context, fc *fileCall, g *revoke.Grant) (stop func()) {
	ctx, cancel := context.WithCancelCause(c.Request().Context())
	c.SetRequest(c.Request().WithContext(ctx))
	rc := http.NewResponseController(c.Response().Writer)
	u, ip := currentUser(c), c.RealIP()
	path := c.QueryParam("path")
	if path == "" {
		path = c.QueryParam("dir")
	}
	stopWatch := g.Watch(func(reason string) {
		err := &terminal.RevokedError{Reason: reason}
		cancel(err)
		_ = rc.SetWriteDeadline(time.Now()) // unblock a write to a slow browser
		_ = rc.SetReadDeadline(time.Now())  // and an upload's body
		s.auditTerminal(u, ip, fc.st, fc.sv, "file.revoked", false, map[string]string{
			"path": path, "reason": terminal.UserMessage(err),
		})
	})
	return func() {
		stopWatch()
		cancel(nil)
	}
}

// endSessions signs a user out everywhere and ends their terminals and transfers.
func (s *Server) endSessions(c echo.Context) error {
	u, err := s.targetUser(c)
	if err != nil {
		return err
	}
	if err := s.store.EndUserSessions(c.Request().Context(), u.ID); err != nil {
		return err
	}
	s.audit(c, currentUser(c), "user.end_sessions", u.Username, true, nil)
	s.setFlash(c, "ok", "Every session of "+u.Username+" has ended: signed out, terminals and transfers closed.")
	return c.Redirect(http.StatusSeeOther, "/admin/users")
}

func parseID(v string) int64 {
	id, _ := strconv.ParseInt(v, 10, 64)
	return id
}
