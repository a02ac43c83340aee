package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/tunnel"
	"github.com/shellgate/shellgate/views/pages"
)

// TunnelPath is where local proxies connect (tunnel.SourcePath).
const TunnelPath = tunnel.SourcePath

// TunnelLinks is what the pages need of the local proxies' live links.
type TunnelLinks interface {
	State(tunnelID int64) tunnel.SourceState
	// Cut closes the proxy link of a tunnel and every connection through it.
	Cut(tunnelID int64, code int, reason string)
}

const (
	defaultTunnelMax = 12 * time.Hour
	defaultTunnelMin = time.Minute
)

func tunnelURL(id int64) string { return fmt.Sprintf("/tunnels/%d", id) }

func (s *Server) tunnelLimits() (lo, hi time.Duration) {
	lo, hi = s.stacks.TunnelMinLifetime, s.stacks.TunnelMaxLifetime
	if lo <= 0 {
		lo = defaultTunnelMin
	}
	if hi <= 0 {
		hi = defaultTunnelMax
	}
	return lo, hi
}

// openTunnel: a member of the server's stack opens a tunnel (SSH, for a
// lifetime of at most the admin's maximum) and sees its source token once.
func (s *Server) openTunnel(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return err
	}
	life := time.Hour
	if v := strings.TrimSpace(c.FormValue("lifetime")); v != "" {
		if life, err = time.ParseDuration(v); err != nil {
			return echo.NewHTTPError(http.StatusUnprocessableEntity, "The lifetime is a duration such as 1h or 30m.")
		}
	}
	lo, hi := s.tunnelLimits()
	if life < lo || life > hi {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, fmt.Sprintf("The lifetime is from %v to %v.", lo, hi))
	}
	desc := strings.TrimSpace(c.FormValue("description"))
	if len(desc) > 200 {
		desc = desc[:200]
	}
	return s.createTunnel(c, st, sv, desc, tunnel.ServiceSSH, life, "tunnel.open")
}

func (s *Server) createTunnel(c echo.Context, st *store.Stack, sv *store.Server, desc, services string, life time.Duration, kind string) error {
	u := currentUser(c)
	now := s.cfg.Now()
	token, hash := tunnel.NewToken()
	t := &store.Tunnel{ServerID: sv.ID, CreatedBy: u.ID, Description: desc, Services: services, CreatedAt: now, ExpiresAt: now.Add(life)}
	if err := s.store.CreateTunnel(c.Request().Context(), t, hash); err != nil {
		return err
	}
	t.Server = sv.Name
	s.audit(c, u, kind, st.Name+"/"+sv.Name, true, map[string]string{"tunnel": strconv.FormatInt(t.ID, 10), "lifetime": life.String(), "services": services})
	return s.showTunnelToken(c, t, sv, token)
}

func (s *Server) showTunnelToken(c echo.Context, t *store.Tunnel, sv *store.Server, token string) error {
	return render(c, http.StatusOK, pages.TunnelToken(s.page(c, "Tunnel to "+t.Server, "stacks"), pages.TunnelTokenModel{
		ServerName: t.Server, Token: token,
		Command:    "shellgate proxy --url " + s.publicBase(c) + " --token-file ~/.shellgate-tunnel-token -s 5555",
		SSHCommand: "ssh -p 5555 " + sv.LoginUser + "@localhost",
		TimeLeft:   humanLeft(t.ExpiresAt.Sub(s.cfg.Now())),
		TunnelURL:  tunnelURL(t.ID),
	}))
}

func humanLeft(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return d.Round(time.Second).String()
}

// tunnelFor loads the tunnel of the URL if the user may see its stack (404
// otherwise), and whether they may manage it (its creator or an admin).
func (s *Server) tunnelFor(c echo.Context) (*store.Tunnel, *store.Stack, bool, error) {
	id, err := strconv.ParseInt(c.Param("tid"), 10, 64)
	if err != nil {
		return nil, nil, false, notFound()
	}
	ctx := c.Request().Context()
	t, err := s.store.TunnelByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, false, notFound()
	} else if err != nil {
		return nil, nil, false, err
	}
	u := currentUser(c)
	st, err := s.store.StackForUser(ctx, t.StackID, u.ID, u.IsAdmin())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, false, notFound()
	} else if err != nil {
		return nil, nil, false, err
	}
	return t, st, u.IsAdmin() || t.CreatedBy == u.ID, nil
}

