package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/revoke"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/metrics"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/views/pages"
)

// ticketTTL bounds how long a page may take between asking for a ticket and opening
// its socket: the page asks right before it connects, so 30 s is plenty.
const ticketTTL = 30 * time.Second

// stackServer loads the stack and server named by :id and :sid for the signed-in
// user: another stack's server, or a stack the user is not a member of, is a 404.
func (s *Server) stackServer(c echo.Context) (*store.Stack, *store.Server, error) {
	st, err := s.stackFor(c)
	if err != nil {
		return nil, nil, err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return nil, nil, err
	}
	return st, sv, nil
}

// terminalPage is the browser terminal for one server.
func (s *Server) terminalPage(c echo.Context) error {
	st, sv, err := s.stackServer(c)
	if err != nil {
		return err
	}
	p := s.page(c, sv.Name+" — terminal", "stacks")
	p.ExtraCSS = s.assets.TermCSS
	return render(c, http.StatusOK, pages.Terminal(p, pages.TerminalModel{
		StackID: st.ID, StackName: st.Name, ServerID: sv.ID, ServerName: sv.Name,
		Login: sv.LoginUser, Address: hostPort(sv.Host, sv.Port), TermJS: s.assets.TermJS,
	}))
}

func hostPort(host string, port int) string {
	if port == 0 || port == 22 {
		return host
	}
	return host + ":" + strconv.Itoa(port)
}

type ticketRequest struct {
	Stack  string `json:"stack"`
	Server string `json:"server"`
}

// issueTicket gives the terminal page a single-use ticket for one server. The request
// is CSRF-protected like every POST, so a foreign page cannot obtain one.
func (s *Server) issueTicket(c echo.Context) error {
	var req ticketRequest
	if err := c.Bind(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "Send {stack, server}.")
	}
	c.SetParamNames("id", "sid")
	c.SetParamValues(req.Stack, req.Server)
	st, sv, err := s.stackServer(c)
	if err != nil {
		return err
	}
	if sv.HostKeyState() != store.HostKeyPinned {
		return echo.NewHTTPError(http.StatusConflict, "The host key of "+sv.Name+" must be confirmed on the stack page first.")
	}
	u := currentUser(c)
	token := randomToken(32)
	now := s.cfg.Now()
	if err := s.store.CreateTicket(c.Request().Context(), &store.Ticket{
		ID: hashToken(token), UserID: u.ID, WebSessionID: sessionID(c), StackID: st.ID, ServerID: sv.ID,
		CreatedAt: now, ExpiresAt: now.Add(ticketTTL),
	}); err != nil {
		return err
	}
	_ = s.store.DeleteExpiredTickets(c.Request().Context(), now.Add(-time.Hour))
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]string{"ticket": token})
}

