package jobs_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// goneProcessPID is the PID of a process that has exited.
func goneProcessPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestWorkerReclaimsJobsOfAGoneProcess: a job claimed (two-minute lease) by a worker
// whose process has gone, or whose heartbeat stopped, is run again by a worker that
// starts, within seconds and not after the lease; a job of a worker that is alive
// stays its own.
func TestWorkerReclaimsJobsOfAGoneProcess(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name    string
		row     func(now time.Time) store.WorkerRow
		reclaim bool
	}{
		{"process gone from this host", func(now time.Time) store.WorkerRow {
			return store.WorkerRow{ID: "crashed", Host: host, PID: goneProcessPID(t), StartedAt: now, HeartbeatAt: now}
		}, true},
		{"heartbeat stopped on another host", func(now time.Time) store.WorkerRow {
			return store.WorkerRow{ID: "silent", Host: "elsewhere", PID: 1, StartedAt: now, HeartbeatAt: now.Add(-time.Minute)}
		}, true},
		{"alive on another host", func(now time.Time) store.WorkerRow {
			return store.WorkerRow{ID: "busy", Host: "elsewhere", PID: 1, StartedAt: now, HeartbeatAt: now}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			row := tc.row(f.now)
			if err := f.st.HeartbeatWorker(ctx, &row); err != nil {
				t.Fatal(err)
			}
			if _, err := f.st.ClaimDeployment(ctx, f.now, 2*time.Minute, 8, row.ID+".job"); err != nil {
				t.Fatal(err)
			}
			d := &fakeDeployer{}
			w := f.worker(d) // its clock stays at f.now: the lease never runs out
			w.Heartbeat = 50 * time.Millisecond
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); w.Run(runCtx) }()
			deadline := time.Now().Add(5 * time.Second)
			deployed := func() bool {
				d.mu.Lock()
				defer d.mu.Unlock()
				return len(d.calls) > 0
			}
			for !deployed() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			// Not reclaimed: the loop waited 5 s, a hundred heartbeats.
			stop()
			<-done
			if got := deployed(); got != tc.reclaim {
				t.Fatalf("job run again: %v, want %v", got, tc.reclaim)
			}
			workers, _ := f.st.ListWorkers(ctx)
			for _, r := range workers {
				if r.ID == row.ID && tc.reclaim {
					t.Errorf("the gone worker's row stayed: %+v", r)
				}
				if r.ID == w.ID {
					t.Errorf("a cleanly stopped worker left its row")
				}
			}
		})
	}
}
