package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/views/pages"
)

// StacksConfig is what the stack pages need beyond the store.
type StacksConfig struct {
	// Gateway is shellgate's own key pair, used to deploy keys and to reach jump hosts.
	Gateway *jobs.Identity
	// Dialer reaches SSH servers (direct TCP by default).
	Dialer terminal.Dialer
	// Scan reads a server's host key without authenticating to it; default
	// jobs.ScanHostKey with Dialer and the gateway key for jump hops.
	Scan func(ctx context.Context, t *terminal.Target) (ssh.PublicKey, error)
	// InstallWithPassword logs in once with a password and installs the gateway key.
	// Nil hides the option.
	InstallWithPassword func(ctx context.Context, t *terminal.Target, password string, log func(string)) error
	// Wake pokes the deployment worker after new jobs were queued.
	Wake func()
	// ScanTimeout bounds one host-key read (default 10s).
	ScanTimeout time.Duration
	// Agents are the live links of agents (servers behind NAT); nil: no agent
	// endpoint, servers reached through an agent show as disconnected.
	Agents AgentLinks
	// Tunnels are the local proxies' links; nil: no tunnels for native clients.
	Tunnels TunnelLinks
	// TunnelMinLifetime and TunnelMaxLifetime bound a tunnel's lifetime
	// (default 1 min and 12 h).
	TunnelMinLifetime, TunnelMaxLifetime time.Duration
}

// Authorization, everywhere below: a stack is fetched with StackForUser (admins: any;
// members: their stacks) and a server with ServerInStack (only that stack's), and
// anything not found that way is a 404 — another stack's or user's ids reveal nothing.

var (
	validServerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$`)
	validLogin      = regexp.MustCompile(`^[a-z_][a-z0-9_.\-]{0,31}$|^[A-Za-z0-9_]{1,32}$`)
	validHost       = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]]{1,253}$`)
)

func notFound() error { return echo.NewHTTPError(http.StatusNotFound) }

// stackFor loads the stack named by :id if the viewer may see it.
func (s *Server) stackFor(c echo.Context) (*store.Stack, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return nil, notFound()
	}
	u := currentUser(c)
	st, err := s.store.StackForUser(c.Request().Context(), id, u.ID, u.IsAdmin())
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	return st, err
}

// serverFor loads the server named by sid (a param or form value) within the stack.
func (s *Server) serverFor(c echo.Context, st *store.Stack, raw string) (*store.Server, error) {
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return nil, notFound()
	}
	sv, err := s.store.ServerInStack(c.Request().Context(), st.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	return sv, err
}

func (s *Server) stacksPage(c echo.Context) error {
	return s.renderStacks(c, http.StatusOK, pages.StacksModel{})
}

func (s *Server) renderStacks(c echo.Context, status int, m pages.StacksModel) error {
	ctx := c.Request().Context()
	u := currentUser(c)
	stacks, err := s.store.ListStacksForUser(ctx, u.ID, u.IsAdmin())
	if err != nil {
		return err
	}
	m.IsAdmin = u.IsAdmin()
	for _, st := range stacks {
		servers, err := s.store.ListServers(ctx, st.ID)
		if err != nil {
			return err
		}
		deps, err := s.store.ListDeployments(ctx, st.ID)
		if err != nil {
			return err
		}
		keys, err := s.store.ListAttachedKeys(ctx, st.ID)
		if err != nil {
			return err
		}
		card := pages.StackCard{ID: st.ID, Name: st.Name, Description: st.Description, KeyCount: len(keys)}
		byServer := groupDeployments(deps)
		for _, sv := range servers {
			kind, text, _ := serverState(&sv, byServer[sv.ID])
			switch sv.HostKeyState() {
			case store.HostKeyChanged:
				kind, text = "danger", "blocked: host key changed"
				card.Attention++
			case store.HostKeyUnconfirmed:
				kind, text = "warn", "host key not confirmed"
				card.Attention++
			}
			card.Servers = append(card.Servers, pages.ServerChip{Name: sv.Name, Address: address(&sv), StateKind: kind, StateText: text})
		}
		m.Stacks = append(m.Stacks, card)
	}
	return render(c, status, pages.Stacks(s.page(c, "Stacks", "stacks"), m))
}

