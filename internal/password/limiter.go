package password

import (
	"bufio"
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// ErrBusy means no memory for another hash came free within the Limiter's wait.
var ErrBusy = errors.New("password hashing is busy")

// Limiter bounds the memory that password hashing may hold at once. Each argon2id
// run takes its memory parameter in KiB from a weighted semaphore; a run that finds
// no room waits at most Wait, then fails with ErrBusy, so a burst of sign-ins is
// answered "try again" instead of growing the heap by 19 MiB per request.
type Limiter struct {
	sem    *semaphore.Weighted
	budget int64 // KiB
	// Wait is how long a hash waits for room before ErrBusy.
	Wait time.Duration

	mu          sync.Mutex
	runs        int64
	inUse, peak int64
}

// NewLimiter allows budgetKiB of hashing memory at once (at least one hash's worth).
func NewLimiter(budgetKiB int64) *Limiter {
	budgetKiB = max(budgetKiB, memoryKiB)
	return &Limiter{sem: semaphore.NewWeighted(budgetKiB), budget: budgetKiB, Wait: 2 * time.Second}
}

// DefaultLimiter sizes a Limiter from the machine: an eighth of the memory available
// to the process (GOMEMLIMIT, the cgroup limit or physical memory, the smallest),
// and no more than four hashes per CPU, since more at once only makes each slower.
func DefaultLimiter() *Limiter {
	mem := availableMemory()
	budget := mem / 8 / 1024
	budget = min(budget, int64(4*runtime.GOMAXPROCS(0))*memoryKiB)
	return NewLimiter(budget)
}

// availableMemory is the smallest known bound on the process's memory, in bytes.
func availableMemory() int64 {
	limit := int64(1) << 62
	if l := debug.SetMemoryLimit(-1); l > 0 {
		limit = min(limit, l)
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			limit = min(limit, n)
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					limit = min(limit, n*1024)
				}
				break
			}
		}
	}
	if limit == int64(1)<<62 {
		return 1 << 30 // nothing known: assume 1 GiB
	}
	return limit
}

// acquire takes room for a hash of kib KiB.
func (l *Limiter) acquire(ctx context.Context, kib int64) (func(), error) {
	kib = min(max(kib, 1), l.budget)
	ctx, cancel := context.WithTimeout(ctx, l.Wait)
	defer cancel()
	if err := l.sem.Acquire(ctx, kib); err != nil {
		return nil, ErrBusy
	}
	l.mu.Lock()
	l.runs++
	l.inUse += kib
	l.peak = max(l.peak, l.inUse)
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.inUse -= kib
		l.mu.Unlock()
		l.sem.Release(kib)
	}, nil
}

// Verify is the package's Verify under the limiter.
func (l *Limiter) Verify(ctx context.Context, encoded, pw string) error {
	if _, err := parse(encoded); err != nil {
		return err
	}
	release, err := l.acquire(ctx, memoryOf(encoded))
	if err != nil {
		return err
	}
	defer release()
	return Verify(encoded, pw)
}

// VerifyNothing spends a Verify's time (and memory) for a username that does not exist.
func (l *Limiter) VerifyNothing(ctx context.Context, pw string) error {
	err := l.Verify(ctx, dummy, pw)
	if errors.Is(err, ErrBusy) {
		return err
	}
	return nil
}

// Hash is the package's Hash under the limiter.
func (l *Limiter) Hash(ctx context.Context, pw string) (string, error) {
	release, err := l.acquire(ctx, memoryKiB)
	if err != nil {
		return "", err
	}
	defer release()
	return Hash(pw)
}

// Runs is how many hashes ran under the limiter; Peak the most memory (KiB) they held
// at once. Both are for tests and metrics.
func (l *Limiter) Runs() int64 { l.mu.Lock(); defer l.mu.Unlock(); return l.runs }
func (l *Limiter) Peak() int64 { l.mu.Lock(); defer l.mu.Unlock(); return l.peak }

// Budget is the memory (KiB) the limiter allows at once.
func (l *Limiter) Budget() int64 { return l.budget }
