package handlers

import (
	"errors"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/views/pages"
)

// liveMeta is what the web layer knows about a live session that the bridge does not:
// names for people and where the browser is.
type liveMeta struct {
	User     string
	Stack    *store.Stack
	Server   *store.Server
	ClientIP string
}

// liveSessions maps terminal session ids to liveMeta while the sessions run. The
// terminal.Manager stays the source of truth for what is live; this only labels it.
type liveSessions struct {
	mu sync.Mutex
	m  map[string]liveMeta
}

func (l *liveSessions) add(id string, meta liveMeta) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]liveMeta)
	}
	l.m[id] = meta
}

func (l *liveSessions) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, id)
}

func (l *liveSessions) get(id string) (liveMeta, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.m[id]
	return m, ok
}

// livePage lists who is connected right now (admins only).
func (s *Server) livePage(c echo.Context) error {
	var m pages.LiveModel
	for _, info := range s.terms.Sessions() {
		row := pages.LiveRow{
			ID: info.ID, Server: info.Server, Addr: info.Addr, Login: info.User, Since: info.Started,
			BytesIn: info.BytesIn, BytesOut: info.BytesOut, Attached: info.Attached,
		}
		if meta, ok := s.live.get(info.ID); ok {
			row.User, row.ClientIP = meta.User, meta.ClientIP
			if meta.Stack != nil {
				row.Stack, row.StackID = meta.Stack.Name, meta.Stack.ID
			}
		}
		m.Rows = append(m.Rows, row)
	}
	if cl := s.cfg.Cluster; cl != nil {
		// The sessions other replicas hold, as they recorded them.
		all, err := cl.Sessions.ListLiveSessions(c.Request().Context())
		if err != nil {
			return err
		}
		for _, l := range all {
			if l.ReplicaID == cl.ReplicaID {
				continue // listed above, with live figures
			}
			m.Rows = append(m.Rows, pages.LiveRow{
				ID: l.ID, User: l.Username, Stack: l.StackName, StackID: l.StackID, Server: l.ServerName, Addr: l.Addr,
				Login: l.Login, ClientIP: l.ClientIP, Since: l.StartedAt, Replica: l.ReplicaID,
			})
		}
	}
	return render(c, http.StatusOK, pages.Live(s.page(c, "Live sessions", "live"), m))
}

// terminateSession ends a live session for an administrator: the person's terminal
// closes with 4007 and "The session was closed by an administrator."
func (s *Server) terminateSession(c echo.Context) error {
	id := c.Param("session")
	meta, _ := s.live.get(id)
	err := s.terms.Terminate(id, reasonTerminated)
	if errors.Is(err, terminal.ErrSessionNotFound) && s.cfg.Cluster != nil {
		// Perhaps another replica holds it: ask that one.
		if l, lerr := s.cfg.Cluster.Sessions.LiveSession(c.Request().Context(), id); lerr == nil && l.ReplicaID != s.cfg.Cluster.ReplicaID {
			if err := s.cfg.Cluster.Hints.Publish(TopicTerminate, id); err != nil {
				return err
			}
			target := l.ServerName
			stack, server := &store.Stack{ID: l.StackID, Name: l.StackName}, &store.Server{ID: l.ServerID, Name: l.ServerName}
			s.auditScoped(c, "terminal.terminate", target, stack, server, map[string]string{"session": id, "user": l.Username, "replica": l.ReplicaID})
			s.setFlash(c, "ok", "Session terminated.")
			return c.Redirect(http.StatusSeeOther, "/admin/live")
		}
	}
	if errors.Is(err, terminal.ErrSessionNotFound) {
		s.setFlash(c, "info", "That session had already ended.")
		return c.Redirect(http.StatusSeeOther, "/admin/live")
	}
	if err != nil {
		return err
	}
	detail := map[string]string{"session": id, "user": meta.User}
	target := ""
	if meta.Server != nil {
		target = meta.Server.Name
	}
	s.auditScoped(c, "terminal.terminate", target, meta.Stack, meta.Server, detail)
	s.setFlash(c, "ok", "Session terminated.")
	return c.Redirect(http.StatusSeeOther, "/admin/live")
}

// auditScoped appends an event by the signed-in person about a stack and server.
func (s *Server) auditScoped(c echo.Context, kind, target string, st *store.Stack, sv *store.Server, detail map[string]string) {
	u := currentUser(c)
	e := &store.Event{At: s.cfg.Now(), Kind: kind, ActorID: u.ID, ActorName: u.Username, ClientIP: c.RealIP(),
		UserAgent: truncate(c.Request().UserAgent(), 256), OK: true, Target: target, Detail: detail}
	if st != nil {
		e.StackID = st.ID
	}
	if sv != nil {
		e.ServerID = sv.ID
	}
	if err := s.store.AppendEvent(c.Request().Context(), e); err != nil {
		s.log.Error("audit event not written", "kind", kind, "err", err)
	}
}