func (s *Server) createStack(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	desc := strings.TrimSpace(c.FormValue("description"))
	again := func(msg string) error {
		return s.renderStacks(c, http.StatusUnprocessableEntity, pages.StacksModel{FormName: name, FormDescription: desc, FormError: msg})
	}
	if name == "" || len(name) > 64 {
		return again("A stack needs a name of at most 64 characters.")
	}
	if len(desc) > 200 {
		return again("Keep the description under 200 characters.")
	}
	st := &store.Stack{Name: name, Description: desc, CreatedAt: s.cfg.Now()}
	if err := s.store.CreateStack(c.Request().Context(), st); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return again("There is already a stack named " + name + ".")
		}
		return err
	}
	s.audit(c, currentUser(c), "stack.create", st.Name, true, nil)
	s.setFlash(c, "ok", "Stack "+st.Name+" created. Add its servers next.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
}

func stackURL(id int64, tab string) string {
	u := "/stacks/" + strconv.FormatInt(id, 10)
	if tab != "" {
		u += "?tab=" + tab
	}
	return u
}

func hostKeyURL(stackID, serverID int64) string {
	return fmt.Sprintf("/stacks/%d/servers/%d/hostkey", stackID, serverID)
}

func (s *Server) stackPage(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	tab := c.QueryParam("tab")
	switch tab {
	case "keys", "log", "servers":
	case "settings":
		if !currentUser(c).IsAdmin() {
			tab = "servers"
		}
	default:
		tab = "servers"
	}
	m, err := s.stackModel(c, st, tab)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, pages.Stack(s.page(c, st.Name, "stacks"), m))
}

