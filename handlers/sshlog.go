package handlers

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
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

// refreshSSHLog reads every server's SSH login history now and adds new lines to
// the ssh tab of the stack log.
func (s *Server) refreshSSHLog(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/stacks/"+strconv.FormatInt(st.ID, 10)+"?tab=log&log=ssh")
}
