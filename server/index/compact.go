package index

import (
	"net/netip"
	"slices"
	"time"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// Memory: at a million prefixes and three million assertions the index must
// stay small, so a stored prefix is a rec with its assertions as facts:
// strings interned to 32-bit ids, times as Unix microseconds (PostgreSQL's
// precision), the kind as a byte. A fact is 40 bytes; a resolve.Assertion
// with its strings and times is over 100.

// kinds maps a fact's kind byte to the assertion kind.
var kinds = [...]string{resolve.KindTag, resolve.KindClassification, resolve.KindNote, resolve.KindSuppress}

func kindByte(k string) (uint8, bool) {
	i := slices.Index(kinds[:], k)
	return uint8(i), i >= 0
}

// fact is one assertion on a stored prefix.
type fact struct {
	first, last int64 // Unix microseconds
	expires     int64 // Unix microseconds; 0: never
	source      uint32
	value       uint32
	kind        uint8
}

func (f fact) live(at int64) bool { return f.expires == 0 || f.expires > at }

// rec is one stored prefix. Recs are immutable once in a snapshot, apart from
// exp, which only the writer reads and writes.
type rec struct {
	first, last int64 // Unix microseconds
	sightings   int64
	facts       []fact
	// exp is the rec's entry in the writer's expiry heap, nil when none of
	// its facts expires in the future.
	exp *expiry
}

// exists reports whether the prefix exists for outputs at at (resolve.Prefix.Exists).
func (r *rec) exists(at int64) bool {
	if r.sightings > 0 {
		return true
	}
	for _, f := range r.facts {
		if f.live(at) {
			return true
		}
	}
	return false
}

// nextExpiry is the earliest expiry after at of the rec's facts, 0 for none.
func (r *rec) nextExpiry(at int64) int64 {
	var next int64
	for _, f := range r.facts {
		if f.expires > at && (next == 0 || f.expires < next) {
			next = f.expires
		}
	}
	return next
}

// interner maps strings to dense ids. Only the writer interns; a snapshot
// keeps the slice header of its time, and ids below its length never change,
// so readers need no lock.
type interner struct {
	ids  map[string]uint32
	strs []string
}

func newInterner() *interner { return &interner{ids: map[string]uint32{}} }

func (in *interner) id(s string) uint32 {
	if id, ok := in.ids[s]; ok {
		return id
	}
	id := uint32(len(in.strs))
	in.strs = append(in.strs, s)
	in.ids[s] = id
	return id
}

// lookup returns the id of s without interning it.
func (in *interner) lookup(s string) (uint32, bool) {
	id, ok := in.ids[s]
	return id, ok
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// slab hands out recs and fact slices carved from large blocks, so that a
// full load makes a few hundred allocations instead of two a prefix. A nil
// slab allocates each one on its own (applied changes): a block lives while
// any rec carved from it does, so the room of recs replaced by changes comes
// back at the next full load.
type slab struct {
	recs  []rec
	facts []fact
}

const slabSize = 4096

func (s *slab) rec() *rec {
	if s == nil {
		return &rec{}
	}
	if len(s.recs) == cap(s.recs) {
		s.recs = make([]rec, 0, slabSize)
	}
	s.recs = s.recs[:len(s.recs)+1]
	return &s.recs[len(s.recs)-1]
}

// factSlice returns an empty slice with capacity n; appending beyond n
// would reallocate, never overwrite a neighbour.
func (s *slab) factSlice(n int) []fact {
	if s == nil || n > slabSize/4 {
		return make([]fact, 0, n)
	}
	if cap(s.facts)-len(s.facts) < n {
		s.facts = make([]fact, 0, slabSize)
	}
	start := len(s.facts)
	s.facts = s.facts[:start+n]
	return s.facts[start : start : start+n]
}

// compact turns a loaded prefix into a rec, from sl when not nil.
func compact(in *interner, sl *slab, p resolve.Prefix) *rec {
	r := sl.rec()
	r.first, r.last, r.sightings = micros(p.FirstSeen), micros(p.LastSeen), p.Sightings
	if len(p.Assertions) > 0 {
		r.facts = sl.factSlice(len(p.Assertions))
	}
	for _, a := range p.Assertions {
		k, ok := kindByte(a.Kind)
		if !ok {
			continue // the schema allows no other kind
		}
		f := fact{first: micros(a.FirstSeen), last: micros(a.LastSeen), source: in.id(a.Source), value: in.id(a.Value), kind: k}
		if a.ExpiresAt != nil {
			f.expires = micros(*a.ExpiresAt)
		}
		r.facts = append(r.facts, f)
	}
	return r
}

// expand turns a rec back into the resolver's input.
func expand(strs []string, p netip.Prefix, r *rec) resolve.Prefix {
	out, _ := expandInto(strs, p, r, nil, nil)
	return out
}

// expandInto is expand into the given buffers (grown when too small), for
// walkers that recycle them: it returns the expiry buffer the assertions'
// ExpiresAt point into.
func expandInto(strs []string, p netip.Prefix, r *rec, as []resolve.Assertion, exps []time.Time) (resolve.Prefix, []time.Time) {
	out := resolve.Prefix{Prefix: p, FirstSeen: fromMicros(r.first), LastSeen: fromMicros(r.last), Sightings: r.sightings}
	if len(r.facts) == 0 {
		return out, exps
	}
	if cap(as) < len(r.facts) {
		as = make([]resolve.Assertion, 0, len(r.facts))
	}
	as = as[:0]
	exps = exps[:0]
	for _, f := range r.facts {
		a := resolve.Assertion{Kind: kinds[f.kind], Source: strs[f.source], Value: strs[f.value],
			FirstSeen: fromMicros(f.first), LastSeen: fromMicros(f.last)}
		if f.expires != 0 {
			if cap(exps) < len(r.facts) {
				// Sized for every fact at once, so that no append moves
				// the times the assertions point to.
				exps = make([]time.Time, 0, len(r.facts))
			}
			exps = append(exps, fromMicros(f.expires))
			a.ExpiresAt = &exps[len(exps)-1]
		}
		as = append(as, a)
	}
	out.Assertions = as
	return out, exps
}

// geoRec is one geo network.
type geoRec struct {
	asn                           uint32
	country, continent, city, org uint32
	source                        uint32
}

func compactGeo(in *interner, g store.GeoNetwork) *geoRec {
	return &geoRec{asn: uint32(g.ASN), country: in.id(g.Country), continent: in.id(g.Continent), city: in.id(g.City), org: in.id(g.ASOrg), source: in.id(g.Source)}
}
