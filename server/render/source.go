package render

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
)

// Source is what a Hub renders from: every stored prefix's effective view
// (policy.Entry, built with policy.EntryOf) and the geo networks. The
// in-memory index implements it; StoreSource adapts the store until then.
type Source interface {
	// Snapshot returns an immutable view of the current facts. withGeo says
	// whether the caller needs geo networks (a source may leave them out
	// otherwise). A source held in memory never fails.
	Snapshot(ctx context.Context, withGeo bool) (FactSnapshot, error)
	// Changed returns a channel closed at the next change of the facts
	// after the call. A nil channel means the source does not announce
	// changes; the hub then relies on the store's change notifications.
	Changed() <-chan struct{}
}

// FactSnapshot is an immutable view of a Source at one generation. Its
// methods are safe for concurrent use and return facts the caller must not
// modify (Facts.Lists is nil; the caller sets it on a copy of the struct).
type FactSnapshot interface {
	// Gen is the generation: it grows with every change of the facts.
	Gen() uint64
	// Facts returns every entry and, when withGeo, every geo network.
	Facts(withGeo bool) *policy.Facts
	// SpanFacts returns the entries and (when withGeo) geo networks inside
	// span, plus the most specific entry and the most specific geo network
	// containing span (span itself included), which is what
	// policy.CompileSpan needs.
	SpanFacts(span netip.Prefix, withGeo bool) *policy.Facts
	// ChangedSince reports what changed between generation gen and this
	// snapshot: spans are stored prefixes whose assertions changed (added,
	// removed, expired or altered); every address whose effective view
	// changed lies inside one of them. geoChanged says the geo networks
	// changed. ok is false when the source cannot tell (gen is too old or
	// from another source): the caller must compile in full.
	ChangedSince(gen uint64) (spans []netip.Prefix, geoChanged, ok bool)
}

// StoreSource adapts the store to a Source: every Snapshot loads all facts
// from PostgreSQL (the store resolves each stored prefix through the one
// resolver) and cannot tell what changed, so every render is a full compile.
// It announces nothing: the hub's store listener triggers recomputes.
type StoreSource struct {
	st  *store.Store
	now func() time.Time
	gen atomic.Uint64
}

// NewStoreSource returns a Source that loads facts from st as of now().
func NewStoreSource(st *store.Store, now func() time.Time) *StoreSource {
	return &StoreSource{st: st, now: now}
}

// Snapshot loads the facts (with geo networks only when withGeo).
func (s *StoreSource) Snapshot(ctx context.Context, withGeo bool) (FactSnapshot, error) {
	load := s.st.FactsWithoutGeo
	if withGeo {
		load = s.st.Facts
	}
	f, err := load(ctx, s.now())
	if err != nil {
		return nil, fmt.Errorf("render: load facts: %w", err)
	}
	return &loadedSnapshot{facts: f, gen: s.gen.Add(1)}, nil
}

// Changed returns nil: the store's notifications drive the hub.
func (s *StoreSource) Changed() <-chan struct{} { return nil }

// loadedSnapshot is a snapshot loaded from the store.
type loadedSnapshot struct {
	facts *policy.Facts
	gen   uint64
}

func (l *loadedSnapshot) Gen() uint64 { return l.gen }

func (l *loadedSnapshot) Facts(withGeo bool) *policy.Facts {
	f := &policy.Facts{Entries: l.facts.Entries}
	if withGeo {
		f.Geo = l.facts.Geo
	}
	return f
}

// SpanFacts filters the loaded facts; the hub never calls it on a store
// snapshot (ChangedSince always asks for a full compile), but it is exact.
func (l *loadedSnapshot) SpanFacts(span netip.Prefix, withGeo bool) *policy.Facts {
	f := l.Facts(withGeo)
	return SpanOf(f.Entries, f.Geo, span)
}

func (l *loadedSnapshot) ChangedSince(uint64) ([]netip.Prefix, bool, bool) { return nil, false, false }

// SpanOf selects from entries and geo nets what FactSnapshot.SpanFacts
// returns for span, by a scan of both lists (an index answers it from its
// trie instead).
func SpanOf(entries []policy.Entry, geo []policy.GeoNet, span netip.Prefix) *policy.Facts {
	span = policy.CanonicalPrefix(span)
	out := &policy.Facts{}
	outerE, outerG := -1, -1
	for i, e := range entries {
		p := policy.CanonicalPrefix(e.Prefix)
		switch {
		case p.Bits() > span.Bits() && span.Contains(p.Addr()):
			out.Entries = append(out.Entries, e)
		case p.Bits() <= span.Bits() && p.Contains(span.Addr()) && (outerE < 0 || p.Bits() >= entries[outerE].Prefix.Bits()):
			outerE = i
		}
	}
	if outerE >= 0 {
		// Entries on the same prefix are merged by the compiler: keep them all.
		for _, e := range entries {
			if policy.CanonicalPrefix(e.Prefix) == policy.CanonicalPrefix(entries[outerE].Prefix) {
				out.Entries = append(out.Entries, e)
			}
		}
	}
	for i, g := range geo {
		p := policy.CanonicalPrefix(g.Prefix)
		switch {
		case p.Bits() > span.Bits() && span.Contains(p.Addr()):
			out.Geo = append(out.Geo, g)
		case p.Bits() <= span.Bits() && p.Contains(span.Addr()) && (outerG < 0 || p.Bits() >= geo[outerG].Prefix.Bits()):
			outerG = i
		}
	}
	if outerG >= 0 {
		out.Geo = append(out.Geo, geo[outerG])
	}
	return out
}
