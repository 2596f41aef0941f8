package api

import (
	"context"
	"time"
)

// Limiter bounds how many heavy operations (x-muninn-heavy: search and
// exports) run at once; the contract takes a turn before the handler runs.
type Limiter struct {
	slots chan struct{}
	wait  time.Duration
}

// NewLimiter returns a Limiter of n turns at once, a caller waiting up to
// wait for one.
func NewLimiter(n int, wait time.Duration) *Limiter {
	if n <= 0 {
		n = 1
	}
	return &Limiter{slots: make(chan struct{}, n), wait: wait}
}

// Acquire takes a turn and returns its release, or false when none freed up
// within the wait (or ctx ended).
func (l *Limiter) Acquire(ctx context.Context) (release func(), ok bool) {
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, true
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, true
	case <-ctx.Done():
	case <-t.C:
	}
	return nil, false
}
