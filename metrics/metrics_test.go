package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shellgate/shellgate/terminal"
)

// TestDialCause maps what terminal.Dial returns to the bounded cause label, one row
// per cause an operator alerts on.
func TestDialCause(t *testing.T) {
	tgt := &terminal.Target{Host: "web-1", Port: 22, User: "deploy"}
	dial := func(phase string, err error) error { return &terminal.DialError{Target: tgt, Phase: phase, Err: err} }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{dial(terminal.PhaseConnect, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), CauseRefused},
		{dial(terminal.PhaseConnect, context.DeadlineExceeded), CauseTimeout},
		{dial(terminal.PhaseBanner, os.ErrDeadlineExceeded), CauseTimeout},
		{dial(terminal.PhaseKex, &terminal.HostKeyError{Target: tgt, Err: terminal.ErrHostKeyChanged}), CauseHostKey},
		{dial(terminal.PhaseKex, &terminal.HostKeyError{Target: tgt, Err: terminal.ErrHostKeyRejected}), CauseHostKey},
		{dial(terminal.PhaseAuth, &terminal.AuthError{Target: tgt, Err: errors.New("ssh: unable to authenticate")}), CauseAuth},
		{dial(terminal.PhaseConnect, &net.DNSError{Err: "no such host", Name: "web-1"}), CauseUnreachable},
		{dial(terminal.PhaseConnect, os.NewSyscallError("connect", syscall.EHOSTUNREACH)), CauseUnreachable},
		{dial(terminal.PhaseKex, fmt.Errorf("%w (%w)", context.Canceled, errors.New("EOF"))), CauseCanceled},
		{dial(terminal.PhaseBanner, fmt.Errorf("%w: bad banner", terminal.ErrNotSSH)), CauseOther},
	} {
		if got := DialCause(tc.err); got != tc.want {
			t.Errorf("DialCause(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestEndReason maps the cause a session ended with to the bounded reason label.
func TestEndReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, EndExit},
		{&terminal.ExitError{Status: 3}, EndExit},
		{terminal.ErrDetachExpired, EndDetachExpired},
		{fmt.Errorf("%w: idle", terminal.ErrTerminated), EndTerminated},
		{terminal.ErrShutdown, EndShutdown},
		{fmt.Errorf("%w: EOF", terminal.ErrConnectionLost), EndConnectionLost},
		{errors.New("something else"), EndError},
	} {
		if got := EndReason(tc.err); got != tc.want {
			t.Errorf("EndReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestTerminalBytesNeverGoBack: the byte counter is fed from live sessions at scrape
// time and from the end hook; a session ending between two scrapes (or while a scrape
// holds an old list) must neither lose its last bytes nor be counted twice.
func TestTerminalBytesNeverGoBack(t *testing.T) {
	var live []terminal.SessionInfo
	m := New(Build{})
	m.WatchTerminals(func() []terminal.SessionInfo { return live })
	out := func() float64 { return gathered(t, m, "shellgate_terminal_bytes_total", "out") }
	a := terminal.SessionInfo{ID: "a", BytesOut: 100, Attached: true}
	m.TerminalStarted(a)
	live = []terminal.SessionInfo{a}
	if got := out(); got != 100 {
		t.Fatalf("live session: %v, want 100", got)
	}
	a.BytesOut = 250
	live = []terminal.SessionInfo{a}
	if got := out(); got != 250 {
		t.Fatalf("after more output: %v", got)
	}
	a.BytesOut = 300
	m.TerminalEnded(a, nil) // ends while a stale list still shows it
	if got := out(); got != 300 {
		t.Fatalf("ended with a stale list: %v, want 300", got)
	}
	live = nil
	if got := out(); got != 300 {
		t.Fatalf("after the end: %v, want 300", got)
	}
	if got := testutil.ToFloat64(m.termEnded.WithLabelValues(EndExit)); got != 1 {
		t.Fatalf("ended exit = %v", got)
	}
	var nilM *Metrics // every hook is safe on nil
	nilM.TerminalStarted(a)
	nilM.TerminalEnded(a, nil)
	nilM.ObserveDial(0, nil)
	nilM.FileTransfer(Upload, 1, 0, nil)
	nilM.DeployJob(false, nil)
	nilM.SignIn(SignInSuccess)
	nilM.UpgradeRefused(RefusedOrigin)
}

// gathered reads one sample from the registry: the metric name and the value of its
// only label.
func gathered(t *testing.T, m *Metrics, name, label string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			if lp := s.GetLabel(); len(lp) == 1 && lp[0].GetValue() == label {
				if s.Counter != nil {
					return s.Counter.GetValue()
				}
				return s.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}