// stackModel fills every tab's data; pages are small, and one model keeps the
// counts in the tab bar right.
func (s *Server) stackModel(c echo.Context, st *store.Stack, tab string) (pages.StackModel, error) {
	ctx := c.Request().Context()
	u := currentUser(c)
	m := pages.StackModel{ID: st.ID, Name: st.Name, Description: st.Description, UserPerKey: st.UserPerKey, DebugTrace: st.DebugTrace, Tab: tab, IsAdmin: u.IsAdmin()}
	servers, err := s.store.ListServers(ctx, st.ID)
	if err != nil {
		return m, err
	}
	deps, err := s.store.ListDeployments(ctx, st.ID)
	if err != nil {
		return m, err
	}
	attached, err := s.store.ListAttachedKeys(ctx, st.ID)
	if err != nil {
		return m, err
	}
	byServer := groupDeployments(deps)
	names := map[int64]string{}
	for _, sv := range servers {
		names[sv.ID] = sv.Name
	}
	// Logins for the native command: in user-per-key mode, the viewer's own keys.
	var ownKeys []string
	for _, k := range attached {
		if k.OwnerID == u.ID {
			ownKeys = append(ownKeys, k.Name)
		}
	}
	for _, sv := range servers {
		row := pages.ServerRow{
			ID: sv.ID, Name: sv.Name, Address: address(&sv), LoginUser: sv.LoginUser, Jump: names[sv.JumpServerID],
			HostKey: sv.HostKeyState(), IdentityFile: sv.IdentityFile,
			TerminalURL: fmt.Sprintf("/stacks/%d/servers/%d/terminal", st.ID, sv.ID),
			HostKeyURL:  hostKeyURL(st.ID, sv.ID),
		}
		if keys, err := jobs.ParseHostKeys(sv.HostKeys); err == nil && len(keys) > 0 {
			row.KeyType, row.Fingerprint = keys[0].Type(), ssh.FingerprintSHA256(keys[0])
		}
		if sv.PresentedKey != "" {
			if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(sv.PresentedKey)); err == nil {
				row.PresentedFingerprint = ssh.FingerprintSHA256(k)
			}
		}
		row.DeployKind, row.DeployText, row.DeployDetail = serverState(&sv, byServer[sv.ID])
		if sv.ViaAgent {
			row.Agent, row.AgentTokenURL = s.agentState(c.Request().Context(), sv.ID), agentTokenURL(st.ID, sv.ID)
		}
		if s.stacks.Tunnels != nil {
			row.TunnelURL = fmt.Sprintf("/stacks/%d/servers/%d/tunnels", st.ID, sv.ID)
			row.Tunnels = s.openTunnels(c.Request().Context(), sv.ID)
		}
		logins := []string{sv.LoginUser}
		if st.UserPerKey {
			logins = ownKeys
			if len(logins) == 0 {
				logins = []string{"KEY_NAME"}
			}
		}
		for _, login := range logins {
			row.Commands = append(row.Commands, NativeCommand(servers, sv.ID, login))
		}
		if sv.ViaAgent {
			row.Commands = nil // not dialable: native clients go through a tunnel
		}
		m.Servers = append(m.Servers, row)
		if sv.HostKeyState() == store.HostKeyPinned {
			m.JumpOptions = append(m.JumpOptions, pages.Option{Value: strconv.FormatInt(sv.ID, 10), Label: sv.Name + " (" + address(&sv) + ")"})
		}
	}
	if s.stacks.Gateway != nil {
		m.Gateway = pages.GatewayView{
			PublicKey: s.stacks.Gateway.AuthorizedLine, Fingerprint: s.stacks.Gateway.Fingerprint(),
			InstallCommand: s.stacks.Gateway.InstallCommand(),
		}
	}
	m.CanInstall = s.stacks.InstallWithPassword != nil && s.stacks.Gateway != nil

	isAttached := map[int64]bool{}
	for _, k := range attached {
		isAttached[k.KeyID] = true
		row := pages.AttachedKeyRow{
			KeyID: k.KeyID, Name: k.Name, Owner: k.Owner, KeyType: k.KeyType, Fingerprint: k.Fingerprint,
			CanDetach: mayManageKey(u, k.OwnerID),
		}
		for _, d := range deps {
			if d.KeyID != k.KeyID {
				continue
			}
			kind, text := deployBadge(d.State, d.NextAttemptAt)
			ks := pages.KeyServerState{Server: names[d.ServerID], StateKind: kind, StateText: text}
			if d.State != store.DeployDeployed {
				ks.Error = d.LastError
			}
			for _, sv := range servers {
				if sv.ID == d.ServerID && sv.HostKeyState() != store.HostKeyPinned && d.State == store.DeployPending {
					ks.StateKind, ks.StateText = "warn", "waiting for host key"
				}
			}
			row.Servers = append(row.Servers, ks)
		}
		m.Keys = append(m.Keys, row)
	}
	// Who may attach what: an admin any registered key; a member their own keys, to a
	// stack they belong to (they could see it, so they are a member).
	owner := u.ID
	if u.IsAdmin() {
		owner = 0
	}
	options, err := s.store.AttachableKeys(ctx, owner)
	if err != nil {
		return m, err
	}
	for _, k := range options {
		if isAttached[k.ID] {
			continue
		}
		label := k.Name + " — " + k.Fingerprint
		if u.IsAdmin() {
			label = k.Owner + " / " + label
		}
		m.KeyOptions = append(m.KeyOptions, pages.Option{Value: strconv.FormatInt(k.ID, 10), Label: label})
	}

	m.LogTab = store.LogDeploy
	if l := c.QueryParam("log"); l == store.LogSSH || l == store.LogDebug {
		m.LogTab = l
	}
	if tab == "log" {
		lines, err := s.store.ListStackLog(ctx, st.ID, m.LogTab, 300)
		if err != nil {
			return m, err
		}
		for _, l := range lines {
			m.Log = append(m.Log, pages.LogRow{At: l.At, Server: names[l.ServerID], Line: l.Line})
		}
	}
	if err := s.stackAuditView(ctx, &m, tab, u.IsAdmin()); err != nil {
		return m, err
	}
	if tab == "settings" && u.IsAdmin() {
		members, err := s.store.ListStackMembers(ctx, st.ID)
		if err != nil {
			return m, err
		}
		isMember := map[int64]bool{}
		for _, mb := range members {
			isMember[mb.UserID] = true
			m.Members = append(m.Members, pages.MemberRow{UserID: mb.UserID, Username: mb.Username})
		}
		users, err := s.store.ListUsers(ctx)
		if err != nil {
			return m, err
		}
		for _, x := range users {
			if !isMember[x.ID] && !x.IsAdmin() && !x.Disabled {
				m.MemberOptions = append(m.MemberOptions, pages.Option{Value: strconv.FormatInt(x.ID, 10), Label: x.Username})
			}
		}
	}
	return m, nil
}