func (s *Server) tunnelPage(c echo.Context) error {
	t, st, manage, err := s.tunnelFor(c)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	m := pages.TunnelModel{
		ID: t.ID, ServerName: t.Server, StackURL: "/stacks/" + strconv.FormatInt(st.ID, 10),
		Description: t.Description, Services: t.Services, OpenedBy: t.CreatorName, CloseReason: t.CloseReason,
		Connections: t.Connections, BytesUp: humanBytes(t.BytesUp), BytesDown: humanBytes(t.BytesDown),
		CanManage: manage, Open: t.Open(now), URL: tunnelURL(t.ID), TimeLeft: humanLeft(t.ExpiresAt.Sub(now)),
	}
	var src tunnel.SourceState
	if s.stacks.Tunnels != nil {
		src = s.stacks.Tunnels.State(t.ID)
	}
	switch {
	case !m.Open:
		m.State, m.TimeLeft = "closed", "0s"
		if m.CloseReason == "" {
			m.CloseReason = "expired"
		}
	case src.Connected:
		m.State = "connected"
	default:
		m.State = "open"
	}
	if src.Connected {
		m.ProxySide = "connected from " + src.Addr + " since " + src.Since.UTC().Format("15:04:05 UTC")
		m.Live = src.Connections
	} else {
		m.ProxySide = "not connected"
		if t.TokenPending {
			m.ProxySide += " (token not used yet)"
		}
	}
	m.ServerSide = "direct"
	if sv, err := s.store.ServerInStack(c.Request().Context(), st.ID, t.ServerID); err == nil && sv.ViaAgent {
		m.ServerSide = map[string]string{"connected": "through its agent (connected)", "waiting": "through its agent (not enrolled yet)"}[s.agentState(c.Request().Context(), sv.ID)]
		if m.ServerSide == "" {
			m.ServerSide = "through its agent (disconnected)"
		}
	}
	return render(c, http.StatusOK, pages.Tunnel(s.page(c, "Tunnel to "+t.Server, "stacks"), m))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (s *Server) cut(id int64, code int, reason string) {
	if s.stacks.Tunnels != nil {
		s.stacks.Tunnels.Cut(id, code, reason)
	}
}

func (s *Server) manageTunnel(c echo.Context) (*store.Tunnel, *store.Stack, error) {
	t, st, manage, err := s.tunnelFor(c)
	if err != nil {
		return nil, nil, err
	}
	if !manage {
		return nil, nil, echo.NewHTTPError(http.StatusForbidden, "Only whoever opened this tunnel, or an administrator, may change it.")
	}
	return t, st, nil
}

// rotateTunnel revokes the current source token (and the proxy enrolled with
// it, whose connections close at once) and shows a new one. The lifetime is
// not extended.
func (s *Server) rotateTunnel(c echo.Context) error {
	t, st, err := s.manageTunnel(c)
	if err != nil {
		return err
	}
	token, hash := tunnel.NewToken()
	if err := s.store.RotateTunnelToken(c.Request().Context(), t.ID, hash, s.cfg.Now()); errors.Is(err, store.ErrNotFound) {
		return echo.NewHTTPError(http.StatusConflict, "This tunnel is closed; duplicate it instead.")
	} else if err != nil {
		return err
	}
	s.cut(t.ID, tunnel.CloseRevoked, "source token rotated")
	s.audit(c, currentUser(c), "tunnel.rotate", st.Name+"/"+t.Server, true, map[string]string{"tunnel": strconv.FormatInt(t.ID, 10)})
	sv, err := s.store.ServerInStack(c.Request().Context(), st.ID, t.ServerID)
	if err != nil {
		return err
	}
	return s.showTunnelToken(c, t, sv, token)
}

func (s *Server) closeTunnel(c echo.Context) error {
	t, st, err := s.manageTunnel(c)
	if err != nil {
		return err
	}
	if err := s.store.CloseTunnel(c.Request().Context(), t.ID, "closed", s.cfg.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.cut(t.ID, tunnel.CloseTunnelClosed, "tunnel closed")
	s.audit(c, currentUser(c), "tunnel.close", st.Name+"/"+t.Server, true, map[string]string{"tunnel": strconv.FormatInt(t.ID, 10)})
	return c.Redirect(http.StatusSeeOther, tunnelURL(t.ID))
}

func (s *Server) duplicateTunnel(c echo.Context) error {
	t, st, err := s.manageTunnel(c)
	if err != nil {
		return err
	}
	sv, err := s.store.ServerInStack(c.Request().Context(), st.ID, t.ServerID)
	if err != nil {
		return err
	}
	_, hi := s.tunnelLimits()
	return s.createTunnel(c, st, sv, t.Description, t.Services, min(t.ExpiresAt.Sub(t.CreatedAt), hi), "tunnel.duplicate")
}

func (s *Server) deleteTunnel(c echo.Context) error {
	t, st, err := s.manageTunnel(c)
	if err != nil {
		return err
	}
	s.cut(t.ID, tunnel.CloseTunnelClosed, "tunnel deleted")
	if err := s.store.DeleteTunnel(c.Request().Context(), t.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.audit(c, currentUser(c), "tunnel.delete", st.Name+"/"+t.Server, true, map[string]string{"tunnel": strconv.FormatInt(t.ID, 10)})
	return c.Redirect(http.StatusSeeOther, "/stacks/"+strconv.FormatInt(st.ID, 10))
}

// openTunnels lists the open tunnels of a server for its row.
func (s *Server) openTunnels(ctx context.Context, serverID int64) []pages.TunnelLink {
	ts, err := s.store.ListTunnels(ctx, serverID)
	if err != nil {
		return nil
	}
	now := s.cfg.Now()
	var out []pages.TunnelLink
	for _, t := range ts {
		if t.Open(now) {
			label := "Tunnel #" + strconv.FormatInt(t.ID, 10)
			if t.Description != "" {
				label += ": " + t.Description
			}
			out = append(out, pages.TunnelLink{URL: tunnelURL(t.ID), Label: label + " (" + humanLeft(t.ExpiresAt.Sub(now)) + " left)"})
		}
	}
	return out
}

// cutServerLinks closes the agent link and the tunnels' proxy links of a
// server that was just deleted (its rows went with it).
func (s *Server) cutServerLinks(serverID int64, tunnels []store.Tunnel) {
	if s.stacks.Agents != nil {
		s.stacks.Agents.Disconnect(serverID)
	}
	for _, t := range tunnels {
		s.cut(t.ID, tunnel.CloseTunnelClosed, "server deleted")
	}
}
