package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/metrics"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/terminal"
)

// The file API of the panel beside the terminal. Every call loads the stack and
// server with the membership check of the terminal page (404 otherwise), takes the
// person's pooled SSH connection to that server, and answers JSON errors
// {"error": "plain words"}. Transfers stream in both directions: nothing is buffered
// to memory or disk here, and no body limit or timeout middleware applies.

// noKeyMessage is the 409 answer when there is no connection to borrow and the
// person's keys do not get in: files cannot ask for a password over plain HTTP.
const noKeyMessage = "Open a terminal to this server first, or attach a key shellgate holds."

// fileStatus maps an error of the file API to an HTTP status and a message a person
// can read. It is the one place where file errors meet HTTP.
func fileStatus(err error) (int, string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status, _, msg := publicError(err)
		return status, msg
	}
	switch {
	case errors.Is(err, terminal.ErrNoKeyAuth):
		return http.StatusConflict, noKeyMessage
	case errors.Is(err, errStalled):
		return http.StatusRequestTimeout, "The transfer stopped moving and was ended."
	case errors.Is(err, terminal.ErrTooManySessions):
		return http.StatusServiceUnavailable, "Too many file connections at once. Try again in a moment."
	case errors.Is(err, terminal.ErrShutdown), errors.Is(err, errDraining):
		return http.StatusServiceUnavailable, "shellgate is restarting. Try again in a moment."
	}
	var fe *terminal.FileError
	if !errors.As(err, &fe) {
		if msg := terminal.UserMessage(err); msg != "" && !errors.Is(err, context.Canceled) {
			// Dialing failed: host key, network, authentication.
			return http.StatusBadGateway, msg
		}
		return http.StatusInternalServerError, "Something went wrong on our side. The error was logged."
	}
	msg := terminal.FileMessage(err)
	switch {
	case errors.Is(err, terminal.ErrNotExist):
		return http.StatusNotFound, msg
	case errors.Is(err, terminal.ErrExists), errors.Is(err, terminal.ErrNotDir),
		errors.Is(err, terminal.ErrIsDir), errors.Is(err, terminal.ErrDirNotEmpty):
		return http.StatusConflict, msg
	case errors.Is(err, terminal.ErrPermission):
		return http.StatusForbidden, msg
	case errors.Is(err, terminal.ErrDiskFull):
		return http.StatusInsufficientStorage, msg
	case errors.Is(err, terminal.ErrInvalidName), errors.Is(err, terminal.ErrIncomplete):
		return http.StatusBadRequest, msg
	case errors.Is(err, terminal.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, msg
	case errors.Is(err, terminal.ErrUnsupported):
		return http.StatusNotImplemented, msg
	case errors.Is(err, terminal.ErrConnectionLost):
		return http.StatusBadGateway, msg
	case errors.Is(err, context.Canceled):
		return 499, msg // the client went away; nobody reads this
	}
	return http.StatusBadGateway, msg
}

