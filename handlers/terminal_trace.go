package handlers

import (
	"context"
	"time"

	"github.com/shellgate/shellgate/store"
)

// traceTerminal writes one ssh -v style line of a terminal connection to the stack
// log (tab debug), only when an administrator turned debugging on for the stack. The
// lines name hosts, users, algorithms and key fingerprints, never secrets.
func (s *Server) traceTerminal(st *store.Stack, sv *store.Server, line string) {
	if st == nil || sv == nil || !st.DebugTrace {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.AppendStackLog(ctx, &store.StackLogLine{StackID: st.ID, ServerID: sv.ID, At: s.cfg.Now(),
		Tab: store.LogDebug, Line: line}); err != nil {
		s.log.Error("stack debug log", "err", err)
	}
}
