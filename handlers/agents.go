package handlers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/tunnel"
	"github.com/shellgate/shellgate/views/pages"
)

// AgentPath is where agents connect (tunnel.Path).
const AgentPath = tunnel.Path

// agentTokenTTL is how long a destination token waits for its agent.
const agentTokenTTL = 24 * time.Hour

// AgentLinks is what the pages need of the live agent links.
type AgentLinks interface {
	// Connected reports whether the agent of serverID holds a link to this replica.
	Connected(serverID int64) bool
	// Disconnect closes that link at once (its credential was revoked).
	Disconnect(serverID int64)
}

func agentTokenURL(stackID, serverID int64) string {
	return fmt.Sprintf("/stacks/%d/servers/%d/agent/token", stackID, serverID)
}

// agentState is "connected", "waiting" (token not used yet) or "disconnected".
func (s *Server) agentState(ctx context.Context, serverID int64) string {
	if s.stacks.Agents != nil && s.stacks.Agents.Connected(serverID) {
		return "connected"
	}
	a, err := s.store.AgentOf(ctx, serverID)
	switch {
	case err != nil:
		return "disconnected"
	case a.PublicKey == "":
		return "waiting"
	case a.Connected:
		return "connected" // held by another replica
	}
	return "disconnected"
}

// newAgentToken ("Generate new agent token") revokes the current token and the
// enrolled agent's credential, closes its link at once, and shows a new token.
func (s *Server) newAgentToken(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	sv, err := s.serverFor(c, st, c.Param("sid"))
	if err != nil {
		return err
	}
	return s.showAgentToken(c, st, sv)
}

// showAgentToken issues a destination token for sv (making it reached through an
// agent), revoking any earlier one and the enrolled credential, and renders it
// this once. Only its hash is stored; it is never logged.
func (s *Server) showAgentToken(c echo.Context, st *store.Stack, sv *store.Server) error {
	ctx := c.Request().Context()
	revoked := false
	if a, err := s.store.AgentOf(ctx, sv.ID); err == nil && a.PublicKey != "" {
		revoked = true
	}
	token, hash := tunnel.NewToken()
	now := s.cfg.Now()
	if err := s.store.SetAgentToken(ctx, sv.ID, hash, now.Add(agentTokenTTL), now); err != nil {
		return err
	}
	if s.stacks.Agents != nil {
		s.stacks.Agents.Disconnect(sv.ID)
	}
	s.audit(c, currentUser(c), "agent.token", st.Name+"/"+sv.Name, true, map[string]string{"revoked": fmt.Sprint(revoked)})
	base := s.publicBase(c)
	c.Response().Header().Set("Cache-Control", "no-store")
	return render(c, http.StatusOK, pages.AgentToken(s.page(c, "Agent for "+sv.Name, "stacks"), pages.AgentTokenModel{
		StackID: st.ID, StackName: st.Name, ServerName: sv.Name, Token: token,
		FileCommand:  "shellgate agent --url " + base + " --token-file /etc/shellgate-agent/token --state-dir /var/lib/shellgate-agent",
		StdinCommand: "printf %s \"$TOKEN\" | shellgate agent --url " + base + " --token-file - --state-dir /var/lib/shellgate-agent",
		Expires:      "24 hours",
		HostKeyURL:   hostKeyURL(st.ID, sv.ID),
		Revoked:      revoked,
	}))
}

// publicBase is the URL agents dial: the configured public URL, else what this
// request came to.
func (s *Server) publicBase(c echo.Context) string {
	if s.cfg.PublicURL != nil {
		return strings.TrimSuffix(s.cfg.PublicURL.String(), "/")
	}
	return c.Scheme() + "://" + c.Request().Host
}

// clientAddr serves h with the request's RemoteAddr set to the client's address
// as the trusted-proxy rules see it, so the agent and tunnel logs and audit
// name the real peer behind a load balancer.
func clientAddr(h http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		_, port, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			port = "0"
		}
		r.RemoteAddr = net.JoinHostPort(c.RealIP(), port)
		h.ServeHTTP(c.Response(), r)
		return nil
	}
}