// fileError answers err as JSON, unless the response has started.
func (s *Server) fileError(c echo.Context, err error) error {
	status, msg := fileStatus(err)
	if status >= 500 && !errors.Is(err, context.Canceled) {
		s.log.Error("file request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if c.Response().Committed {
		return nil
	}
	body := map[string]any{"error": msg}
	if errors.Is(err, terminal.ErrExists) {
		body["exists"] = true
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, body)
}

// fileCall is what every file handler starts with: the stack and server (membership
// checked), the pooled Files and its release.
type fileCall struct {
	st      *store.Stack
	sv      *store.Server
	files   *terminal.Files
	release func()
}

// fileCall takes the request's Grant before it checks membership, and ties the
// request to it: a transfer ends as soon as access does (release stops the watch).
func (s *Server) fileCall(c echo.Context) (*fileCall, error) {
	u := currentUser(c)
	g, err := s.revoke.Grant(c.Request().Context(), baseScopes(u, sessionID(c), parseID(c.Param("id")), parseID(c.Param("sid")))...)
	if err != nil {
		return nil, err
	}
	st, sv, err := s.stackServer(c)
	if err != nil {
		return nil, err
	}
	if err := s.stillSignedIn(c.Request().Context(), sessionID(c)); err != nil {
		return nil, echo.NewHTTPError(http.StatusUnauthorized, "Sign in first.")
	}
	if sv.HostKeyState() != store.HostKeyPinned {
		return nil, echo.NewHTTPError(http.StatusConflict, "The host key of "+sv.Name+" must be confirmed on the stack page first.")
	}
	key := terminal.PoolKey{UserID: strconv.FormatInt(u.ID, 10), Server: strconv.FormatInt(sv.ID, 10)}
	files, release, err := s.files.Acquire(c.Request().Context(), key, func(ctx context.Context) (*terminal.Target, terminal.Auth, error) {
		servers, err := s.store.ListServers(ctx, st.ID)
		if err != nil {
			return nil, terminal.Auth{}, err
		}
		t, err := jobs.Target(servers, sv.ID)
		if err != nil {
			return nil, terminal.Auth{}, echo.NewHTTPError(http.StatusConflict, "Cannot reach "+sv.Name+": "+err.Error()+".")
		}
		auth, login, _, err := s.userAuth(ctx, u, st, nil)
		if err != nil {
			return nil, terminal.Auth{}, err
		}
		if st.UserPerKey && login != "" {
			t.User = login
		}
		return t, auth, nil
	})
	if err != nil {
		return nil, err
	}
	fc := &fileCall{st: st, sv: sv, files: files}
	stop := s.guardTransfer(c, fc, g)
	fc.release = func() { stop(); release() }
	return fc, nil
}

// auditFile writes one file event (file.upload, file.download, …) to the audit log.
func (s *Server) auditFile(c echo.Context, fc *fileCall, kind string, err error, detail map[string]string) {
	switch {
	case errors.Is(err, errStalled):
		detail["reason"] = "stalled"
	case errors.Is(err, errDraining):
		detail["reason"] = "cut: shellgate restarted"
	case err != nil:
		detail["reason"] = terminal.FileMessage(err)
	}
	s.auditTerminal(currentUser(c), c.RealIP(), fc.st, fc.sv, kind, err == nil, detail)
}

// breadcrumb is one part of the path shown above the listing.
type breadcrumb struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

func breadcrumbs(p string) []breadcrumb {
	parts := []breadcrumb{{Name: "/", Path: "/"}}
	cur := ""
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		cur += "/" + name
		parts = append(parts, breadcrumb{Name: name, Path: cur})
	}
	return parts
}

type listingResponse struct {
	*terminal.Listing
	Home  string       `json:"home"`
	Parts []breadcrumb `json:"parts"`
}

// filesList lists a folder; the home folder when path is empty.
func (s *Server) filesList(c echo.Context) error {
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	p := c.QueryParam("path")
	if p == "" {
		p = fc.files.Home()
	}
	l, err := fc.files.List(c.Request().Context(), p)
	if err != nil {
		return s.fileError(c, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, listingResponse{Listing: l, Home: fc.files.Home(), Parts: breadcrumbs(l.Path)})
}

// filesCount says what a folder holds, for the delete confirmation.
func (s *Server) filesCount(c echo.Context) error {
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	files, dirs, bytes, err := fc.files.CountTree(c.Request().Context(), c.QueryParam("path"))
	more := errors.Is(err, terminal.ErrTooLarge)
	if err != nil && !more {
		return s.fileError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"files": files, "dirs": dirs, "bytes": bytes, "more": more})
}

