package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/sshconfig"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

func (s *Server) importPage(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, pages.Import(s.page(c, "Import servers", "stacks"), pages.ImportModel{StackID: st.ID, StackName: st.Name}))
}

// importSSHConfig turns the Host blocks of a pasted ~/.ssh/config into servers of the
// stack. ProxyJump hops become servers too (reusing a Host block of the same config or
// a server of the stack with that name). Nothing connects with credentials: each
// imported server's host key is read for an admin to confirm.
func (s *Server) importSSHConfig(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	m := pages.ImportModel{StackID: st.ID, StackName: st.Name, Text: c.FormValue("config"), DefaultUser: strings.TrimSpace(c.FormValue("default_user"))}
	again := func(msg string) error {
		m.Error = msg
		return render(c, http.StatusUnprocessableEntity, pages.Import(s.page(c, "Import servers", "stacks"), m))
	}
	if !validLogin.MatchString(m.DefaultUser) {
		return again("The default login user must be a valid Unix user name, for example root or deploy.")
	}
	hosts, warnings, err := sshconfig.Parse(m.Text)
	if err != nil {
		return again("That is not a configuration ssh could read: " + err.Error())
	}
	if len(hosts) == 0 {
		return again("No Host block with a concrete name was found. Wildcard hosts and Match blocks are skipped.")
	}
	existing, err := s.store.ListServers(ctx, st.ID)
	if err != nil {
		return err
	}
	byName := map[string]*store.Server{}
	for i := range existing {
		byName[existing[i].Name] = &existing[i]
	}
	byAlias := map[string]*sshconfig.Host{}
	for i := range hosts {
		byAlias[hosts[i].Alias] = &hosts[i]
	}
	var created []*store.Server
	var rows []pages.ImportedRow
	var problems []string

	// ensure returns the id of the server for a hop or host, creating it when needed.
	var ensure func(name, host, user string, port int, jumps []sshconfig.Jump, identity string, depth int) (int64, error)
	ensure = func(name, host, user string, port int, jumps []sshconfig.Jump, identity string, depth int) (int64, error) {
		if sv, ok := byName[name]; ok {
			return sv.ID, nil
		}
		if depth > 8 {
			return 0, jobs.ErrJumpLoop
		}
		var jumpID int64
		if len(jumps) > 0 {
			last := jumps[len(jumps)-1]
			var err error
			if h, ok := byAlias[last.Host]; ok && last.User == "" && last.Port == 0 {
				jumpID, err = ensure(h.Alias, h.HostName, orDefault(h.User, m.DefaultUser), h.Port, jumpsBefore(jumps, h), firstOr(h.IdentityFiles), depth+1)
			} else {
				jumpID, err = ensure(hopName(last), last.Host, orDefault(last.User, m.DefaultUser), last.Port, jumps[:len(jumps)-1], "", depth+1)
			}
			if err != nil {
				return 0, err
			}
		}
		if !validServerName.MatchString(name) || !validHost.MatchString(host) || !validLogin.MatchString(user) {
			return 0, fmt.Errorf("%s: name, host or user is not valid here", name)
		}
		if port == 0 {
			port = 22
		}
		sv := &store.Server{StackID: st.ID, Name: name, Host: host, Port: port, LoginUser: user, JumpServerID: jumpID, IdentityFile: identity, CreatedAt: s.cfg.Now()}
		if err := s.store.CreateServer(ctx, sv); err != nil {
			return 0, err
		}
		byName[name] = sv
		created = append(created, sv)
		return sv.ID, nil
	}
	for _, h := range hosts {
		if _, ok := byName[h.Alias]; ok {
			rows = append(rows, pages.ImportedRow{Name: h.Alias, Note: "already in this stack; left unchanged"})
			continue
		}
		if _, err := ensure(h.Alias, h.HostName, orDefault(h.User, m.DefaultUser), h.Port, h.ProxyJump, firstOr(h.IdentityFiles), 0); err != nil {
			problems = append(problems, fmt.Sprintf("Host %s was not imported: %v.", h.Alias, err))
		}
	}
	s.scanAll(ctx, st, created)
	for _, sv := range created {
		note := ""
		if sv.IdentityFile != "" {
			note = "IdentityFile " + sv.IdentityFile + " noted (it stays on your machine)"
		}
		rows = append(rows, pages.ImportedRow{Name: sv.Name, Address: address(sv), Note: note, ConfirmURL: hostKeyURL(st.ID, sv.ID)})
		s.audit(c, currentUser(c), "server.add", st.Name+"/"+sv.Name, true, map[string]string{"address": address(sv), "user": sv.LoginUser, "via": "ssh_config"})
	}
	m.Done, m.Created = true, rows
	m.Warnings = append(warnings, problems...)
	if len(created) == 0 && len(problems) > 0 {
		m.Done = false
		return again(strings.Join(problems, " "))
	}
	return render(c, http.StatusOK, pages.Import(s.page(c, "Import servers", "stacks"), m))
}

