package store

import "sync"

// ConcurrentMerges makes s's ingest aggregator run merges side by side
// whatever they insert, and returns a channel closed once two merges with
// batches run at once.
func ConcurrentMerges(s *Store) <-chan struct{} {
	a := s.agg
	a.mu.Lock()
	defer a.mu.Unlock()
	a.alwaysConcurrent = true
	a.concurrent = make(chan struct{})
	return a.concurrent
}

// IdlePassHook has the next merge worker that finds nothing to merge run
// idle before it leaves (only once), and returns a channel that gets a
// value each time a worker leaves waiting batches to a running merge; Kick
// wakes a worker.
func IdlePassHook(s *Store, idle func()) <-chan struct{} {
	a := s.agg
	a.mu.Lock()
	defer a.mu.Unlock()
	var once sync.Once
	a.idlePass = func() { once.Do(idle) }
	a.backedOff = make(chan struct{}, 16)
	return a.backedOff
}

// Kick wakes one of s's merge workers.
func Kick(s *Store) {
	select {
	case s.agg.kick <- struct{}{}:
	default:
	}
}
