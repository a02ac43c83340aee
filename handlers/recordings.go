package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
	"github.com/shellgate/shellgate/views/pages"
)

// DefaultRecordingRetention is how long recordings are kept unless configured.
const DefaultRecordingRetention = 90 * 24 * time.Hour

// recordingSink is the Recorder and InputRecorder the bridge gets for one socket. The
// bridge's hooks are fixed before the stack is known, so the sink starts empty: Open
// decides (per the stack's settings) whether to record, and the file, created under a
// temporary name, is renamed after the session id once the shell has started.
type recordingSink struct {
	mu    sync.Mutex
	rec   *terminal.Recorder
	input bool
	file  *os.File
	dir   string // the recordings root
	tmp   string // absolute temporary path
	rel   string // final path relative to dir, once named
}

func (r *recordingSink) Write(p []byte) (int, error) {
	r.mu.Lock()
	rec := r.rec
	r.mu.Unlock()
	if rec != nil {
		rec.Write(p)
	}
	return len(p), nil
}

// Resize passes PTY sizes on (asciicast header size and "r" events).
func (r *recordingSink) Resize(cols, rows int) {
	r.mu.Lock()
	rec := r.rec
	r.mu.Unlock()
	if rec != nil {
		rec.Resize(cols, rows)
	}
}

type sinkInput struct{ r *recordingSink }

func (i sinkInput) Write(p []byte) (int, error) {
	i.r.mu.Lock()
	rec, on := i.r.rec, i.r.input
	i.r.mu.Unlock()
	if rec != nil && on {
		rec.Input().Write(p)
	}
	return len(p), nil
}

