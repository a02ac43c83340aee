package handlers

import (
	"context"
	"errors"
	"net"
	"net/http"
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

// stackRecordingSettings saves a stack's recording switches.
func (s *Server) stackRecordingSettings(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	rs := store.RecordingSettings{Record: c.FormValue("record") == "on", Input: c.FormValue("record_input") == "on"}
	rs.Input = rs.Input && rs.Record
	if err := s.store.SetStackRecording(c.Request().Context(), st.ID, rs); err != nil {
		return err
	}
	s.audit(c, currentUser(c), "stack.recording", st.Name, true, map[string]string{
		"record": boolStr(rs.Record), "record_input": boolStr(rs.Input)})
	s.setFlash(c, "ok", "Recording settings saved.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "settings"))
}

func boolStr(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// serverSSHLogFile sets where a server's sshd writes its log, when not in the usual
// places (journal, /var/log/auth.log, /var/log/secure).
func (s *Server) serverSSHLogFile(c echo.Context) error {
	st, sv, err := s.stackServer(c)
	if err != nil {
		return err
	}
	path := strings.TrimSpace(c.FormValue("ssh_log_file"))
	if path != "" && (!strings.HasPrefix(path, "/") || strings.ContainsAny(path, "\x00\n'\"`$\\;&|<>") || len(path) > 512) {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, "The SSH log file must be an absolute path without shell characters.")
	}
	if err := s.store.SetServerSSHLogFile(c.Request().Context(), sv.ID, path); err != nil {
		return err
	}
	s.audit(c, currentUser(c), "server.sshlog", sv.Name, true, map[string]string{"ssh_log_file": path})
	s.setFlash(c, "ok", "SSH log file of "+sv.Name+" saved.")
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "servers"))
}

// sshLogWindow is how far back a refresh reads the servers' logs.
const sshLogWindow = 30 * 24 * time.Hour

// matchWindow is how far a logged login may be from a shellgate session's start and
// still be that session (clocks differ; dialing takes a moment).
const matchWindow = 10 * time.Second

// refreshSSHLog reads every server's SSH login history now, as the gateway identity,
// and adds the lines not seen before to the ssh tab of the stack log, each tied to the
// shellgate session it came from when one matches. Any member of the stack may refresh,
// once a minute per stack (each read is an SSH connection to every server); members
// see only the lines of the stack's own logins (see loginVisibleToMembers).
func (s *Server) refreshSSHLog(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	back := "/stacks/" + strconv.FormatInt(st.ID, 10) + "?tab=log&log=ssh"
	if s.stacks.Gateway == nil {
		s.setFlash(c, "error", "shellgate has no gateway key to read the servers' logs with.")
		return c.Redirect(http.StatusSeeOther, back)
	}
	wait, err := s.store.ReserveAttempt(c.Request().Context(), throttleSSHLog+":"+strconv.FormatInt(st.ID, 10), sshLogPolicy, s.cfg.Now())
	if err != nil {
		return err
	}
	if wait > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		s.setFlash(c, "info", "The servers' logs were read less than a minute ago. Try again in "+wait.Round(time.Second).String()+".")
		return c.Redirect(http.StatusSeeOther, back)
	}
	added, problems, err := s.readSSHLogs(c.Request().Context(), st)
	if err != nil {
		return err
	}
	msg := strconv.Itoa(added) + " new login" + map[bool]string{true: "", false: "s"}[added == 1] + " read."
	kind := "ok"
	if len(problems) > 0 {
		msg += " " + strings.Join(problems, " ")
		kind = "info"
	}
	s.setFlash(c, kind, msg)
	return c.Redirect(http.StatusSeeOther, back)
}

// readSSHLogs fetches and stores the ssh tab lines of every server of st.
func (s *Server) readSSHLogs(ctx context.Context, st *store.Stack) (int, []string, error) {
	servers, err := s.store.ListServers(ctx, st.ID)
	if err != nil {
		return 0, nil, err
	}
	now := s.cfg.Now()
	since := now.Add(-sshLogWindow)
	starts, err := s.store.ListEvents(ctx, store.EventFilter{Kind: "terminal.start", StackID: st.ID, Since: since, Limit: 10000})
	if err != nil {
		return 0, nil, err
	}
	attached, err := s.store.ListAttachedKeys(ctx, st.ID)
	if err != nil {
		return 0, nil, err
	}
	reader := &jobs.SSHLogReader{Dialer: s.stacks.Dialer, Auth: terminal.Auth{Signers: []ssh.Signer{s.stacks.Gateway.Signer}}}
	gatewayFP := s.stacks.Gateway.Fingerprint()
	added := 0
	var problems []string
	for _, sv := range servers {
		if sv.HostKeyState() != store.HostKeyPinned {
			problems = append(problems, sv.Name+": host key not confirmed.")
			continue
		}
		t, err := jobs.Target(servers, sv.ID)
		if err != nil {
			problems = append(problems, sv.Name+": "+err.Error()+".")
			continue
		}
		override, _ := s.store.ServerSSHLogFile(ctx, sv.ID)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		logins, source, err := reader.Read(rctx, t, override, since, now)
		cancel()
		if err != nil {
			s.log.Info("ssh log not read", "server", sv.Name, "err", err)
			problems = append(problems, sv.Name+": "+sshLogProblem(err))
			continue
		}
		ours := stackLogins(st, &sv, attached)
		for _, l := range logins {
			session := matchSession(l, sv.ID, starts)
			line, at := describeLogin(l, source, session)
			gateway := l.Fingerprint != "" && l.Fingerprint == gatewayFP
			if gateway {
				line = strings.Replace(line, " ["+source+"]", " — shellgate's gateway key (deployments, log reads) ["+source+"]", 1)
			}
			if at.IsZero() {
				at = now // sshd -E files carry no time: when shellgate first saw it
			}
			tab := store.LogSSHHost
			if session != nil || gateway || ours[l.User] {
				tab = store.LogSSH
			}
			ok, err := s.store.AppendStackLogOnce(ctx, &store.StackLogLine{StackID: st.ID, ServerID: sv.ID, At: at, Tab: tab, Line: line},
				strconv.FormatInt(sv.ID, 10)+"\x00"+l.Raw)
			if err != nil {
				return added, problems, err
			}
			if ok {
				added++
			}
		}
	}
	return added, problems, nil
}

