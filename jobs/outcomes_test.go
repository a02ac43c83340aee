package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestWorkerReportsOutcomes: every job run reaches OnFinish with its kind and error
// (the deploy job metrics), and the queue counts by state follow the jobs (the queue
// depth gauge).
func TestWorkerReportsOutcomes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	d := &fakeDeployer{err: errors.New("connection refused")}
	w := f.worker(d)
	var seen []string
	w.OnFinish = func(removing bool, err error) { seen = append(seen, fmt.Sprint(removing, err != nil)) }
	counts := func() string {
		c, err := f.st.DeploymentCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(c)
	}
	if got := counts(); got != "map[pending:1]" {
		t.Fatalf("queued: %s", got)
	}
	w.RunOnce(ctx)
	if got := counts(); got != "map[failed:1]" {
		t.Fatalf("after a failure: %s", got)
	}
	d.err = nil
	f.now = f.now.Add(time.Hour) // past the retry delay
	w.RunOnce(ctx)
	f.st.DetachKey(ctx, f.stack.ID, f.key.ID, f.now)
	if got := counts(); got != "map[removing:1]" {
		t.Fatalf("after detach: %s", got)
	}
	w.RunOnce(ctx)
	if fmt.Sprint(seen) != "[false true false false true false]" {
		t.Fatalf("outcomes: %v", seen)
	}
	if got := counts(); got != "map[]" {
		t.Fatalf("after removal: %s", got)
	}
}
