package render

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/muninn/muninn/server/policy"
)

// memSource is an in-memory Source for tests and benchmarks: entries and geo
// nets by prefix, and per generation the spans that changed. It stands in
// for the index.
type memSource struct {
	mu      sync.Mutex
	snap    *memSnapshot
	changed chan struct{}
}

// memChange is what one generation changed.
type memChange struct {
	gen   uint64
	spans []netip.Prefix
	geo   bool
}

// memSnapshot is immutable once published.
type memSnapshot struct {
	gen     uint64
	entries []policy.Entry // sorted by address, then length
	geo     []policy.GeoNet
	byPfx   map[netip.Prefix]int // entry index by prefix
	geoPfx  map[netip.Prefix]int
	log     []memChange // oldest first
	first   uint64      // generations before first are not in log
}

func newMemSource(entries []policy.Entry, geo []policy.GeoNet) *memSource {
	m := &memSource{changed: make(chan struct{})}
	m.snap = buildMemSnapshot(1, entries, geo, nil, 1)
	return m
}

func buildMemSnapshot(gen uint64, entries []policy.Entry, geo []policy.GeoNet, log []memChange, first uint64) *memSnapshot {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b policy.Entry) int { return comparePrefix(a.Prefix, b.Prefix) })
	geo = slices.Clone(geo)
	slices.SortFunc(geo, func(a, b policy.GeoNet) int { return comparePrefix(a.Prefix, b.Prefix) })
	s := &memSnapshot{gen: gen, entries: entries, geo: geo, byPfx: make(map[netip.Prefix]int, len(entries)), geoPfx: map[netip.Prefix]int{}, log: log, first: first}
	for i, e := range entries {
		s.byPfx[e.Prefix] = i
	}
	for i, g := range geo {
		s.geoPfx[g.Prefix] = i
	}
	return s
}

// replace publishes a new generation with entries, geo and the spans that
// changed (geoChanged when the geo nets did).
func (m *memSource) replace(entries []policy.Entry, geo []policy.GeoNet, spans []netip.Prefix, geoChanged bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.snap
	log := append(slices.Clone(old.log), memChange{gen: old.gen + 1, spans: spans, geo: geoChanged})
	m.snap = buildMemSnapshot(old.gen+1, entries, geo, log, old.first)
	close(m.changed)
	m.changed = make(chan struct{})
}

// setEntry replaces (or with nil removes) the entry on one prefix, sharing
// nothing with the previous snapshot but the unchanged entries.
func (m *memSource) setEntry(p netip.Prefix, e *policy.Entry) {
	m.mu.Lock()
	old := m.snap
	entries := slices.Clone(old.entries)
	if i, ok := old.byPfx[p]; ok && e != nil && e.Prefix == p {
		// Same prefix, same position: the new snapshot shares the indexes.
		entries[i] = *e
		next := *old
		next.gen, next.entries = old.gen+1, entries
		next.log = append(slices.Clone(old.log), memChange{gen: old.gen + 1, spans: []netip.Prefix{p}})
		m.snap = &next
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	if i, ok := old.byPfx[p]; ok {
		if e == nil {
			entries = slices.Delete(entries, i, i+1)
		} else {
			entries[i] = *e
		}
	} else if e != nil {
		entries = append(entries, *e)
	}
	m.replace(entries, old.geo, []netip.Prefix{p}, false)
}

func (m *memSource) Snapshot(context.Context, bool) (FactSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snap, nil
}

func (m *memSource) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

func (s *memSnapshot) Gen() uint64 { return s.gen }

// Seq is the generation: the in-memory source has no change feed.
func (s *memSnapshot) Seq() int64 { return int64(s.gen) }

func (s *memSnapshot) Facts(withGeo bool) *policy.Facts {
	f := &policy.Facts{Entries: s.entries}
	if withGeo {
		f.Geo = s.geo
	}
	return f
}

// SpanFacts answers by binary search over the sorted entries (the run inside
// span is contiguous) and map look-ups of the prefixes containing span.
func (s *memSnapshot) SpanFacts(span netip.Prefix, withGeo bool) *policy.Facts {
	f := &policy.Facts{Entries: inside(s.entries, span, func(e policy.Entry) netip.Prefix { return e.Prefix })}
	if e, ok := mostSpecific(s.byPfx, span); ok {
		f.Entries = append(slices.Clone(f.Entries), s.entries[e])
	}
	if withGeo {
		f.Geo = inside(s.geo, span, func(g policy.GeoNet) netip.Prefix { return g.Prefix })
		if g, ok := mostSpecific(s.geoPfx, span); ok {
			f.Geo = append(slices.Clone(f.Geo), s.geo[g])
		}
	}
	return f
}

// inside returns the items of sorted xs strictly inside span.
func inside[T any](xs []T, span netip.Prefix, pfx func(T) netip.Prefix) []T {
	lo, _ := slices.BinarySearchFunc(xs, span, func(x T, s netip.Prefix) int {
		p := pfx(x)
		return cmp.Or(p.Addr().Compare(s.Addr()), cmp.Compare(p.Bits(), s.Bits()+1))
	})
	hi := lo
	for hi < len(xs) && span.Contains(pfx(xs[hi]).Addr()) {
		hi++
	}
	return xs[lo:hi]
}

// mostSpecific returns the index of the longest prefix in m containing span.
func mostSpecific(m map[netip.Prefix]int, span netip.Prefix) (int, bool) {
	for b := span.Bits(); b >= 0; b-- {
		if i, ok := m[netip.PrefixFrom(span.Addr(), b).Masked()]; ok {
			return i, true
		}
	}
	return 0, false
}

func (s *memSnapshot) ChangedSince(gen uint64) ([]netip.Prefix, bool, bool) {
	if gen < s.first || gen > s.gen {
		return nil, false, false
	}
	var spans []netip.Prefix
	geo := false
	for _, c := range s.log {
		if c.gen > gen {
			spans = append(spans, c.spans...)
			geo = geo || c.geo
		}
	}
	return spans, geo, true
}
