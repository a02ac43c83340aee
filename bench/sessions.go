package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// OpenIdle opens n terminals on ep, parallel at most par at a time, each
// returned once its shell has printed its prompt (and that is acked).
func OpenIdle(ctx context.Context, ep Endpoint, n, par int) ([]*Term, error) {
	terms := make([]*Term, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t, err := ep.Connect(ctx)
			if err != nil {
				errs <- err
				return
			}
			terms[i] = t
			if err := waitOutput(ctx, t); err != nil {
				errs <- err
				return
			}
			errs <- t.AckAll()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return terms, err
		}
	}
	return terms, nil
}

// waitOutput waits until t has received something (the prompt).
func waitOutput(ctx context.Context, t *Term) error {
	got := make(chan struct{}, 1)
	t.SetOutput(func([]byte) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	defer t.SetOutput(nil)
	if t.Received() > 0 {
		return nil
	}
	select {
	case <-got:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("no prompt within 15s")
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// TypingResult is what Typing measured.
type TypingResult struct {
	Latencies []time.Duration
	Sent      int
	Lost      int // keystrokes whose echo never came
}

// Typing makes every shell (each already in StartCat) type one byte every
// 1/keysPerSec, each on its own random phase, for d; every echo's latency
// is measured from its own keystroke (cat echoes in order), whether or not
// earlier ones have come back, as a person types without waiting.
func Typing(ctx context.Context, shells []Shell, keysPerSec int, d time.Duration) TypingResult {
	interval := time.Second / time.Duration(keysPerSec)
	var (
		mu  sync.Mutex
		res TypingResult
		wg  sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for _, sh := range shells {
		wg.Go(func() {
			var (
				qmu     sync.Mutex
				pending []time.Time
				lat     []time.Duration
				arrived = make(chan struct{}, 1)
			)
			sh.SetOutput(func(p []byte) {
				now := time.Now()
				qmu.Lock()
				for range p {
					if len(pending) > 0 {
						lat = append(lat, now.Sub(pending[0]))
						pending = pending[1:]
					}
				}
				qmu.Unlock()
				select {
				case arrived <- struct{}{}:
				default:
				}
			})
			defer sh.SetOutput(nil)
			sent := 0
			next := time.Now().Add(rand.N(interval))
			timer := time.NewTimer(time.Until(next))
			defer timer.Stop()
		typing:
			for {
				select {
				case <-timer.C:
				case <-ctx.Done():
					break typing
				}
				if time.Now().After(stop) {
					break
				}
				qmu.Lock()
				pending = append(pending, time.Now())
				qmu.Unlock()
				if err := sh.Type([]byte{'x'}); err != nil {
					break
				}
				sent++
				next = next.Add(interval)
				timer.Reset(time.Until(next))
			}
			// Give the last echoes a moment to arrive.
			deadline := time.After(3 * time.Second)
		drain:
			for {
				qmu.Lock()
				left := len(pending)
				qmu.Unlock()
				if left == 0 {
					break
				}
				select {
				case <-arrived:
				case <-deadline:
					break drain
				}
			}
			qmu.Lock()
			defer qmu.Unlock()
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			res.Sent += sent
			res.Lost += len(pending)
			mu.Unlock()
		})
	}
	wg.Wait()
	return res
}