// terminalSocket upgrades to the terminal WebSocket. The Origin must be exactly
// shellgate's own: a page elsewhere cannot ride the victim's cookie into a shell
// (cross-site WebSocket hijacking). The socket carries no credential in its URL; the
// first message brings the ticket.
func (s *Server) terminalSocket(c echo.Context) error {
	u := currentUser(c)
	want := s.expectedOrigin(c)
	if c.Request().Header.Get("Origin") != want {
		s.cfg.Ops.Metrics.UpgradeRefused(metrics.RefusedOrigin)
		return echo.NewHTTPError(http.StatusForbidden, "Cross-site WebSocket refused.")
	}
	// Sockets upgraded but not opened yet cost a connection and a goroutine each
	// until their first message: a few per person at a time.
	admitted, err := s.terms.Admit(strconv.FormatInt(u.ID, 10))
	if err != nil {
		return echo.NewHTTPError(http.StatusTooManyRequests, "Too many terminals are opening at once. Wait a moment and try again.")
	}
	defer admitted()
	up := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   32 << 10,
		WriteBufferSize:  32 << 10,
		CheckOrigin:      func(r *http.Request) bool { return r.Header.Get("Origin") == want },
	}
	ws, err := up.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		s.cfg.Ops.Metrics.UpgradeRefused(metrics.RefusedHandshake)
		return nil // the upgrader has answered
	}
	wsID := sessionID(c)
	clientIP := c.RealIP()
	var opened struct {
		stack  *store.Stack
		server *store.Server
		keys   string
		grant  *revoke.Grant
		used   *usedKeys
	}
	rec := &recordingSink{}
	hooks := terminal.Hooks{
		Recorder: rec, InputRecorder: sinkInput{rec},
		UserID:   strconv.FormatInt(u.ID, 10),
		Admitted: admitted,
		Open: func(ctx context.Context, msg terminal.OpenMessage) (*terminal.Target, terminal.Auth, error) {
			used := &usedKeys{}
			st, sv, t, auth, keys, g, err := s.openTerminal(ctx, u, wsID, msg, used)
			if err != nil {
				return nil, terminal.Auth{}, err
			}
			opened.stack, opened.server, opened.keys, opened.grant, opened.used = st, sv, keys, g, used
			s.prepareRecording(ctx, rec, st, sv, t.User)
			return t, auth, nil
		},
		// Guard runs once the shell started: the session ends when access does.
		Guard: func() terminal.Guard { return s.terminalGuard(opened.grant, u, opened.stack, opened.used) },
		// Trace runs after Open, so it knows the stack and whether it is being debugged.
		Trace: func(line string) { s.traceTerminal(opened.stack, opened.server, line) },
		OnStart: func(info terminal.SessionInfo) {
			s.cfg.Ops.Metrics.TerminalStarted(info)
			s.startRecording(rec, u, opened.stack, opened.server, info)
			s.live.add(info.ID, liveMeta{User: u.Username, Stack: opened.stack, Server: opened.server, ClientIP: clientIP})
			detail := map[string]string{"session": info.ID, "login": info.User, "keys": opened.keys, "local": info.Local}
			if k := opened.used.nameList(); k != "" {
				detail["key"] = k
			}
			s.auditTerminal(u, clientIP, opened.stack, opened.server, "terminal.start", true, detail)
		},
		OnEnd: func(info terminal.SessionInfo, exitStatus int, in, out int64, err error) {
			s.live.remove(info.ID)
			s.cfg.Ops.Metrics.TerminalEnded(info, err)
			detail := map[string]string{
				"session": info.ID, "login": info.User, "keys": opened.keys,
				"bytes_in": strconv.FormatInt(in, 10), "bytes_out": strconv.FormatInt(out, 10),
				"duration": s.cfg.Now().Sub(info.Started).Round(time.Second).String(),
			}
			if k := opened.used.nameList(); k != "" {
				detail["key"] = k
			}
			if exitStatus >= 0 {
				detail["exit_status"] = strconv.Itoa(exitStatus)
			}
			var exit *terminal.ExitError
			ok := err == nil || errors.As(err, &exit)
			switch {
			case errors.Is(err, terminal.ErrClosedByBrowser):
				// Closing the tab or navigating away is how most sessions end.
				ok = true
				detail["ended"] = "closed by the browser"
			case !ok:
				detail["reason"] = terminal.UserMessage(err)
			}
			if s.finishRecording(rec, info.ID) {
				detail["recording"] = "yes"
			}
			s.auditTerminal(u, clientIP, opened.stack, opened.server, "terminal.end", ok, detail)
		},
	}
	// Host keys are confirmed on the stack page, by an administrator, before anyone
	// connects; the terminal never trusts a key on first use (HostKeys stays nil).
	if err := s.terms.Serve(c.Request().Context(), ws, hooks); err != nil {
		s.log.Info("terminal ended", "user", u.Username, "err", err)
	}
	s.abandonRecording(rec) // a shell that never started leaves no file
	return nil
}

