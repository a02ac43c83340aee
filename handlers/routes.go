package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/static"
)

// routes registers every route of the application: the whole surface on one screen.
func (s *Server) routes(e *echo.Echo) {
	e.Pre(s.checkHost, s.refuseWhileDraining)
	// bodyPolicy bounds every body before anything (csrf included) may read it.
	e.Use(s.recoverPanics, s.securityHeaders, s.loadSession, s.bodyPolicy, s.csrf)

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/readyz", s.readyz)           // 503 while draining or when the database is not usable
	e.GET("/metrics", s.metricsEndpoint) // bearer token only; 404 unless configured
	e.GET("/static/*", s.staticFiles(static.FS()))
	// Agents of hosts behind NAT: not a browser endpoint (no session, no cookie
	// counts; a request with an Origin is refused), authenticated by token or key.
	if s.cfg.AgentEndpoint != nil {
		e.GET(AgentPath, clientAddr(s.cfg.AgentEndpoint))
	}
	if s.cfg.TunnelEndpoint != nil {
		e.GET(TunnelPath, clientAddr(s.cfg.TunnelEndpoint))
	}

	e.GET("/login", s.loginPage)
	e.POST("/login", s.login)
	e.POST("/logout", s.logout)

	app := e.Group("", s.requireUser)
	app.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/stacks") })
	app.GET("/stacks", s.stacksPage)
	app.POST("/stacks", s.createStack, s.requireAdmin)
	app.GET("/stacks/:id", s.stackPage)
	app.GET("/stacks/:id/known_hosts", s.knownHostsExport)
	app.POST("/stacks/:id/keys", s.attachKey)
	app.POST("/stacks/:id/keys/:kid/detach", s.detachKey)
	stackAdmin := app.Group("/stacks/:id", s.requireAdmin)
	stackAdmin.POST("/servers", s.addServer)
	stackAdmin.GET("/servers/:sid/hostkey", s.hostKeyPage)
	stackAdmin.POST("/servers/:sid/scan", s.scanServer)
	stackAdmin.POST("/servers/:sid/pin", s.pinHostKey)
	stackAdmin.POST("/servers/:sid/delete", s.deleteServer)
	stackAdmin.POST("/servers/:sid/agent/token", s.newAgentToken)
	stackAdmin.POST("/install", s.installGatewayKey)
	stackAdmin.GET("/import", s.importPage)
	stackAdmin.POST("/import", s.importSSHConfig)
	stackAdmin.POST("/known_hosts", s.knownHostsImport)
	stackAdmin.POST("/settings", s.stackSettings)
	stackAdmin.POST("/members", s.addMember)
	stackAdmin.POST("/members/:uid/remove", s.removeMember)
	stackAdmin.POST("/retry", s.retryDeployments)
	stackAdmin.POST("/recording", s.stackRecordingSettings)
	stackAdmin.POST("/servers/:sid/sshlog", s.serverSSHLogFile)
	app.GET("/stacks/:id/servers/:sid/terminal", s.terminalPage)
	app.POST("/stacks/:id/servers/:sid/tunnels", s.openTunnel)
	app.GET("/tunnels/:tid", s.tunnelPage)
	app.POST("/tunnels/:tid/rotate", s.rotateTunnel)
	app.POST("/tunnels/:tid/close", s.closeTunnel)
	app.POST("/tunnels/:tid/duplicate", s.duplicateTunnel)
	app.POST("/tunnels/:tid/delete", s.deleteTunnel)
	app.POST("/api/terminal/tickets", s.issueTicket)
	// The terminal socket stays out of any timeout or compression middleware.
	app.GET("/api/terminal/ws", s.terminalSocket)
	// Files beside the terminal: transfers stream for as long as they take, so the
	// upload stays out of the body limit (for a signed-in page with a header CSRF token
	// only, see bodylimit.go) and out of timeouts (see files.go).
	files := app.Group("/stacks/:id/servers/:sid/files")
	files.GET("", s.filesList)
	files.GET("/count", s.filesCount)
	files.GET("/download", s.filesDownload)
	files.GET("/archive", s.filesArchive)
	files.PUT("/upload", s.filesUpload)
	files.POST("/mkdir", s.filesMkdir)
	files.POST("/rename", s.filesRename)
	files.POST("/delete", s.filesDelete)
	app.GET("/keys", s.keysPage)
	app.POST("/keys/public", s.addPublicKey)
	app.POST("/keys/upload", s.uploadPrivateKey)
	app.POST("/keys/generate", s.generateKey)
	app.POST("/keys/:id/download", s.downloadKey)
	app.POST("/keys/:id/delete", s.deleteKey)
	app.GET("/audit", s.auditPage)
	app.GET("/audit/export", s.auditExport)
	app.GET("/audit/recordings/:session", s.recordingPage)
	app.GET("/audit/recordings/:session/cast", s.recordingCast)
	app.POST("/stacks/:id/sshlog/refresh", s.refreshSSHLog)
	app.GET("/account", s.accountPage)
	app.POST("/account/password", s.changePassword)

	admin := app.Group("/admin", s.requireAdmin)
	admin.GET("/users", s.usersPage)
	admin.POST("/users", s.createUser)
	admin.POST("/users/:id/disable", s.setUserDisabled(true))
	admin.POST("/users/:id/enable", s.setUserDisabled(false))
	admin.POST("/users/:id/password", s.resetPassword)
	admin.POST("/throttles/clear", s.clearThrottle)
	admin.POST("/users/:id/end-sessions", s.endSessions)
	admin.GET("/live", s.livePage)
	admin.GET("/system", s.systemPage)
	admin.POST("/live/:session/terminate", s.terminateSession)
}
