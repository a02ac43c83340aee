package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/buildinfo"
	"github.com/shellgate/shellgate/internal/logring"
	"github.com/shellgate/shellgate/metrics"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

// OpsConfig is what the system page and the metrics endpoint know about this process.
type OpsConfig struct {
	// Metrics receives the hook calls of the handlers (sign-ins, refused upgrades,
	// terminals, file transfers). Nil: nothing is counted.
	Metrics *metrics.Metrics
	// MetricsToken, when set, serves Metrics at /metrics on the main port to a request
	// bearing it (Authorization: Bearer …). Empty: /metrics is a 404 here.
	MetricsToken string
	// MetricsWhere describes where metrics are served, for the system page.
	MetricsWhere string
	// Started is when this process started; Listen what it listens on.
	Started time.Time
	Listen  string
	// MasterKeyID is the id of the primary master key; MasterKeyFile its path.
	MasterKeyID   uint32
	MasterKeyFile string
	// Log holds the recent warnings and errors of the structured log.
	Log *logring.Ring
}

// databaseInfo is what the system page asks of the store; engines that cannot say
// show "unknown".
type databaseInfo interface {
	DatabaseInfo(ctx context.Context) (store.DatabaseInfo, error)
}

// deploymentCounter counts the deployment queue by state.
type deploymentCounter interface {
	DeploymentCounts(ctx context.Context) (map[string]int, error)
}

// metricsEndpoint serves Prometheus metrics on the main port, only to a bearer of the
// configured token. Without a token configured the route does not exist (404).
func (s *Server) metricsEndpoint(c echo.Context) error {
	o := s.cfg.Ops
	if o.Metrics == nil || o.MetricsToken == "" {
		return echo.ErrNotFound
	}
	if !bearerMatches(c.Request().Header.Get("Authorization"), o.MetricsToken) {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="shellgate metrics"`)
		return echo.NewHTTPError(http.StatusUnauthorized, "A metrics token is required.")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	o.Metrics.Handler().ServeHTTP(c.Response(), c.Request())
	return nil
}

// bearerMatches compares in constant time (over hashes, so the length leaks nothing).
func bearerMatches(header, token string) bool {
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	a, b := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// systemPage shows an administrator how this shellgate is doing.
func (s *Server) systemPage(c echo.Context) error {
	ctx := c.Request().Context()
	o := s.cfg.Ops
	bi := buildinfo.Get()
	started := o.Started
	if started.IsZero() {
		started = s.cfg.Now()
	}
	m := pages.SystemModel{
		Version: bi.Version, Commit: bi.Commit, GoVersion: bi.GoVersion,
		Started: started, Uptime: uptime(s.cfg.Now().Sub(started)),
		MasterKeyID: fmt.Sprintf("%08x", o.MasterKeyID), MasterKeyFile: o.MasterKeyFile,
		Metrics: orNone(o.MetricsWhere, "off (see --metrics-listen)"),
	}
	if di, ok := s.store.(databaseInfo); ok {
		info, err := di.DatabaseInfo(ctx)
		if err != nil {
			m.DBError = "could not be read (see the log)"
			s.log.Error("database info", "err", err)
		}
		m.DBEngine, m.DBSize, m.DBPath = info.Engine, info.Size, info.Path
	} else {
		m.DBEngine = "unknown"
	}
	for _, info := range s.terms.Sessions() {
		if info.Attached {
			m.LiveAttached++
		} else {
			m.LiveDetached++
		}
	}
	if dc, ok := s.store.(deploymentCounter); ok {
		counts, err := dc.DeploymentCounts(ctx)
		if err != nil {
			m.QueueError = "could not be read (see the log)"
			s.log.Error("deployment counts", "err", err)
		}
		for _, st := range []string{"pending", "removing", "failed", "deployed"} {
			m.Queue = append(m.Queue, pages.SystemCount{Label: st, N: counts[st]})
		}
	}
	host, _ := os.Hostname()
	// One process today; with several replicas, each will be listed from the database.
	m.Replicas = []pages.ReplicaRow{{
		Name: fmt.Sprintf("%s pid %d", orNone(host, "?"), os.Getpid()), Listen: o.Listen,
		Version: bi.Version + " " + bi.Commit, Started: started, Self: true,
	}}
	if o.Log != nil {
		for _, e := range o.Log.Entries() {
			m.Errors = append(m.Errors, pages.SystemLogRow{At: e.Time, Level: e.Level.String(), Message: e.Message, Attrs: e.Attrs})
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return render(c, http.StatusOK, pages.System(s.page(c, "System", "system"), m))
}

func orNone(v, none string) string {
	if v == "" {
		return none
	}
	return v
}

// uptime says "3 d 4 h", "5 h 12 min" or "42 s".
func uptime(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%d d %d h", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
}

// SealedKeyAD is the additional data a person's private SSH key is sealed with; restore
// uses it to check that the master key opens a backup's keys before replacing anything.
func SealedKeyAD(userID int64, name, fingerprint string) []byte {
	return keyAD(userID, name, fingerprint)
}