// stackLogins are the login names the stack uses on a server: the server's login user
// and, in user-per-key mode, one per attached key. A member sees the servers' log
// lines for these names (and shellgate's own sessions), not those of other people
// who use the same host.
func stackLogins(st *store.Stack, sv *store.Server, attached []store.AttachedKey) map[string]bool {
	names := map[string]bool{sv.LoginUser: true}
	if st.UserPerKey {
		for _, k := range attached {
			names[k.Name] = true
		}
	}
	return names
}

// mergeNewestFirst merges two newest-first lists of log lines, keeping at most n.
func mergeNewestFirst(a, b []store.StackLogLine, n int) []store.StackLogLine {
	out := make([]store.StackLogLine, 0, min(len(a)+len(b), n))
	for len(out) < n && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || (len(a) > 0 && !a[0].At.Before(b[0].At)) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

func sshLogProblem(err error) string {
	if errors.Is(err, jobs.ErrNoSSHLog) {
		return "no readable SSH log (journal, /var/log/auth.log, /var/log/secure, last); set the server's SSH log file or give the login the adm group."
	}
	return terminal.UserMessage(err)
}

// matchSession finds the shellgate session a logged login came from: same server
// and login, the key offered among the session's, and the same source port or a
// start within matchWindow.
func matchSession(l jobs.SSHLogin, serverID int64, starts []store.Event) *store.Event {
	if l.Result != "accepted" {
		return nil
	}
	for i := range starts {
		e := &starts[i]
		if e.ServerID != serverID || e.Detail["login"] != l.User {
			continue
		}
		if l.Fingerprint != "" && !strings.Contains(","+e.Detail["keys"]+",", ","+l.Fingerprint+",") {
			continue
		}
		if l.Port != 0 && e.Detail["local"] != "" {
			if _, port, err := net.SplitHostPort(e.Detail["local"]); err == nil {
				if port == strconv.Itoa(l.Port) {
					return e
				}
				continue
			}
		}
		if !l.At.IsZero() {
			if d := l.At.Sub(e.At); d > -matchWindow && d < matchWindow {
				return e
			}
		}
	}
	return nil
}

// describeLogin words a login for the ssh tab and returns its time (the matched
// session's start when the log has none).
func describeLogin(l jobs.SSHLogin, source string, e *store.Event) (string, time.Time) {
	var b strings.Builder
	b.WriteString(l.Result)
	if l.Method != "" {
		b.WriteString(" " + l.Method)
	}
	b.WriteString(" for " + l.User + " from " + l.From)
	if l.Port != 0 {
		b.WriteString(" port " + strconv.Itoa(l.Port))
	}
	if l.Fingerprint != "" {
		b.WriteString(" (" + l.KeyType + " " + l.Fingerprint + ")")
	}
	at := l.At
	if e != nil {
		b.WriteString(" — shellgate session " + e.Detail["session"] + " by " + e.ActorName)
		if at.IsZero() {
			at = e.At
		}
	}
	return b.String() + " [" + source + "]", at
}

// stackAuditView fills the stack page's recording switches and SSH log overrides.
func (s *Server) stackAuditView(ctx context.Context, m *pages.StackModel, tab string, admin bool) error {
	if !admin || (tab != "settings" && !(tab == "log" && m.LogTab == store.LogSSH)) {
		return nil
	}
	rs, err := s.store.StackRecording(ctx, m.ID)
	if err != nil {
		return err
	}
	m.Audit.Record, m.Audit.RecordInput = rs.Record, rs.Input
	for _, sv := range m.Servers {
		path, err := s.store.ServerSSHLogFile(ctx, sv.ID)
		if err != nil {
			return err
		}
		m.Audit.LogFiles = append(m.Audit.LogFiles, pages.ServerLogFile{ServerID: sv.ID, Server: sv.Name, Path: path})
	}
	return nil
}