// openTerminal redeems the ticket of an open message, takes the Grant the session
// will be watched under (before re-checking the state it stands for), and works out
// what to dial. used learns which key authenticated.
func (s *Server) openTerminal(ctx context.Context, u *store.User, wsID string, msg terminal.OpenMessage, used *usedKeys) (
	*store.Stack, *store.Server, *terminal.Target, terminal.Auth, string, *revoke.Grant, error) {
	fail := func(err error) (*store.Stack, *store.Server, *terminal.Target, terminal.Auth, string, *revoke.Grant, error) {
		return nil, nil, nil, terminal.Auth{}, "", nil, err
	}
	serverID, err := strconv.ParseInt(msg.Server, 10, 64)
	if err != nil {
		return fail(terminal.ErrTicket)
	}
	t, err := s.store.ClaimTicket(ctx, hashToken(msg.Ticket), u.ID, wsID, serverID, s.cfg.Now())
	if err != nil {
		return fail(fmt.Errorf("%w: %v", terminal.ErrTicket, err))
	}
	g, err := s.revoke.Grant(ctx, baseScopes(u, wsID, t.StackID, serverID)...)
	if err != nil {
		return fail(err)
	}
	if err := s.stillSignedIn(ctx, wsID); err != nil {
		return fail(err)
	}
	// Membership is checked again: it may have been revoked since the page loaded.
	st, err := s.store.StackForUser(ctx, t.StackID, u.ID, u.IsAdmin())
	if err != nil {
		return fail(fmt.Errorf("%w: %v", terminal.ErrTicket, err))
	}
	sv, err := s.store.ServerInStack(ctx, st.ID, serverID)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", terminal.ErrTicket, err))
	}
	switch sv.HostKeyState() {
	case store.HostKeyUnconfirmed:
		return fail(&terminal.Refusal{Code: terminal.CloseHostKeyRejected, Message: "The host key of " + sv.Name +
			" is not confirmed yet. An administrator confirms its fingerprint on the stack page before anyone connects."})
	case store.HostKeyChanged:
		return fail(&terminal.Refusal{Code: terminal.CloseHostKeyChanged, Message: "REMOTE HOST IDENTIFICATION HAS CHANGED for " + sv.Name +
			": it presented a different host key. shellgate will not connect until an administrator confirms the new key on the stack page."})
	}
	servers, err := s.store.ListServers(ctx, st.ID)
	if err != nil {
		return fail(err)
	}
	target, err := jobs.Target(servers, sv.ID)
	if err != nil {
		return fail(&terminal.Refusal{Code: terminal.CloseConnectFailed, Message: "Cannot reach " + sv.Name + ": " + err.Error() + "."})
	}
	// The jump servers on the way are part of the scope: re-pinning one's host key
	// ends the terminals that went through it. (A re-pin before this read makes the
	// dial below fail on the old key.)
	if jumps := jumpScopes(servers, sv.JumpServerID); len(jumps) > 0 {
		if err := g.Add(ctx, jumps...); err != nil {
			return fail(err)
		}
	}
	auth, login, keys, err := s.userAuth(ctx, u, st, used)
	if err != nil {
		return fail(err)
	}
	if s.cfg.DemoAuth != nil {
		auth.Signers = append(auth.Signers, s.cfg.DemoAuth(sv.ID)...)
	}
	if st.UserPerKey && login != "" {
		target.User = login
	}
	return st, sv, target, auth, keys, g, nil
}

// userAuth collects the person's keys attached to the stack that shellgate holds a
// private part of. A passphrase-protected key is offered locked: the passphrase is asked
// in the browser only if the server would accept the key, and is never stored. It
// returns the login of the first usable key (for user-per-key stacks) and the
// fingerprints offered (for the audit log). When used is set, it learns which key the
// server accepted.
func (s *Server) userAuth(ctx context.Context, u *store.User, st *store.Stack, used *usedKeys) (terminal.Auth, string, string, error) {
	attached, err := s.store.ListAttachedKeys(ctx, st.ID)
	if err != nil {
		return terminal.Auth{}, "", "", err
	}
	var auth terminal.Auth
	var login string
	var prints []string
	for _, a := range attached {
		if a.OwnerID != u.ID {
			continue
		}
		k, err := s.store.KeyByID(ctx, u.ID, a.KeyID)
		if err != nil || !k.HasPrivate {
			continue
		}
		if login == "" {
			login = k.Name
		}
		prints = append(prints, k.Fingerprint)
		if k.PrivateProtected {
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.PublicKey))
			if err != nil {
				continue
			}
			key := k
			auth.Locked = append(auth.Locked, terminal.LockedKey{Name: k.Name, PublicKey: pub,
				Unlock: func(passphrase []byte) (ssh.Signer, error) {
					p, err := s.openPrivate(key, passphrase)
					if err != nil {
						return nil, err
					}
					if used != nil {
						return noteSigns(p.Signer, func() { used.note(key.ID, key.Name) }), nil
					}
					return p.Signer, nil
				}})
			continue
		}
		p, err := s.openPrivate(k, nil)
		if err != nil {
			// A tampered or unreadable key is never used; the person still gets the
			// password prompt, and the log says why the key was skipped.
			s.log.Error("stored private key not usable", "key", k.Name, "user", u.Username, "err", err)
			continue
		}
		sg := p.Signer
		if used != nil {
			id, name := k.ID, k.Name
			sg = noteSigns(sg, func() { used.note(id, name) })
		}
		auth.Signers = append(auth.Signers, sg)
	}
	return auth, login, strings.Join(prints, ","), nil
}

func (s *Server) auditTerminal(u *store.User, clientIP string, st *store.Stack, sv *store.Server, kind string, ok bool, detail map[string]string) {
	e := &store.Event{At: s.cfg.Now(), Kind: kind, ActorID: u.ID, ActorName: u.Username, ClientIP: clientIP, OK: ok, Detail: detail}
	if st != nil {
		e.StackID = st.ID
	}
	if sv != nil {
		e.ServerID, e.Target = sv.ID, sv.Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.AppendEvent(ctx, e); err != nil {
		s.log.Error("audit event not written", "kind", kind, "err", err)
	}
}
