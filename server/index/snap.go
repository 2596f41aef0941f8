package index

import (
	"cmp"
	"iter"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gaissmai/bart"
	"go4.org/netipx"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// Snap is an immutable, consistent snapshot of the index: every stored prefix
// with its live assertions and every geo network as of one applied change
// sequence, with views resolved at one instant ([Snap.At]). Readers may hold
// it as long as they like and share it between goroutines; no reader ever sees
// a half-applied batch.
type Snap struct {
	gen   uint64
	seq   int64
	at    time.Time
	atUS  int64
	pfx   *bart.Table[recID]
	geo   *bart.Table[geoRec]
	rdap  *bart.Table[*store.RDAPFacts]
	hosts *bart.Table[[]store.Hostname]
	// attempts holds each address's last enrichment lookups.
	attempts *bart.Table[attempts]
	// pdns holds each address's passive DNS names (store.MaxPassiveDNS
	// newest).
	pdns *bart.Table[[]store.PassiveDNS]
	// recs are the arena chunks the prefix table's ids point into.
	recs [][]fact
	strs []string
	// hist holds the changes that led to this snapshot, one per generation,
	// the last one for gen; the history reaches back to histFloor.
	hist      []histEntry
	histFloor uint64
	// tags counts, once per snapshot, the prefixes carrying each tag.
	tags tagCounts
}

// tagCounts is the lazily computed result of Snap.TagCounts.
type tagCounts struct {
	once sync.Once
	m    map[string]int64
}

// histEntry is what one generation changed.
type histEntry struct {
	gen   uint64
	spans []netip.Prefix
	geo   bool
	full  bool
}

// rec returns the stored prefix with id.
func (s *Snap) rec(id recID) rec { return recAt(s.recs, id) }

// Gen is the snapshot's local generation: it increases by one for every
// change this process applied and every instant at which an assertion
// expired. Generations are local to a process.
func (s *Snap) Gen() uint64 { return s.gen }

// Seq is the change feed sequence the snapshot includes (store.Change.Seq).
func (s *Snap) Seq() int64 { return s.seq }

// At is the instant at which the snapshot's views are resolved: an assertion
// is live in the snapshot when it does not expire at or before At.
func (s *Snap) At() time.Time { return s.at }

// Len is the number of stored prefixes held, ghosts included.
func (s *Snap) Len() int { return s.pfx.Size() }

// GeoLen is the number of geo networks held.
func (s *Snap) GeoLen() int { return s.geo.Size() }

// Lookup returns the effective view of addr with full provenance (tag facts
// with source, prefix and times, suppressed tags, the containing prefixes),
// without explanation steps: GET /ips/{ip}. False when no existing stored
// prefix contains addr. An IPv4-mapped IPv6 address is looked up as IPv4.
func (s *Snap) Lookup(addr netip.Addr) (resolve.View, bool) {
	addr = addr.Unmap()
	return s.Network(netip.PrefixFrom(addr, addr.BitLen()))
}

// Network returns the effective view of p (masked to its bits) like Lookup:
// GET /networks/{cidr}. False when no existing stored prefix contains p.
func (s *Snap) Network(p netip.Prefix) (resolve.View, bool) {
	return s.resolve(p, resolve.Effective)
}

// Explain is Network with the resolver's explanation steps (resolve.Resolve).
func (s *Snap) Explain(p netip.Prefix) (resolve.View, bool) {
	return s.resolve(p, resolve.Resolve)
}

func (s *Snap) resolve(p netip.Prefix, fn func(netip.Prefix, []resolve.Prefix, time.Time) resolve.View) (resolve.View, bool) {
	v, _, ok := s.resolveChain(p, fn)
	return v, ok
}

// resolveChain is resolve that also returns the chain of stored prefixes
// containing p, most specific first.
func (s *Snap) resolveChain(p netip.Prefix, fn func(netip.Prefix, []resolve.Prefix, time.Time) resolve.View) (resolve.View, []resolve.Prefix, bool) {
	if !p.IsValid() {
		return resolve.View{Classification: resolve.Unknown}, nil, false
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
	var chain []resolve.Prefix
	for q, id := range s.pfx.Supernets(p) {
		chain = append(chain, expand(s.strs, q, s.rec(id)))
	}
	v := fn(p, chain, s.at)
	return v, chain, v.Exists()
}

// NetworkWithPrefixes is Network that also returns what Containing returns,
// from the same walk of the table (GET /ips needs both).
func (s *Snap) NetworkWithPrefixes(p netip.Prefix) (resolve.View, []resolve.Prefix, bool) {
	v, chain, ok := s.resolveChain(p, resolve.Effective)
	return v, s.existing(chain), ok
}

// existing keeps the prefixes of chain that exist at At, each with only its
// assertions live at At (in place).
func (s *Snap) existing(chain []resolve.Prefix) []resolve.Prefix {
	chain = slices.DeleteFunc(chain, func(e resolve.Prefix) bool { return !e.Exists(s.at) })
	for i := range chain {
		chain[i].Assertions = slices.DeleteFunc(chain[i].Assertions, func(a resolve.Assertion) bool {
			return a.ExpiresAt != nil && !a.ExpiresAt.After(s.at)
		})
	}
	return chain
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

// RDAP returns the most specific stored RDAP network containing p.
func (s *Snap) RDAP(p netip.Prefix) (store.RDAPFacts, bool) {
	if !p.IsValid() {
		return store.RDAPFacts{}, false
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
	_, r, ok := s.rdap.LookupPrefixLPM(p)
	if !ok {
		return store.RDAPFacts{}, false
	}
	return *r, true
}

// Hostnames returns the names of addr, newest first then by name, at most
// 100. The slice is shared: callers must not modify it.
func (s *Snap) Hostnames(addr netip.Addr) []store.Hostname {
	addr = addr.Unmap()
	hs, _ := s.hosts.Get(netip.PrefixFrom(addr, addr.BitLen()))
	return hs
}

// PassiveDNS returns the names addr was seen answering for in DNS answers
// (dnsmasq, Zeek dns.log), newest first then by name, at most
// store.MaxPassiveDNS. The slice is shared: callers must not modify it.
func (s *Snap) PassiveDNS(addr netip.Addr) []store.PassiveDNS {
	addr = addr.Unmap()
	ps, _ := s.pdns.Get(netip.PrefixFrom(addr, addr.BitLen()))
	return ps
}

// PassiveDNSNames returns the names of PassiveDNS(addr) in its order: the
// value the exports write (nil when it has none).
func (s *Snap) PassiveDNSNames(addr netip.Addr) []string {
	ps := s.PassiveDNS(addr)
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

// EnrichAttempts returns the last lookup attempt of each kind for addr
// (store.EnrichAttempts' order: rdap before ptr); none when nothing was
// tried.
func (s *Snap) EnrichAttempts(addr netip.Addr) []store.EnrichAttempt {
	addr = addr.Unmap()
	a, ok := s.attempts.Get(netip.PrefixFrom(addr, addr.BitLen()))
	if !ok {
		return nil
	}
	out := make([]store.EnrichAttempt, a.n)
	for i := range out {
		t := a.a[i]
		out[i] = store.EnrichAttempt{Kind: s.strs[t.kind], AttemptedAt: fromMicros(t.at), Outcome: s.strs[t.outcome], Error: s.strs[t.err]}
	}
	return out
}

// RDNS returns the name exports show for addr: the newest PTR name, else
// the newest name of any source; "" when it has none.
func (s *Snap) RDNS(addr netip.Addr) string {
	hs := s.Hostnames(addr)
	for _, h := range hs {
		if h.Source == "ptr" {
			return h.Name
		}
	}
	if len(hs) > 0 {
		return hs[0].Name
	}
	return ""
}

// Stored reports whether p is a stored prefix that exists (has a live
// assertion or a sighting).
func (s *Snap) Stored(p netip.Prefix) bool {
	id, ok := s.pfx.Get(p)
	return ok && s.rec(id).exists(s.atUS)
}

// StoredPrefixes returns every existing stored prefix in address order
// (address, then bits, IPv4 first), without resolving views: the owners of
// the CrowdSec decisions of a render (render.Snapshot.Decisions).
func (s *Snap) StoredPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, s.pfx.Size())
	for p, r := range s.ordered(netip.Prefix{}, netip.Prefix{}) {
		if r.exists(s.atUS) {
			out = append(out, p)
		}
	}
	return out
}

// walker resolves stored prefixes visited in address order (address, then
// bits: a prefix before the prefixes inside it), keeping the chain of the
// stored prefixes containing the current one.
type walker struct {
	s     *Snap
	stack []resolve.Prefix
	// With recycle, the buffers of popped prefixes are reused: only for
	// walks whose results keep no pointer into them (entries keep strings,
	// which the snapshot owns).
	recycle bool
	exps    [][]time.Time // the expiry buffer of each stack entry
	free    []buffers
}

type buffers struct {
	as   []resolve.Assertion
	exps []time.Time
}

func contains(a, b netip.Prefix) bool { return a.Bits() <= b.Bits() && a.Contains(b.Addr()) }

// visit returns the effective view of stored prefix p; false when p does not
// exist (it still joins the chain: the resolver skips it).
func (w *walker) visit(p netip.Prefix, r rec) (resolve.View, bool) {
	if !w.push(p, r) {
		return resolve.View{}, false
	}
	return resolve.Effective(p, w.stack, w.s.at), true
}

// entry is visit for the compiler: the entry of stored prefix p.
func (w *walker) entry(p netip.Prefix, r rec) (policy.Entry, bool) {
	if !w.push(p, r) {
		return policy.Entry{}, false
	}
	sum := resolve.Summarize(p, w.stack, w.s.at)
	return policy.Entry{Prefix: p, Tags: sum.Tags, Classification: sum.Classification, Sources: sum.Sources}, true
}

// push makes the chain that of p and reports whether p exists.
func (w *walker) push(p netip.Prefix, r rec) bool {
	for len(w.stack) > 0 && !contains(w.stack[len(w.stack)-1].Prefix, p) {
		top := len(w.stack) - 1
		if w.recycle {
			w.free = append(w.free, buffers{w.stack[top].Assertions, w.exps[top]})
			w.exps = w.exps[:top]
		}
		w.stack = w.stack[:top]
	}
	if len(w.stack) == 0 {
		// The first prefix visited, or one no visited prefix contains: the
		// chain comes from the table (least specific first).
		for q, id := range w.s.pfx.Supernets(p) {
			if q != p {
				w.add(q, w.s.rec(id))
			}
		}
		slices.Reverse(w.stack)
		slices.Reverse(w.exps)
	}
	w.add(p, r)
	return r.exists(w.s.atUS)
}

// add pushes stored prefix p on the chain.
func (w *walker) add(p netip.Prefix, r rec) {
	if !w.recycle {
		w.stack = append(w.stack, expand(w.s.strs, p, r))
		return
	}
	var b buffers
	if n := len(w.free); n > 0 {
		b, w.free = w.free[n-1], w.free[:n-1]
	}
	e, exps := expandInto(w.s.strs, p, r, b.as, b.exps)
	w.stack = append(w.stack, e)
	w.exps = append(w.exps, exps)
}

// ordered yields the stored prefixes after the cursor after (all when
// invalid) and inside within (all when invalid) in address order: address,
// then bits, IPv4 before IPv6.
func (s *Snap) ordered(after, within netip.Prefix) iter.Seq2[netip.Prefix, rec] {
	return func(yield func(netip.Prefix, rec) bool) {
		var blocks []netip.Prefix
		if within.IsValid() {
			blocks = []netip.Prefix{within.Masked()}
		} else {
			blocks = []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
		}
		for _, b := range blocks {
			var subs []netip.Prefix
			switch {
			case !after.IsValid() || (after.Addr().Is4() && !b.Addr().Is4()):
				subs = []netip.Prefix{b} // the whole block comes after the cursor
			case after.Addr().Is4() != b.Addr().Is4():
				continue // an IPv4 block before an IPv6 cursor
			default:
				// First the prefixes inside the cursor at its own address…
				for q, id := range s.pfx.Subnets(after) {
					if q.Addr() != after.Addr() {
						break
					}
					if q.Bits() > after.Bits() && contains(b, q) {
						if !yield(q, s.rec(id)) {
							return
						}
					}
				}
				// …then every prefix at a later address inside the block.
				start, end := after.Addr().Next(), netipx.PrefixLastIP(b)
				if !start.IsValid() {
					continue
				}
				if start.Less(b.Addr()) {
					start = b.Addr()
				}
				if end.Less(start) {
					continue
				}
				subs = netipx.IPRangeFrom(start, end).Prefixes()
			}
			for _, sub := range subs {
				for q, id := range s.pfx.Subnets(sub) {
					if !yield(q, s.rec(id)) {
						return
					}
				}
			}
		}
	}
}

// Walk calls fn with every existing stored prefix and its effective view (no
// explanation steps), in address order (address, then bits, IPv4 first),
// until fn returns false. This is what exports write: each row is the
// prefix's effective view, so a longest-prefix match over the rows (a
// ClickHouse IP_TRIE dictionary) answers what Lookup answers.
func (s *Snap) Walk(fn func(netip.Prefix, resolve.View) bool) {
	s.walk(netip.Prefix{}, netip.Prefix{}, fn)
}

func (s *Snap) walk(after, within netip.Prefix, fn func(netip.Prefix, resolve.View) bool) {
	w := walker{s: s}
	for p, r := range s.ordered(after, within) {
		v, ok := w.visit(p, r)
		if ok && !fn(p, v) {
			return
		}
	}
}

// Filter selects effective views in Search; zero fields select everything.
type Filter struct {
	// Tag is an effective tag the view must have.
	Tag string
	// Classification is the effective classification the view must have.
	Classification string
	// Source is a source of a live assertion in the view; a trailing "*"
	// matches every source starting with what precedes it ("feed:*").
	Source string
	// Within restricts the rows to stored prefixes inside it.
	Within netip.Prefix
	// SeenSince keeps views last seen at or after it.
	SeenSince time.Time
}

func (f Filter) match(v resolve.View) bool {
	if f.Tag != "" && !v.HasTag(f.Tag) {
		return false
	}
	if f.Classification != "" && v.Classification != f.Classification {
		return false
	}
	if f.Source != "" && !slices.ContainsFunc(v.Sources, func(s string) bool { return resolve.SourceMatches(f.Source, s) }) {
		return false
	}
	return f.SeenSince.IsZero() || !v.LastSeen.Before(f.SeenSince)
}

// Row is one stored prefix with its effective view.
type Row struct {
	Prefix netip.Prefix
	View   resolve.View
}

// Search returns up to limit existing stored prefixes whose effective views
// match f, in address order, starting after the cursor after (the Prefix of
// the last row of the previous page; invalid for the first page). next is
// the cursor of the following page, invalid when there is none.
func (s *Snap) Search(f Filter, after netip.Prefix, limit int) (rows []Row, next netip.Prefix) {
	if limit <= 0 {
		return nil, netip.Prefix{}
	}
	s.walk(after, f.Within, func(p netip.Prefix, v resolve.View) bool {
		if !f.match(v) {
			return true
		}
		if len(rows) == limit {
			next = rows[limit-1].Prefix
			return false
		}
		rows = append(rows, Row{Prefix: p, View: v})
		return true
	})
	return rows, next
}

// Entries returns the facts of a full compilation: the entry of every
// existing stored prefix (its effective view, see Entry), sorted by address
// then bits, and, with withGeo, every geo network in the same order.
func (s *Snap) Entries(withGeo bool) *policy.Facts {
	f := &policy.Facts{Entries: s.entries(netip.Prefix{}, 0)}
	if withGeo {
		f.Geo = make([]policy.GeoNet, 0, s.geo.Size())
		for p, g := range s.geo.AllSorted() {
			f.Geo = append(f.Geo, s.geoNet(p, g))
		}
	}
	return f
}

// SpanFacts returns the facts of a compilation of span: the entries of every
// existing stored prefix inside span, preceded by the entry of the most
// specific existing stored prefix that contains span (span excluded), if any;
// with withGeo, likewise the geo networks inside span preceded by the most
// specific one containing it. Both lists are sorted by address then bits.
func (s *Snap) SpanFacts(span netip.Prefix, withGeo bool) *policy.Facts {
	span = span.Masked()
	f := &policy.Facts{}
	for q, id := range s.pfx.Supernets(span) {
		if q != span && s.rec(id).exists(s.atUS) {
			if v, ok := s.Network(q); ok {
				f.Entries = append(f.Entries, policy.EntryOf(q, v))
			}
			break
		}
	}
	f.Entries = append(f.Entries, s.entries(span, 0)...)
	if withGeo {
		for q, g := range s.geo.Supernets(span) {
			if q != span {
				f.Geo = append(f.Geo, s.geoNet(q, g))
				break
			}
		}
		for q, g := range s.geo.Subnets(span) {
			f.Geo = append(f.Geo, s.geoNet(q, g))
		}
	}
	return f
}

func (s *Snap) geoNet(p netip.Prefix, g geoRec) policy.GeoNet {
	return policy.GeoNet{Prefix: p, Country: s.strs[g.country], Continent: s.strs[g.continent], ASN: g.asn, Org: s.strs[g.org]}
}

// Geo returns the most specific geo network containing addr, with its city.
func (s *Snap) Geo(addr netip.Addr) (GeoNet, bool) {
	return s.GeoNetwork(netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
}

// GeoNetwork returns the most specific geo network containing p (p itself
// included), with its city.
func (s *Snap) GeoNetwork(p netip.Prefix) (GeoNet, bool) {
	if !p.IsValid() {
		return GeoNet{}, false
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
	p, g, ok := s.geo.LookupPrefixLPM(p)
	if !ok {
		return GeoNet{}, false
	}
	return GeoNet{GeoNet: s.geoNet(p, g), City: s.strs[g.city], Source: s.strs[g.source]}, true
}

// GeoNet is a geo network with its city and the database it came from.
type GeoNet struct {
	policy.GeoNet
	City   string
	Source string
}

// ChangedSince returns what changed between generation gen and this
// snapshot: the stored prefixes whose own assertions or sightings changed
// (added, altered, deleted, or an assertion expired), sorted and without
// duplicates, and whether the geo networks changed. ok is false when the
// history kept no longer reaches back to gen, a full reload happened since,
// or gen is newer than the snapshot: the caller must then recompute in full.
func (s *Snap) ChangedSince(gen uint64) (spans []netip.Prefix, geoChanged bool, ok bool) {
	if gen == s.gen {
		return nil, false, true
	}
	if gen > s.gen || gen < s.histFloor {
		return nil, false, false
	}
	for _, h := range s.hist {
		if h.gen <= gen {
			continue
		}
		if h.full {
			return nil, false, false
		}
		spans = append(spans, h.spans...)
		geoChanged = geoChanged || h.geo
	}
	return sortPrefixes(spans), geoChanged, true
}

// sortPrefixes sorts ps by address then bits and drops duplicates.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, comparePrefixes)
	return slices.Compact(ps)
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// parallelMin is the fewest prefixes worth resolving on several cores.
const parallelMin = 8192

// entries returns the entries of the existing stored prefixes inside within
// (all when invalid), in address order. The prefixes are listed first (cheap),
// then resolved in contiguous chunks by workers goroutines (0: one per core
// from parallelMin prefixes on): a walker started anywhere in the order
// builds its chain from the table.
func (s *Snap) entries(within netip.Prefix, workers int) []policy.Entry {
	var (
		ps []netip.Prefix
		rs []rec
	)
	if !within.IsValid() {
		ps, rs = make([]netip.Prefix, 0, s.pfx.Size()), make([]rec, 0, s.pfx.Size())
	}
	for p, r := range s.ordered(netip.Prefix{}, within) {
		ps, rs = append(ps, p), append(rs, r)
	}
	out := make([]policy.Entry, len(ps))
	exists := make([]bool, len(ps))
	if workers <= 0 {
		workers = 1
		if len(ps) >= parallelMin {
			workers = runtime.GOMAXPROCS(0)
		}
	}
	chunk := (len(ps) + workers - 1) / max(workers, 1)
	var wg sync.WaitGroup
	for lo := 0; lo < len(ps); lo += chunk {
		hi := min(lo+chunk, len(ps))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := walker{s: s, recycle: true}
			for i := lo; i < hi; i++ {
				out[i], exists[i] = w.entry(ps[i], rs[i])
			}
		}()
	}
	wg.Wait()
	n := 0
	for i := range out {
		if exists[i] {
			out[n] = out[i]
			n++
		}
	}
	clear(out[n:])
	return out[:n]
}

// Prefixes returns the stored prefixes among ps that exist at At, each with its
// assertions live at At, most specific first (then in address order): the
// resolver's own input, for pages that list the provenance of a view and for
// previews that change it. Prefixes of ps that are not stored are left out.
func (s *Snap) Prefixes(ps []netip.Prefix) []resolve.Prefix {
	out := make([]resolve.Prefix, 0, len(ps))
	for _, p := range ps {
		if id, ok := s.pfx.Get(p); ok {
			out = append(out, expand(s.strs, p, s.rec(id)))
		}
	}
	out = s.existing(out)
	slices.SortFunc(out, func(a, b resolve.Prefix) int {
		if c := cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out
}

// TagCounts returns, per tag, how many existing stored prefixes carry it in
// their effective view (after suppression). It walks the snapshot once, on
// first use, and keeps the result with the snapshot; the map is shared and
// must not be modified.
func (s *Snap) TagCounts() map[string]int64 {
	s.tags.once.Do(func() {
		m := map[string]int64{}
		for _, e := range s.Entries(false).Entries {
			for _, t := range e.Tags {
				m[t]++
			}
		}
		s.tags.m = m
	})
	return s.tags.m
}

// ExpiryBound returns the instant after which the views of the addresses in
// p can no longer change through assertions expiring (resolve.Expiry over the
// stored prefixes containing p and those inside it, at At). ok is false when
// there is none: a live assertion without expiry, or none live at all. The
// CrowdSec API bounds a decision's duration with it.
func (s *Snap) ExpiryBound(p netip.Prefix) (end time.Time, ok bool) {
	if !p.IsValid() {
		return time.Time{}, false
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
	// One prefix at a time through buffers used again: the CrowdSec API
	// asks for every decision of a full list.
	var (
		one  [1]resolve.Prefix
		as   []resolve.Assertion
		exps []time.Time
	)
	part := func(q netip.Prefix, id recID) bool {
		r := s.rec(id)
		one[0], exps = expandInto(s.strs, q, r, as, exps)
		as = one[0].Assertions
		e, lasting := resolve.Expiry(one[:], s.at)
		if lasting {
			return false
		}
		if e.After(end) {
			end = e
		}
		return true
	}
	for q, r := range s.pfx.Supernets(p) {
		if !part(q, r) {
			return time.Time{}, false
		}
	}
	for q, r := range s.pfx.Subnets(p) {
		if q != p && !part(q, r) {
			return time.Time{}, false
		}
	}
	return end, !end.IsZero()
}
