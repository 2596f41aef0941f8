package render

import (
	"context"
	"sync"
	"sync/atomic"
)

// drainer ends parked long polls when the server shuts down: http.Server's
// Shutdown waits for active requests but never cancels them, so a bouncer's
// 30 s (or 5 min) poll would hold the process that long.
type drainer struct {
	mu     sync.Mutex
	ch     chan struct{} // made on first use, closed by Drain
	parked atomic.Int64
}

func (d *drainer) done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// Drain ends every parked long poll at once and makes later ones return at
// once: Wait returns nil and Await false, as at their deadline, so
// clients get their ordinary "nothing new" answer and poll again (another
// server, or this one after its restart). Calling it again is a no-op.
func (h *Hub) Drain() {
	d := &h.drain
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	select {
	case <-d.ch:
	default:
		close(d.ch)
	}
}

// Draining is closed once Drain has been called.
func (h *Hub) Draining() <-chan struct{} { return h.drain.done() }

// Parked is the number of long polls blocked in Wait or Await right now.
func (h *Hub) Parked() int { return int(h.drain.parked.Load()) }

// Await blocks until changed (a channel from Changed) is closed and returns
// true, or returns false when ctx ends or the hub drains first. It is the
// one place a long poll parks.
func (h *Hub) Await(ctx context.Context, changed <-chan struct{}) bool {
	h.drain.parked.Add(1)
	defer h.drain.parked.Add(-1)
	select {
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	case <-h.drain.done():
		return false
	}
}