// mayManageKey: admins may attach and detach any key; members only their own.
func mayManageKey(u *store.User, ownerID int64) bool {
	return u.IsAdmin() || u.ID == ownerID
}

func address(sv *store.Server) string {
	return net.JoinHostPort(sv.Host, strconv.Itoa(sv.Port))
}

func groupDeployments(deps []store.Deployment) map[int64][]store.Deployment {
	out := map[int64][]store.Deployment{}
	for _, d := range deps {
		out[d.ServerID] = append(out[d.ServerID], d)
	}
	return out
}

func deployBadge(state string, next time.Time) (kind, text string) {
	switch state {
	case store.DeployDeployed:
		return "ok", "deployed"
	case store.DeployFailed:
		return "danger", "failed"
	case store.DeployRemoving:
		return "accent", "removing"
	default:
		return "accent", "pending"
	}
}

// serverState sums up a server for the lists: blocked and unconfirmed first, then the
// worst deployment state, with the last failure in plain words.
func serverState(sv *store.Server, deps []store.Deployment) (kind, text, detail string) {
	switch sv.HostKeyState() {
	case store.HostKeyChanged:
		// The host key column says why; keys wait.
		return "warn", "on hold", ""
	case store.HostKeyUnconfirmed:
		return "warn", "waiting for host key", ""
	}
	var deployed, pending, failed, removing int
	for _, d := range deps {
		switch d.State {
		case store.DeployDeployed:
			deployed++
		case store.DeployFailed:
			failed++
			if detail == "" {
				detail = d.KeyName + ": " + d.LastError
			}
		case store.DeployRemoving:
			removing++
		default:
			pending++
		}
	}
	switch {
	case failed > 0:
		return "danger", fmt.Sprintf("%d failed", failed), detail
	case pending > 0:
		return "accent", fmt.Sprintf("%d pending", pending), ""
	case removing > 0:
		return "accent", fmt.Sprintf("%d removing", removing), ""
	case deployed > 0:
		return "ok", fmt.Sprintf("%d deployed", deployed), ""
	}
	return "", "no keys", ""
}

// NativeCommand is the OpenSSH command that reaches server id as login, through its
// jump chain: ssh -p 2222 -J jump@bastion deploy@203.0.113.7.
func NativeCommand(servers []store.Server, id int64, login string) string {
	byID := map[int64]*store.Server{}
	for i := range servers {
		byID[servers[i].ID] = &servers[i]
	}
	sv := byID[id]
	if sv == nil {
		return ""
	}
	var hops []string
	seen := map[int64]bool{id: true}
	for j := byID[sv.JumpServerID]; j != nil && !seen[j.ID] && len(hops) < 8; j = byID[j.JumpServerID] {
		seen[j.ID] = true
		hop := j.LoginUser + "@" + bracket(j.Host)
		if j.Port != 22 {
			hop += ":" + strconv.Itoa(j.Port)
		}
		hops = append([]string{hop}, hops...) // -J lists the first hop first
	}
	parts := []string{"ssh"}
	if sv.Port != 22 {
		parts = append(parts, "-p", strconv.Itoa(sv.Port))
	}
	if len(hops) > 0 {
		parts = append(parts, "-J", strings.Join(hops, ","))
	}
	return strings.Join(append(parts, login+"@"+sv.Host), " ")
}

