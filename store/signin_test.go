package store_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// TestReserveAttemptIsAtomic: 50 attempts on one key at once, with 5 free attempts:
// exactly 6 pass (the five free ones and the one that starts the first wait), the
// rest are told to wait. A read-then-write count (issue 12) let all of them through.
func TestReserveAttemptIsAtomic(t *testing.T) {
	st := openTest(t)
	p := store.ThrottlePolicy{Budget: 5, Base: time.Second, Max: time.Minute, Reset: 15 * time.Minute}
	now := time.Now()
	var passed atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait, err := st.ReserveAttempt(context.Background(), "account:alice", p, now)
			if err != nil {
				t.Error(err)
				return
			}
			if wait == 0 {
				passed.Add(1)
			} else if wait > time.Second {
				t.Errorf("wait %v, want at most 1s", wait)
			}
		}()
	}
	wg.Wait()
	if n := passed.Load(); n != 6 {
		t.Fatalf("%d attempts passed, want 6", n)
	}
}

func TestThrottleDelaysAndReset(t *testing.T) {
	p := store.ThrottlePolicy{Budget: 2, Base: time.Second, Max: 10 * time.Second, Reset: time.Minute}
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	st := openTest(t)
	ctx := context.Background()
	now := time.Now()
	for range 4 { // 0, 0, then 1 s, then 2 s of wait
		wait, err := st.ReserveAttempt(ctx, "k", p, now)
		if err != nil || wait != 0 {
			t.Fatalf("reserve: %v %v", wait, err)
		}
		now = now.Add(p.Delay(3) + p.Delay(4))
	}
	ts, err := st.ListThrottles(ctx, now.Add(-time.Hour))
	if err != nil || len(ts) != 1 || ts[0].Failures != 4 {
		t.Fatalf("throttles %+v %v", ts, err)
	}
	// Quiet for longer than Reset: the count starts over.
	now = now.Add(2 * time.Minute)
	if wait, _ := st.ReserveAttempt(ctx, "k", p, now); wait != 0 {
		t.Fatalf("after a quiet spell: wait %v", wait)
	}
	ts, _ = st.ListThrottles(ctx, now.Add(-time.Hour))
	if len(ts) != 1 || ts[0].Failures != 1 {
		t.Fatalf("after reset: %+v", ts)
	}
	if err := st.ClearThrottle(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if ts, _ := st.ListThrottles(ctx, now.Add(-time.Hour)); len(ts) != 0 {
		t.Fatalf("cleared throttle listed: %+v", ts)
	}
}
