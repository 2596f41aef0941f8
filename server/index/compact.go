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

// rec is one stored prefix as the arena holds it: rec[0] is its header
// (kind recHeader; first and last seen in first and last, the sighting count
// in expires, the number of assertions in source), rec[1:] its assertions.
// A rec is immutable once in a snapshot.
type rec []fact

// recHeader is the kind byte of a rec's header.
const recHeader = 0xff

func (r rec) first() int64     { return r[0].first }
func (r rec) last() int64      { return r[0].last }
func (r rec) sightings() int64 { return r[0].expires }
func (r rec) facts() []fact    { return r[1:] }

// exists reports whether the prefix exists for outputs at at (resolve.Prefix.Exists).
func (r rec) exists(at int64) bool {
	if r.sightings() > 0 {
		return true
	}
	for _, f := range r.facts() {
		if f.live(at) {
			return true
		}
	}
	return false
}

// nextExpiry is the earliest expiry after at of the rec's facts, 0 for none.
func (r rec) nextExpiry(at int64) int64 {
	var next int64
	for _, f := range r.facts() {
		if f.expires > at && (next == 0 || f.expires < next) {
			next = f.expires
		}
	}
	return next
}

// The garbage collector marks every pointer of the live heap in each cycle,
// and a serve process answers lookups while it does: at a million prefixes
// a table of pointers to recs (and recs pointing to their facts) made each
// cycle mark millions of pointers, and requests waited on it. So the tables
// hold no pointers of their own: a stored prefix's value in the prefix table
// is a recID, an index into an arena of fact blocks, which hold no pointers
// either and which the collector does not scan.

// recID is where a rec starts in an arena: chunk index in the high bits,
// offset in the chunk in the low chunkBits.
type recID uint32

const (
	chunkBits = 16
	chunkLen  = 1 << chunkBits
)

// arena stores recs in chunks of chunkLen facts (a rec longer than that
// gets a chunk of its own). It only grows: a rec replaced by a change stays
// until the next full load builds a new arena (Index.stale), because older
// snapshots may still read it. Chunks are allocated at full length and never
// resliced, and a snapshot keeps the chunk list of its time, so readers need
// no lock: the writer only writes facts beyond what any published snapshot
// refers to.
type arena struct {
	chunks [][]fact
	used   int // facts used in the last chunk
	total  int // facts allocated in all chunks
}

// alloc returns the id and the storage of a new rec of n assertions,
// header included, with the header's length set.
func (a *arena) alloc(n int) (recID, rec) {
	size := n + 1
	if size > chunkLen {
		a.chunks = append(a.chunks, make([]fact, size))
		a.used = chunkLen // the next rec starts a new chunk
	} else if len(a.chunks) == 0 || a.used+size > chunkLen {
		a.chunks = append(a.chunks, make([]fact, chunkLen))
		a.used = 0
	}
	c := len(a.chunks) - 1
	off := 0
	if size <= chunkLen {
		off = a.used
		a.used += size
	}
	a.total += size
	r := rec(a.chunks[c][off : off+size : off+size])
	r[0] = fact{kind: recHeader, source: uint32(n)}
	return recID(c<<chunkBits | off), r
}

// recAt returns the rec with id from the chunks of an arena.
func recAt(chunks [][]fact, id recID) rec {
	c := chunks[id>>chunkBits]
	off := int(id & (chunkLen - 1))
	return rec(c[off : off+1+int(c[off].source)])
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

// compact stores a loaded prefix in ar as a rec.
func compact(in *interner, ar *arena, p resolve.Prefix) (recID, rec) {
	n := 0
	for _, a := range p.Assertions {
		if _, ok := kindByte(a.Kind); ok {
			n++
		}
	}
	id, r := ar.alloc(n)
	r[0].first, r[0].last, r[0].expires = micros(p.FirstSeen), micros(p.LastSeen), p.Sightings
	i := 1
	for _, a := range p.Assertions {
		k, ok := kindByte(a.Kind)
		if !ok {
			continue // the schema allows no other kind
		}
		f := fact{first: micros(a.FirstSeen), last: micros(a.LastSeen), source: in.id(a.Source), value: in.id(a.Value), kind: k}
		if a.ExpiresAt != nil {
			f.expires = micros(*a.ExpiresAt)
		}
		r[i] = f
		i++
	}
	return id, r
}

// expand turns a rec back into the resolver's input.
func expand(strs []string, p netip.Prefix, r rec) resolve.Prefix {
	out, _ := expandInto(strs, p, r, nil, nil)
	return out
}

// expandInto is expand into the given buffers (grown when too small), for
// walkers that recycle them: it returns the expiry buffer the assertions'
// ExpiresAt point into.
func expandInto(strs []string, p netip.Prefix, r rec, as []resolve.Assertion, exps []time.Time) (resolve.Prefix, []time.Time) {
	out := resolve.Prefix{Prefix: p, FirstSeen: fromMicros(r.first()), LastSeen: fromMicros(r.last()), Sightings: r.sightings()}
	facts := r.facts()
	if len(facts) == 0 {
		return out, exps
	}
	if cap(as) < len(facts) {
		as = make([]resolve.Assertion, 0, len(facts))
	}
	as = as[:0]
	exps = exps[:0]
	for _, f := range facts {
		a := resolve.Assertion{Kind: kinds[f.kind], Source: strs[f.source], Value: strs[f.value],
			FirstSeen: fromMicros(f.first), LastSeen: fromMicros(f.last)}
		if f.expires != 0 {
			if cap(exps) < len(facts) {
				// Sized for every fact at once, so that no append moves
				// the times the assertions point to.
				exps = make([]time.Time, 0, len(facts))
			}
			exps = append(exps, fromMicros(f.expires))
			a.ExpiresAt = &exps[len(exps)-1]
		}
		as = append(as, a)
	}
	out.Assertions = as
	return out, exps
}

// geoRec is one geo network, held by value in the geo table (no pointers).
type geoRec struct {
	asn                           uint32
	country, continent, city, org uint32
	source                        uint32
}

func compactGeo(in *interner, g store.GeoNetwork) geoRec {
	return geoRec{asn: uint32(g.ASN), country: in.id(g.Country), continent: in.id(g.Continent), city: in.id(g.City), org: in.id(g.ASOrg), source: in.id(g.Source)}
}

// attempts is an address's last enrichment lookups, without pointers:
// strings interned, the time in Unix microseconds.
type attempts struct {
	n int
	a [2]attempt // one per kind (store.EnrichRDAP, store.EnrichPTR)
}

type attempt struct {
	at                 int64
	kind, outcome, err uint32
}

// compactAttempts keeps the first two of as (one per kind).
func compactAttempts(in *interner, as []store.EnrichAttempt) attempts {
	var out attempts
	for _, a := range as {
		if out.n == len(out.a) {
			break
		}
		out.a[out.n] = attempt{at: micros(a.AttemptedAt), kind: in.id(a.Kind), outcome: in.id(a.Outcome), err: in.id(a.Error)}
		out.n++
	}
	return out
}