func bracket(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// addServer saves a server and reads its host key for the confirm step. Nothing
// authenticates to it until an admin pins the key.
func (s *Server) addServer(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	f := pages.ServerForm{
		Name: strings.TrimSpace(c.FormValue("name")), Host: strings.TrimSpace(c.FormValue("host")),
		Port: strings.TrimSpace(c.FormValue("port")), User: strings.TrimSpace(c.FormValue("user")),
		JumpID: c.FormValue("jump"), ViaAgent: c.FormValue("via") == "agent",
	}
	again := func(msg string) error {
		m, err := s.stackModel(c, st, "servers")
		if err != nil {
			return err
		}
		f.Error = msg
		m.AddServer = f
		return render(c, http.StatusUnprocessableEntity, pages.Stack(s.page(c, st.Name, "stacks"), m))
	}
	port := 22
	if f.Port != "" {
		p, err := strconv.Atoi(f.Port)
		if err != nil || p < 1 || p > 65535 {
			return again("The port is a number from 1 to 65535.")
		}
		port = p
	}
	switch {
	case !validServerName.MatchString(f.Name):
		return again("A server name has up to 64 letters, digits, dots, dashes or underscores.")
	case !validHost.MatchString(f.Host):
		return again("Give a host name or an IP address.")
	case !validLogin.MatchString(f.User):
		return again("The login user must be a valid Unix user name, for example deploy.")
	}
	sv := &store.Server{StackID: st.ID, Name: f.Name, Host: strings.Trim(f.Host, "[]"), Port: port, LoginUser: f.User, CreatedAt: s.cfg.Now()}
	if f.JumpID != "" {
		jump, err := s.serverFor(c, st, f.JumpID)
		if err != nil {
			return again("Choose a jump server of this stack.")
		}
		sv.JumpServerID = jump.ID
	}
	if err := s.store.CreateServer(c.Request().Context(), sv); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return again("This stack already has a server named " + f.Name + ".")
		}
		return err
	}
	s.audit(c, currentUser(c), "server.add", st.Name+"/"+sv.Name, true, map[string]string{"address": address(sv), "user": sv.LoginUser})
	if f.ViaAgent {
		// Never dialed directly: its host key is read once its agent is connected.
		return s.showAgentToken(c, st, sv)
	}
	s.scanAndRecord(c, st, sv)
	return c.Redirect(http.StatusSeeOther, hostKeyURL(st.ID, sv.ID))
}

// scanAndRecord reads the server's host key and records it as presented. The error,
// in plain words, is kept in a flash for the confirm page.
func (s *Server) scanAndRecord(c echo.Context, st *store.Stack, sv *store.Server) string {
	msg := s.scan(c.Request().Context(), st, sv)
	if msg != "" {
		s.setFlash(c, "error", msg)
	}
	return msg
}

func (s *Server) scan(ctx context.Context, st *store.Stack, sv *store.Server) string {
	servers, err := s.store.ListServers(ctx, st.ID)
	if err != nil {
		return "Could not read the servers of this stack."
	}
	t, err := jobs.Target(servers, sv.ID)
	if err != nil {
		if errors.Is(err, jobs.ErrNotPinned) {
			return "Confirm the host key of the jump server first: " + err.Error() + "."
		}
		return "Cannot reach " + sv.Name + ": " + err.Error() + "."
	}
	sctx, cancel := context.WithTimeout(ctx, s.stacks.ScanTimeout)
	defer cancel()
	key, err := s.stacks.Scan(sctx, t)
	if err != nil {
		s.log.Info("host key scan failed", "server", sv.Name, "err", err)
		return "Could not read the host key: " + terminal.UserMessage(err)
	}
	line := jobs.KeyLine(key)
	for _, pinned := range sv.HostKeys {
		if pinned == line {
			// Still the pinned key: nothing to confirm.
			_ = s.store.SetPresentedKey(ctx, sv.ID, "", s.cfg.Now())
			return ""
		}
	}
	if err := s.store.SetPresentedKey(ctx, sv.ID, line, s.cfg.Now()); err != nil {
		return "Could not record the host key."
	}
	return ""
}