// prepare starts a recording for a session about to open on sv, if the stack records.
func (s *Server) prepareRecording(ctx context.Context, r *recordingSink, st *store.Stack, sv *store.Server, login string) {
	if s.cfg.RecordingsDir == "" {
		return
	}
	rs, err := s.store.StackRecording(ctx, st.ID)
	if err != nil || !rs.Record {
		return
	}
	now := s.cfg.Now()
	dir := filepath.Join(s.cfg.RecordingsDir, now.UTC().Format("2006"), now.UTC().Format("01"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.log.Error("recording directory", "err", err)
		return
	}
	f, err := os.CreateTemp(dir, ".rec-*.cast")
	if err != nil {
		s.log.Error("recording file", "err", err)
		return
	}
	_ = f.Chmod(0o600)
	rec := terminal.NewRecorder(f, terminal.CastHeader{
		Timestamp: now.Unix(), Title: login + "@" + sv.Name + " (" + st.Name + ")",
		Env: map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/sh"},
	}, rs.Input)
	r.mu.Lock()
	r.rec, r.input, r.file, r.dir, r.tmp = rec, rs.Input, f, s.cfg.RecordingsDir, f.Name()
	r.mu.Unlock()
}

// startRecording names the file after the session and records it in the store.
func (s *Server) startRecording(r *recordingSink, u *store.User, st *store.Stack, sv *store.Server, info terminal.SessionInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec == nil {
		return
	}
	final := filepath.Join(filepath.Dir(r.tmp), info.ID+".cast")
	if err := os.Rename(r.tmp, final); err != nil {
		s.log.Error("recording rename", "err", err)
		final = r.tmp
	}
	rel, err := filepath.Rel(r.dir, final)
	if err != nil {
		return
	}
	r.rel = rel
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.CreateRecording(ctx, &store.Recording{
		SessionID: info.ID, UserID: u.ID, Username: u.Username, StackID: st.ID, ServerID: sv.ID, ServerName: sv.Name,
		Login: info.User, Path: rel, StartedAt: info.Started, HasInput: r.input,
	}); err != nil {
		s.log.Error("recording row", "err", err)
	}
}

// finishRecording closes the file and stores its size. It reports whether the session
// has a recording.
func (s *Server) finishRecording(r *recordingSink, sessionID string) bool {
	r.mu.Lock()
	rec, rel, tmp := r.rec, r.rel, r.tmp
	r.rec = nil
	r.mu.Unlock()
	if rec == nil {
		return false
	}
	if err := rec.Close(); err != nil {
		s.log.Error("recording", "session", sessionID, "err", err)
	}
	if rel == "" { // the shell never started
		_ = os.Remove(tmp)
		return false
	}
	var size int64
	if fi, err := os.Stat(filepath.Join(r.dir, rel)); err == nil {
		size = fi.Size()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.FinishRecording(ctx, sessionID, s.cfg.Now(), size); err != nil {
		s.log.Error("recording row", "session", sessionID, "err", err)
	}
	return true
}

// abandonRecording removes the file of a session whose shell never started (dial or
// authentication failed). Serve has returned, so it can no longer start.
func (s *Server) abandonRecording(r *recordingSink) {
	r.mu.Lock()
	rec, rel, tmp := r.rec, r.rel, r.tmp
	if rel == "" {
		r.rec = nil
	}
	r.mu.Unlock()
	if rec != nil && rel == "" {
		_ = rec.Close()
		_ = os.Remove(tmp)
	}
}

// recordingFor loads a recording the signed-in person may see: their own, or any for
// an admin. Anything else is a 404, so ids of other people's sessions are not confirmed.
func (s *Server) recordingFor(c echo.Context) (*store.Recording, error) {
	u := currentUser(c)
	rec, err := s.store.RecordingBySession(c.Request().Context(), c.Param("session"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsAdmin() && rec.UserID != u.ID) {
		return nil, echo.NewHTTPError(http.StatusNotFound, "No such recording.")
	}
	return rec, err
}

// recordingPage plays one session's recording.
func (s *Server) recordingPage(c echo.Context) error {
	rec, err := s.recordingFor(c)
	if err != nil {
		return err
	}
	// asciinema-player's terminal emulator is WebAssembly: this page alone may compile
	// it ('wasm-unsafe-eval' allows WebAssembly, not JavaScript eval).
	h := c.Response().Header()
	h.Set("Content-Security-Policy", strings.Replace(h.Get("Content-Security-Policy"), "script-src ", "script-src 'wasm-unsafe-eval' ", 1))
	p := s.page(c, "Recording — "+rec.ServerName, "audit")
	p.ExtraCSS = s.assets.PlayerCSS
	return render(c, http.StatusOK, pages.Recording(p, pages.RecordingModel{
		SessionID: rec.SessionID, User: rec.Username, Server: rec.ServerName, Login: rec.Login,
		Started: rec.StartedAt, Ended: rec.EndedAt, Size: rec.Size, HasInput: rec.HasInput,
		CastURL: "/audit/recordings/" + rec.SessionID + "/cast", PlayerJS: s.assets.PlayerJS,
	}))
}

// recordingCast serves the asciicast file itself.
func (s *Server) recordingCast(c echo.Context) error {
	rec, err := s.recordingFor(c)
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.RecordingsDir, filepath.Clean("/"+rec.Path))
	f, err := os.Open(path)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound, "The recording file is gone (retention or disk).")
	}
	defer f.Close()
	h := c.Response().Header()
	h.Set("Cache-Control", "private, no-store")
	h.Set("Content-Type", "application/x-asciicast")
	h.Set("Content-Disposition", `inline; filename="`+strings.ReplaceAll(rec.SessionID, `"`, "")+`.cast"`)
	fi, _ := f.Stat()
	http.ServeContent(c.Response(), c.Request(), "", fi.ModTime(), f)
	return nil
}

// CleanupRecordings deletes recordings older than the retention, file and row.
func (s *Server) CleanupRecordings(ctx context.Context) (int, error) {
	retention := s.cfg.RecordingRetention
	if retention <= 0 {
		retention = DefaultRecordingRetention
	}
	n := 0
	for range 100 { // bounded: at most 100 batches per run
		list, err := s.store.RecordingsBefore(ctx, s.cfg.Now().Add(-retention), 500)
		if err != nil || len(list) == 0 {
			return n, err
		}
		for _, r := range list {
			if s.cfg.RecordingsDir != "" {
				if err := os.Remove(filepath.Join(s.cfg.RecordingsDir, filepath.Clean("/"+r.Path))); err != nil && !errors.Is(err, os.ErrNotExist) {
					s.log.Error("recording not deleted", "path", r.Path, "err", err)
					return n, err
				}
			}
			if err := s.store.DeleteRecording(ctx, r.SessionID); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// RunRecordingRetention cleans up now and then hourly until ctx ends.
func (s *Server) RunRecordingRetention(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.CleanupRecordings(ctx); err != nil {
			s.log.Error("recording retention", "err", err)
		} else if n > 0 {
			s.log.Info("recordings past retention deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recordingURL is the player page of a terminal.end event's recording, if it has one.
func recordingURL(e store.Event) string {
	if e.Kind == "terminal.end" && e.Detail["recording"] == "yes" && e.Detail["session"] != "" {
		return "/audit/recordings/" + url.PathEscape(e.Detail["session"])
	}
	return ""
}
