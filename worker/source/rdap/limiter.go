package rdap

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket: rate tokens per second, at most burst saved up.
// Waiting happens outside the lock through an injectable wait function, so
// tests observe delays on a fake clock instead of sleeping.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time
	wait  func(ctx context.Context, d time.Duration) error

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time, wait func(context.Context, time.Duration) error) *limiter {
	return &limiter{rate: rate, burst: float64(burst), tokens: float64(burst), now: now, wait: wait, last: now()}
}

// reserve takes a token and returns how long to wait before using it. The
// balance may go negative: later callers queue behind earlier reservations.
func (l *limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens = min(l.burst, l.tokens+elapsed.Seconds()*l.rate)
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

func (l *limiter) cancel() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = min(l.burst, l.tokens+1)
}

// Wait blocks until a token is available or ctx ends.
func (l *limiter) Wait(ctx context.Context) error {
	d := l.reserve()
	if d <= 0 {
		return nil
	}
	if err := l.wait(ctx, d); err != nil {
		l.cancel()
		return err
	}
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