func (s *Server) hostKeyPage(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return err
	}
	m := pages.HostKeyModel{
		StackID: st.ID, StackName: st.Name, ServerID: sv.ID, ServerName: sv.Name, Address: address(sv),
		LoginUser: sv.LoginUser, State: sv.HostKeyState(), PresentedAt: sv.PresentedAt,
	}
	if keys, err := jobs.ParseHostKeys(sv.HostKeys); err == nil && len(keys) > 0 {
		m.PinnedType, m.PinnedFingerprint = keys[0].Type(), ssh.FingerprintSHA256(keys[0])
	}
	if sv.PresentedKey != "" {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(sv.PresentedKey)); err == nil {
			m.PresentedKeyType, m.PresentedFingerprint = k.Type(), ssh.FingerprintSHA256(k)
		}
	}
	return render(c, http.StatusOK, pages.HostKey(s.page(c, "Host key of "+sv.Name, "stacks"), m))
}

func (s *Server) scanServer(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return err
	}
	s.scanAndRecord(c, st, sv)
	return c.Redirect(http.StatusSeeOther, hostKeyURL(st.ID, sv.ID))
}

// pinHostKey pins the presented key, only if its fingerprint is the one the admin
// saw and confirmed: a key that changed again in between is not pinned blindly.
func (s *Server) pinHostKey(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return err
	}
	fp := c.FormValue("fingerprint")
	if c.FormValue("confirm") != "yes" {
		s.setFlash(c, "error", "Tick the box once you have compared the fingerprint on the server.")
		return c.Redirect(http.StatusSeeOther, hostKeyURL(st.ID, sv.ID))
	}
	k, _, _, _, perr := ssh.ParseAuthorizedKey([]byte(sv.PresentedKey))
	if sv.PresentedKey == "" || perr != nil || ssh.FingerprintSHA256(k) != fp {
		s.setFlash(c, "error", "The server's key is not the one you confirmed any more. Compare the fingerprint shown now.")
		return c.Redirect(http.StatusSeeOther, hostKeyURL(st.ID, sv.ID))
	}
	previous := sv.HostKeyState()
	err = s.store.PinPresentedKey(c.Request().Context(), st.ID, sv.ID, sv.PresentedKey, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		s.setFlash(c, "error", "The server's key is not the one you confirmed any more. Compare the fingerprint shown now.")
		return c.Redirect(http.StatusSeeOther, hostKeyURL(st.ID, sv.ID))
	}
	if err != nil {
		return err
	}
	kind := "hostkey.pin"
	line := fmt.Sprintf("Host key of %s pinned: %s %s", sv.Name, k.Type(), fp)
	if previous == store.HostKeyChanged {
		kind = "hostkey.repin"
		line = fmt.Sprintf("Host key of %s replaced by an administrator: now %s %s", sv.Name, k.Type(), fp)
	}
	s.audit(c, currentUser(c), kind, st.Name+"/"+sv.Name, true, map[string]string{"fingerprint": fp})
	s.stackLog(c, st.ID, sv.ID, line)
	s.wake()
	s.setFlash(c, "ok", "Host key of "+sv.Name+" pinned. Every connection to it now requires exactly this key.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
}

func (s *Server) deleteServer(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return err
	}
	tunnels, _ := s.store.ListTunnels(c.Request().Context(), sv.ID)
	err = s.store.DeleteServer(c.Request().Context(), st.ID, sv.ID)
	if err == nil {
		s.cutServerLinks(sv.ID, tunnels) // its agent and tunnels go with it
	}
	if errors.Is(err, store.ErrConflict) {
		s.setFlash(c, "error", sv.Name+" is the jump server of another server; remove that one first.")
		return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
	}
	if err != nil {
		return err
	}
	s.audit(c, currentUser(c), "server.delete", st.Name+"/"+sv.Name, true, nil)
	s.setFlash(c, "ok", sv.Name+" removed from "+st.Name+". Keys already in its authorized_keys stay there.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
}

