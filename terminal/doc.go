// Package terminal is everything SSH behind shellgate's browser terminal:
// dialing (host-key check at every hop, auth methods, jump hosts,
// keepalive), PTY sessions with credit-based flow control and resume, the
// WebSocket bridge that speaks the protocol in docs/protocol.md, and the
// Manager that keeps the registry of live sessions.
//
// It knows nothing of HTTP routing, cookies, templates or the database: the
// caller upgrades the WebSocket (checking Origin), and passes in what it
// knows through small interfaces and callbacks (Hooks, HostKeyPolicy,
// Prompter). It could back a command-line client unchanged.
//
// Terminal content is never logged.
package terminal