// contentDisposition makes an attachment header for any remote name (RFC 6266):
// an ASCII fallback with everything doubtful replaced, and the exact name as
// filename* in UTF-8, percent-encoded, so quotes, newlines or markup in a name
// cannot break out of the header.
func contentDisposition(name string) string {
	if !utf8.ValidString(name) {
		name = strings.ToValidUTF8(name, "_")
	}
	var fallback, enc strings.Builder
	for _, r := range name {
		if r >= 0x20 && r < 0x7f && r != '"' && r != '\\' && r != '%' && r != ';' && r != '<' && r != '>' {
			fallback.WriteRune(r)
		} else {
			fallback.WriteByte('_')
		}
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$&+-.^_`|~", b) >= 0 {
			enc.WriteByte(b)
		} else {
			fmt.Fprintf(&enc, "%%%02X", b)
		}
	}
	return `attachment; filename="` + fallback.String() + `"; filename*=UTF-8''` + enc.String()
}

// attachmentHeaders are set on every download: the browser saves, never renders.
func attachmentHeaders(h http.Header, name, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", contentDisposition(name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
}

// filesDownload streams one file, with Range support (resumed downloads).
func (s *Server) filesDownload(c echo.Context) error {
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	t, err := s.xfers.begin(c, false)
	if err != nil {
		return s.fileError(c, err)
	}
	defer s.endTransfer(t, fc)
	p := c.QueryParam("path")
	rf, err := fc.files.Open(t.ctx, p)
	if err != nil {
		s.auditFile(c, fc, "file.download", err, map[string]string{"path": p})
		return s.fileError(c, err)
	}
	defer rf.Close()
	detail := map[string]string{"path": rf.Path(), "size": strconv.FormatInt(rf.Size(), 10)}
	if rg := c.Request().Header.Get("Range"); rg != "" {
		detail["range"] = truncate(rg, 100)
	}
	s.auditFile(c, fc, "file.download", nil, detail)
	attachmentHeaders(c.Response().Header(), rf.Name(), "application/octet-stream")
	start := time.Now()
	// The Content-Type is set, so ServeContent does not sniff; the name is unused.
	http.ServeContent(t.writer(c.Response()), c.Request().WithContext(t.ctx), "", rf.ModTime(), rf)
	s.cfg.Ops.Metrics.FileTransfer(metrics.Download, c.Response().Size, time.Since(start), t.ctx.Err())
	if t.stalled() || t.drained() {
		// The start was audited; the end says why the browser got less.
		s.auditFile(c, fc, "file.download", t.reason(), detail)
	}
	return nil
}

// endTransfer unregisters t; a stalled transfer's pooled SFTP session is
// discarded (closed once nobody uses it), since requests of the cut transfer may
// still be outstanding on it.
func (s *Server) endTransfer(t *transfer, fc *fileCall) {
	t.end()
	if t.stalled() {
		s.files.Discard(fc.files)
	}
}

// filesArchive streams a folder as a zip.
func (s *Server) filesArchive(c echo.Context) error {
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	t, err := s.xfers.begin(c, false)
	if err != nil {
		return s.fileError(c, err)
	}
	defer s.endTransfer(t, fc)
	ctx := t.ctx
	p := c.QueryParam("path")
	e, err := fc.files.Stat(ctx, p)
	if err == nil && !e.IsDir && !e.TargetIsDir {
		err = &terminal.FileError{Op: "archive", Path: p, Err: terminal.ErrNotDir}
	}
	if err != nil {
		s.auditFile(c, fc, "file.archive", err, map[string]string{"path": p})
		return s.fileError(c, err)
	}
	name := path.Base(e.Path)
	if name == "/" || name == "." {
		name = "root"
	}
	attachmentHeaders(c.Response().Header(), name+".zip", "application/zip")
	c.Response().WriteHeader(http.StatusOK)
	start := time.Now()
	res, err := fc.files.WriteZip(ctx, e.Path, t.writer(c.Response()))
	s.cfg.Ops.Metrics.FileTransfer(metrics.Download, c.Response().Size, time.Since(start), err)
	detail := map[string]string{"path": e.Path, "files": strconv.Itoa(res.Files), "bytes": strconv.FormatInt(res.Bytes, 10)}
	if len(res.Skipped) > 0 {
		detail["skipped"] = strconv.Itoa(len(res.Skipped))
	}
	if err != nil && (t.stalled() || t.drained()) {
		err = t.reason()
	}
	s.auditFile(c, fc, "file.archive", err, detail)
	if err != nil && !errors.Is(err, context.Canceled) {
		// The headers are gone: the browser sees a broken download.
		s.log.Warn("archive stopped", "path", e.Path, "err", err)
	}
	return nil
}

// filesUpload streams the request body into the folder dir as name (a relative path
// for files of a dropped folder). The engine writes a temporary file and renames it
// only when every byte arrived, so a cut-off upload leaves nothing behind.
func (s *Server) filesUpload(c echo.Context) error {
	r := c.Request()
	q := r.URL.Query()
	size := r.ContentLength
	if v := q.Get("size"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || (size >= 0 && n != size) {
			return s.fileError(c, echo.NewHTTPError(http.StatusBadRequest, "The size does not match the upload."))
		}
		size = n
	}
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	t, err := s.xfers.begin(c, true)
	if err != nil {
		return s.fileError(c, err)
	}
	defer s.endTransfer(t, fc)
	dir, rel := q.Get("dir"), q.Get("name")
	// The engine removes its temporary file whatever ends the upload: the body
	// failing, t.ctx cut by the progress deadline or the end of a drain.
	body, start := &metrics.CountingReader{R: t.body(r.Body)}, time.Now()
	res, err := fc.files.Upload(t.ctx, dir, rel, body, terminal.UploadOptions{Size: size, Overwrite: q.Get("overwrite") == "1"})
	if !errors.Is(err, terminal.ErrExists) {
		s.cfg.Ops.Metrics.FileTransfer(metrics.Upload, body.N, time.Since(start), err)
	}
	if err != nil && (t.stalled() || t.drained()) {
		err = t.reason()
	}
	detail := map[string]string{"path": path.Join(dir, rel), "size": strconv.FormatInt(size, 10)}
	if err == nil {
		detail["path"], detail["size"] = res.Path, strconv.FormatInt(res.Size, 10)
		if res.Replaced {
			detail["replaced"] = "true"
		}
	}
	if !errors.Is(err, terminal.ErrExists) { // a refusal before any byte is not a transfer
		s.auditFile(c, fc, "file.upload", err, detail)
	}
	if err != nil {
		// Drain nothing: the connection closes if the body was not read.
		return s.fileError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"path": res.Path, "size": res.Size, "replaced": res.Replaced})
}

// validName refuses names the panel would turn into another path.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

type mkdirRequest struct {
	Dir  string `json:"dir"`
	Name string `json:"name"` // one new folder, which must not exist
	Rel  string `json:"rel"`  // or a relative path, created as needed (empty folders of a dropped folder)
}

func (s *Server) filesMkdir(c echo.Context) error {
	var req mkdirRequest
	if err := c.Bind(&req); err != nil || (req.Rel == "" && !validName(req.Name)) {
		return s.fileError(c, echo.NewHTTPError(http.StatusBadRequest, "Give the new folder a name without \"/\"."))
	}
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	var p string
	if req.Rel != "" {
		p, err = fc.files.MkdirAll(c.Request().Context(), req.Dir, req.Rel)
		if p == "" {
			p = path.Join(req.Dir, req.Rel)
		}
	} else {
		p = path.Join(req.Dir, req.Name)
		err = fc.files.Mkdir(c.Request().Context(), p)
	}
	s.auditFile(c, fc, "file.mkdir", err, map[string]string{"path": p})
	if err != nil {
		return s.fileError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]string{"path": p})
}

type renameRequest struct {
	Path      string `json:"path"`
	Name      string `json:"name"` // new name in the same folder
	Overwrite bool   `json:"overwrite"`
}

func (s *Server) filesRename(c echo.Context) error {
	var req renameRequest
	if err := c.Bind(&req); err != nil || !validName(req.Name) || req.Path == "" {
		return s.fileError(c, echo.NewHTTPError(http.StatusBadRequest, "Give a new name without \"/\"."))
	}
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	to := path.Join(path.Dir(req.Path), req.Name)
	err = fc.files.Rename(c.Request().Context(), req.Path, to, req.Overwrite)
	s.auditFile(c, fc, "file.rename", err, map[string]string{"path": req.Path, "to": to})
	if err != nil {
		return s.fileError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]string{"path": to})
}

type deleteRequest struct {
	Path string `json:"path"`
}

// filesDelete removes a file, a link or a folder with everything in it (the panel
// has shown what is inside and asked).
func (s *Server) filesDelete(c echo.Context) error {
	var req deleteRequest
	if err := c.Bind(&req); err != nil || req.Path == "" {
		return s.fileError(c, echo.NewHTTPError(http.StatusBadRequest, "Say what to delete."))
	}
	fc, err := s.fileCall(c)
	if err != nil {
		return s.fileError(c, err)
	}
	defer fc.release()
	ctx := c.Request().Context()
	e, err := fc.files.Stat(ctx, req.Path)
	if err == nil {
		if e.IsDir {
			err = fc.files.RemoveAll(ctx, req.Path)
		} else {
			err = fc.files.Remove(ctx, req.Path)
		}
	}
	detail := map[string]string{"path": req.Path}
	if err == nil && e.IsDir {
		detail["folder"] = "true"
	}
	s.auditFile(c, fc, "file.delete", err, detail)
	if err != nil {
		return s.fileError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}