func (s *Server) stackLog(c echo.Context, stackID, serverID int64, line string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
	defer cancel()
	if err := s.store.AppendStackLog(ctx, &store.StackLogLine{StackID: stackID, ServerID: serverID, At: s.cfg.Now(), Tab: store.LogDeploy, Line: line}); err != nil {
		s.log.Error("stack log", "err", err)
	}
}

func (s *Server) wake() {
	if s.stacks.Wake != nil {
		s.stacks.Wake()
	}
}

// attachKey attaches a key and queues its deployment to every server.
func (s *Server) attachKey(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	u := currentUser(c)
	keyID, err := strconv.ParseInt(c.FormValue("key"), 10, 64)
	if err != nil {
		return notFound()
	}
	k, err := s.store.KeyRefByID(c.Request().Context(), keyID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !mayManageKey(u, k.UserID)) {
		// Someone else's key id: as if it did not exist.
		return notFound()
	}
	if err != nil {
		return err
	}
	if st.UserPerKey {
		if !validKeyLogin.MatchString(k.Name) {
			s.setFlash(c, "error", "In user-per-key mode the key name becomes a login; "+k.Name+" is not a valid login name.")
			return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "keys"))
		}
	}
	err = s.store.AttachKey(c.Request().Context(), st.ID, k, u.ID, s.cfg.Now())
	if errors.Is(err, store.ErrConflict) {
		s.setFlash(c, "info", k.Name+" is already attached to "+st.Name+".")
		return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "keys"))
	}
	if err != nil {
		return err
	}
	s.audit(c, u, "key.attach", st.Name, true, map[string]string{"key": k.Name, "owner": k.Owner, "fingerprint": k.Fingerprint})
	s.stackLog(c, st.ID, 0, fmt.Sprintf("%s attached key %s (%s)", u.Username, k.Name, k.Fingerprint))
	s.wake()
	s.setFlash(c, "ok", "Key "+k.Name+" attached. It is being deployed to every server of "+st.Name+".")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "keys"))
}

// validKeyLogin: a key name that can also be a login name (user-per-key mode).
var validKeyLogin = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)

func (s *Server) detachKey(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	u := currentUser(c)
	keyID, err := strconv.ParseInt(c.Param("kid"), 10, 64)
	if err != nil {
		return notFound()
	}
	attached, err := s.store.ListAttachedKeys(c.Request().Context(), st.ID)
	if err != nil {
		return err
	}
	var k *store.AttachedKey
	for i := range attached {
		if attached[i].KeyID == keyID {
			k = &attached[i]
		}
	}
	if k == nil || !mayManageKey(u, k.OwnerID) {
		return notFound()
	}
	if err := s.store.DetachKey(c.Request().Context(), st.ID, keyID, s.cfg.Now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notFound()
		}
		return err
	}
	s.audit(c, u, "key.detach", st.Name, true, map[string]string{"key": k.Name, "owner": k.Owner, "fingerprint": k.Fingerprint})
	s.stackLog(c, st.ID, 0, fmt.Sprintf("%s detached key %s; removing it from every server", u.Username, k.Name))
	s.wake()
	s.setFlash(c, "ok", "Key "+k.Name+" detached. Its line is being removed from every server.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "keys"))
}

func (s *Server) stackSettings(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	name := strings.TrimSpace(c.FormValue("name"))
	desc := strings.TrimSpace(c.FormValue("description"))
	userPerKey := c.FormValue("mode") == "user-per-key"
	debugTrace := c.FormValue("debug_trace") == "on"
	fail := func(msg string) error {
		m, err := s.stackModel(c, st, "settings")
		if err != nil {
			return err
		}
		m.SettingsError = msg
		return render(c, http.StatusUnprocessableEntity, pages.Stack(s.page(c, st.Name, "stacks"), m))
	}
	if name == "" || len(name) > 64 || len(desc) > 200 {
		return fail("A stack needs a name of at most 64 characters and a description under 200.")
	}
	if err := s.store.UpdateStack(ctx, st.ID, name, desc); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fail("There is already a stack named " + name + ".")
		}
		return err
	}
	if err := s.store.SetStackMode(ctx, st.ID, userPerKey); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fail("Detach every key before changing where keys go: the logins already deployed would be left behind.")
		}
		return err
	}
	if debugTrace != st.DebugTrace {
		if err := s.store.SetStackDebugTrace(ctx, st.ID, debugTrace); err != nil {
			return err
		}
	}
	s.audit(c, currentUser(c), "stack.update", name, true, map[string]string{
		"user_per_key": strconv.FormatBool(userPerKey), "debug_trace": strconv.FormatBool(debugTrace)})
	s.setFlash(c, "ok", "Settings saved.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "settings"))
}

