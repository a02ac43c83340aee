package handlers

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

// auditKinds are the filter choices: a prefix ending in "." matches a family.
var auditKinds = []pages.Option{
	{Value: "", Label: "Everything"},
	{Value: "login", Label: "Sign-ins"},
	{Value: "terminal.", Label: "Terminal sessions"},
	{Value: "file.", Label: "File transfers"},
	{Value: "key.", Label: "SSH keys"},
	{Value: "stack.", Label: "Stacks"},
	{Value: "server.", Label: "Servers"},
	{Value: "hostkey.", Label: "Host keys"},
	{Value: "deploy.", Label: "Deployments"},
	{Value: "user.", Label: "Accounts (admin)"},
	{Value: "account.", Label: "Own account"},
}

const auditPageSize = 50

// auditFilter reads the filter from the query. Members only ever see their own events,
// whatever the query says.
func auditFilter(c echo.Context, u *store.User) (store.EventFilter, pages.AuditFilter) {
	q := c.QueryParams()
	view := pages.AuditFilter{User: strings.TrimSpace(q.Get("user")), Kind: q.Get("kind"), From: q.Get("from"), To: q.Get("to")}
	f := store.EventFilter{Kind: view.Kind}
	if u.IsAdmin() {
		f.ActorName = view.User
	} else {
		f.ActorID, view.User = u.ID, ""
	}
	if t, err := time.Parse("2006-01-02", view.From); err == nil {
		f.Since = t
	} else {
		view.From = ""
	}
	if t, err := time.Parse("2006-01-02", view.To); err == nil {
		f.Until = t.Add(24 * time.Hour) // "to" is inclusive of that day
	} else {
		view.To = ""
	}
	f.StackID, _ = strconv.ParseInt(q.Get("stack"), 10, 64)
	f.ServerID, _ = strconv.ParseInt(q.Get("server"), 10, 64)
	f.BeforeID, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	return f, view
}

// auditPage lists events, newest first, a page at a time.
func (s *Server) auditPage(c echo.Context) error {
	u := currentUser(c)
	f, view := auditFilter(c, u)
	f.Limit = auditPageSize + 1 // one more tells whether an older page exists
	events, err := s.store.ListEvents(c.Request().Context(), f)
	if err != nil {
		return err
	}
	m := pages.AuditModel{AllUsers: u.IsAdmin(), Filter: view, Kinds: auditKinds}
	if len(events) > auditPageSize {
		events = events[:auditPageSize]
		older := c.QueryParams()
		older.Set("before", strconv.FormatInt(events[len(events)-1].ID, 10))
		m.OlderURL = "/audit?" + older.Encode()
	}
	if f.BeforeID != 0 {
		newest := c.QueryParams()
		newest.Del("before")
		m.NewestURL = "/audit?" + newest.Encode()
	}
	export := c.QueryParams()
	export.Del("before")
	m.ExportCSV = "/audit/export?" + withFormat(export, "csv")
	m.ExportJSON = "/audit/export?" + withFormat(export, "json")
	for _, e := range events {
		m.Rows = append(m.Rows, pages.AuditRow{
			ID: e.ID, At: e.At, Actor: e.ActorName, Kind: e.Kind, Target: e.Target, OK: e.OK,
			ClientIP: e.ClientIP, Summary: describeEvent(e.Kind, e.Detail), Recording: recordingURL(e),
		})
	}
	return render(c, http.StatusOK, pages.Audit(s.page(c, "Audit", "audit"), m))
}

func withFormat(q url.Values, format string) string {
	q.Set("format", format)
	return q.Encode()
}

// summarize renders an event's detail as "key=value" pairs in a stable order.
func summarize(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+d[k])
	}
	return strings.Join(parts, " ")
}

const auditExportMax = 10000

// auditExport streams the filtered events (up to 10,000, newest first) as CSV or JSON.
func (s *Server) auditExport(c echo.Context) error {
	u := currentUser(c)
	f, _ := auditFilter(c, u)
	f.Limit = auditExportMax
	events, err := s.store.ListEvents(c.Request().Context(), f)
	if err != nil {
		return err
	}
	stamp := s.cfg.Now().UTC().Format("20060102-150405")
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	switch c.QueryParam("format") {
	case "json":
		h.Set(echo.HeaderContentDisposition, `attachment; filename="shellgate-audit-`+stamp+`.json"`)
		out := make([]auditJSON, 0, len(events))
		for _, e := range events {
			out = append(out, auditJSON{e.ID, e.At.UTC(), e.Kind, e.ActorName, e.OK, e.Target, e.ClientIP, e.UserAgent, e.StackID, e.ServerID, e.Detail})
		}
		return c.JSON(http.StatusOK, out)
	case "csv", "":
		h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		h.Set(echo.HeaderContentDisposition, `attachment; filename="shellgate-audit-`+stamp+`.csv"`)
		c.Response().WriteHeader(http.StatusOK)
		w := csv.NewWriter(c.Response())
		_ = w.Write([]string{"id", "time", "kind", "user", "ok", "target", "client_ip", "user_agent", "stack_id", "server_id", "detail"})
		for _, e := range events {
			_ = w.Write(csvSafe([]string{
				strconv.FormatInt(e.ID, 10), e.At.UTC().Format(time.RFC3339), e.Kind, e.ActorName,
				strconv.FormatBool(e.OK), e.Target, e.ClientIP, e.UserAgent,
				strconv.FormatInt(e.StackID, 10), strconv.FormatInt(e.ServerID, 10), summarize(e.Detail),
			}))
		}
		w.Flush()
		return w.Error()
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "Export as csv or json.")
	}
}

type auditJSON struct {
	ID        int64             `json:"id"`
	At        time.Time         `json:"time"`
	Kind      string            `json:"kind"`
	User      string            `json:"user"`
	OK        bool              `json:"ok"`
	Target    string            `json:"target"`
	ClientIP  string            `json:"clientIp"`
	UserAgent string            `json:"userAgent"`
	StackID   int64             `json:"stackId,omitempty"`
	ServerID  int64             `json:"serverId,omitempty"`
	Detail    map[string]string `json:"detail,omitempty"`
}

// csvSafe defuses spreadsheet formulas: a cell a user controls (a failed sign-in's
// username, a file name) starting with = + - @ would run as a formula when an
// operator opens the export in a spreadsheet.
func csvSafe(row []string) []string {
	for i, v := range row {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			row[i] = "'" + v
		}
	}
	return row
}
