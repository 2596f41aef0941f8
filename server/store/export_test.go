package store

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