func (s *Server) addMember(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	uid, err := strconv.ParseInt(c.FormValue("user"), 10, 64)
	if err != nil {
		return notFound()
	}
	target, err := s.store.UserByID(c.Request().Context(), uid)
	if errors.Is(err, store.ErrNotFound) {
		return notFound()
	}
	if err != nil {
		return err
	}
	err = s.store.AddStackMember(c.Request().Context(), st.ID, uid, s.cfg.Now())
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	s.audit(c, currentUser(c), "stack.member.add", st.Name, true, map[string]string{"user": target.Username})
	s.setFlash(c, "ok", target.Username+" can now use "+st.Name+".")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "settings"))
}

func (s *Server) removeMember(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	uid, err := strconv.ParseInt(c.Param("uid"), 10, 64)
	if err != nil {
		return notFound()
	}
	if err := s.store.RemoveStackMember(c.Request().Context(), st.ID, uid); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notFound()
		}
		return err
	}
	s.audit(c, currentUser(c), "stack.member.remove", st.Name, true, map[string]string{"user_id": strconv.FormatInt(uid, 10)})
	s.setFlash(c, "ok", "Member removed. Keys they attached stay attached until detached.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "settings"))
}

func (s *Server) retryDeployments(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	if err := s.store.RetryDeployments(c.Request().Context(), st.ID, s.cfg.Now()); err != nil {
		return err
	}
	s.wake()
	s.setFlash(c, "ok", "Failed deployments are being retried.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "servers"))
}

// installGatewayKey logs in once with the password an admin typed and installs
// shellgate's key. The password lives only in this request: it is not stored, not
// logged, not put in the audit detail, and not echoed back.
func (s *Server) installGatewayKey(c echo.Context) error {
	if s.stacks.InstallWithPassword == nil {
		return notFound()
	}
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.FormValue("server"))
	if err != nil {
		return err
	}
	password := c.FormValue("password")
	if sv.HostKeyState() != store.HostKeyPinned {
		s.setFlash(c, "error", "Confirm the host key of "+sv.Name+" first: a password is only sent to a server whose key is pinned.")
		return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
	}
	servers, err := s.store.ListServers(c.Request().Context(), st.ID)
	if err != nil {
		return err
	}
	t, err := jobs.Target(servers, sv.ID)
	if err != nil {
		s.setFlash(c, "error", "Cannot reach "+sv.Name+": "+err.Error()+".")
		return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 60*time.Second)
	defer cancel()
	err = s.stacks.InstallWithPassword(ctx, t, password, func(line string) { s.stackLog(c, st.ID, sv.ID, line) })
	if err != nil {
		msg := terminal.UserMessage(err)
		s.audit(c, currentUser(c), "gateway.install", st.Name+"/"+sv.Name, false, map[string]string{"reason": msg})
		s.setFlash(c, "error", "shellgate's key was not installed on "+sv.Name+": "+msg)
		return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
	}
	s.audit(c, currentUser(c), "gateway.install", st.Name+"/"+sv.Name, true, nil)
	s.stackLog(c, st.ID, sv.ID, "shellgate's key installed for "+sv.LoginUser+" on "+sv.Name)
	_ = s.store.RetryDeployments(c.Request().Context(), st.ID, s.cfg.Now())
	s.wake()
	s.setFlash(c, "ok", "shellgate's key is installed on "+sv.Name+". The password was not kept.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, ""))
}