// jumpsBefore: for a hop that is itself a Host block, its own ProxyJump applies.
func jumpsBefore(_ []sshconfig.Jump, h *sshconfig.Host) []sshconfig.Jump { return h.ProxyJump }

func hopName(j sshconfig.Jump) string {
	if j.Port != 0 && j.Port != 22 {
		return fmt.Sprintf("%s-%d", j.Host, j.Port)
	}
	return j.Host
}

func firstOr(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// scanAll reads the host keys of freshly imported servers, four at a time, jump
// servers first being unconfirmed means those behind them wait for a later scan.
func (s *Server) scanAll(ctx context.Context, st *store.Stack, servers []*store.Server) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, sv := range servers {
		if sv.JumpServerID != 0 {
			continue // its jump host's key is not confirmed yet
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.scan(ctx, st, sv)
		}()
	}
	wg.Wait()
}

// knownHostsExport downloads the stack's pinned keys as a known_hosts file.
func (s *Server) knownHostsExport(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	servers, err := s.store.ListServers(c.Request().Context(), st.ID)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="known_hosts-%s"`, safeFileName(st.Name)))
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", jobs.KnownHostsFile(st.Name, servers))
}

func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// knownHostsImport pins keys from a known_hosts file on servers that have none yet.
// A server with a pinned key keeps it: an import never silently replaces a pin.
func (s *Server) knownHostsImport(c echo.Context) error {
	st, err := s.stackFor(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	data := c.FormValue("known_hosts")
	if len(data) > 1<<20 {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "That known_hosts file is larger than 1 MiB.")
	}
	servers, err := s.store.ListServers(ctx, st.ID)
	if err != nil {
		return err
	}
	found, warnings, err := jobs.MatchKnownHosts([]byte(data), servers)
	if err != nil {
		return err
	}
	var pinned, kept []string
	for _, sv := range servers {
		keys := found[sv.ID]
		if len(keys) == 0 {
			continue
		}
		err := s.store.PinHostKeys(ctx, st.ID, sv.ID, keys, s.cfg.Now())
		if errors.Is(err, store.ErrConflict) {
			kept = append(kept, sv.Name)
			continue
		}
		if err != nil {
			return err
		}
		pinned = append(pinned, sv.Name)
		s.audit(c, currentUser(c), "hostkey.pin", st.Name+"/"+sv.Name, true, map[string]string{"via": "known_hosts"})
		s.stackLog(c, st.ID, sv.ID, fmt.Sprintf("Host key of %s pinned from an imported known_hosts file", sv.Name))
	}
	msg := "No server of this stack is listed in that file."
	if len(pinned) > 0 {
		msg = "Pinned host keys of " + strings.Join(pinned, ", ") + "."
		s.wake()
	}
	if len(kept) > 0 {
		msg += " Already pinned, left unchanged: " + strings.Join(kept, ", ") + "."
	}
	if len(warnings) > 0 {
		msg += " " + strings.Join(warnings, " ")
	}
	kind := "ok"
	if len(pinned) == 0 {
		kind = "info"
	}
	s.setFlash(c, kind, msg)
	return c.Redirect(http.StatusSeeOther, stackURL(st.ID, "settings"))
}
