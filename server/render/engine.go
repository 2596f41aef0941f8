package render

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"go4.org/netipx"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
)

// famSet is one rule's set in one address family.
type famSet struct {
	// pre holds the compiled ranges (before the guard): sorted, disjoint, maximal.
	pre []netipx.IPRange
	// served holds the served CIDRs (after the guard for block rules) in
	// address order and strs the same as strings (the render's V4 or V6).
	// strs is shared with published renders and never written in place.
	served []netip.Prefix
	strs   []string
	// removed holds what the guard cut out of pre, in address order.
	removed []guard.Removed
	// sum is the order-independent hash of the served elements (see elemHash).
	sum [2]uint64
}

// setDelta is the change of one famSet: CIDRs to add and to delete, each in
// address order.
type setDelta struct {
	add, del []netip.Prefix
}

// delta is a render delta: per rule, per family (0 IPv4, 1 IPv6).
type delta [][2]setDelta

// state is one ruleset compiled over one fact snapshot, kept so the next
// change recompiles only the spans it touches.
type state struct {
	rs      *policy.Ruleset
	lists   map[string][]policy.Cond
	guard   *guard.Guard
	withGeo bool
	// gen is the generation of the snapshot the state reflects.
	gen   uint64
	rules [][2]famSet
}

// newState compiles rs over all of f.
func newState(rs *policy.Ruleset, lists map[string][]policy.Cond, g *guard.Guard, withGeo bool, f *policy.Facts, gen uint64) (*state, error) {
	withLists := *f
	withLists.Lists = lists
	st := &state{rs: rs, lists: lists, guard: g, withGeo: withGeo, gen: gen, rules: make([][2]famSet, len(rs.Rules))}
	for fam, root := range [2]netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)} {
		sets, err := policy.CompileRanges(rs, &withLists, root)
		if err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		for i := range rs.Rules {
			fs := &st.rules[i][fam]
			fs.pre = sets[i]
			fs.served, fs.removed = st.serve(i, fs.pre)
			fs.strs = make([]string, len(fs.served))
			for j, p := range fs.served {
				fs.strs[j] = p.String()
				fs.sum = addHash(fs.sum, elemHash(i, p))
			}
		}
	}
	return st, nil
}

// serve turns compiled ranges of rule i into served CIDRs, cutting the
// guard out of block rules.
func (st *state) serve(i int, pre []netipx.IPRange) ([]netip.Prefix, []guard.Removed) {
	var removed []guard.Removed
	if st.rs.Rules[i].Action == policy.ActionBlock && st.guard != nil {
		pre, removed = st.guard.FilterRanges(pre, i+1, nil)
	}
	var out []netip.Prefix
	for _, r := range pre {
		out = r.AppendPrefixes(out)
	}
	return out, removed
}

// update recompiles the addresses of spans over snap and returns the delta.
// The state is changed in place (its string slices are replaced, never
// written), so renders published earlier stay valid.
func (st *state) update(snap FactSnapshot, spans []netip.Prefix) (delta, error) {
	d, _, err := st.updateUpTo(snap, spans, -1)
	return d, err
}

// updateUpTo is update that stops once more than maxChanged spans have
// changed a set (never with maxChanged < 0): each such span splices its sets,
// which copies them, so past some number one full compile is cheaper. When
// it stops (done false) the state reflects the spans before the stop (its
// generation is not advanced) and d leads to it.
func (st *state) updateUpTo(snap FactSnapshot, spans []netip.Prefix, maxChanged int) (d delta, done bool, err error) {
	d = make(delta, len(st.rules)) // no change until a span changes a set
	changed := 0
	for _, span := range normalizeSpans(spans) {
		if maxChanged >= 0 && changed > maxChanged {
			return d, false, nil
		}
		sd := make(delta, len(st.rules))
		f := *snap.SpanFacts(span, st.withGeo)
		f.Lists = st.lists
		sets, err := policy.CompileRanges(st.rs, &f, span)
		if err != nil {
			return nil, false, fmt.Errorf("render: %w", err)
		}
		fam := 0
		if span.Addr().Is6() {
			fam = 1
		}
		hit := false
		for i := range st.rules {
			sd[i][fam].add, sd[i][fam].del = st.splice(i, &st.rules[i][fam], netipx.RangeOfPrefix(span), sets[i])
			hit = hit || len(sd[i][fam].add) > 0 || len(sd[i][fam].del) > 0
		}
		if !hit {
			continue
		}
		changed++
		// The areas of two spans may share compiled ranges: compose, not append.
		d = compose(d, sd)
	}
	st.gen = snap.Gen()
	return d, true, nil
}

// splice replaces the part of fs inside span by inner (the compiled ranges of
// rule i inside span) and returns the served CIDRs added and deleted.
func (st *state) splice(i int, fs *famSet, span netipx.IPRange, inner []netipx.IPRange) (add, del []netip.Prefix) {
	// The area is span widened to the compiled ranges that contain the
	// addresses just outside it: such a range may merge with or split from
	// what is inside. Every compiled range, old or new, lies wholly inside
	// the area or wholly outside it, and so do the served CIDRs.
	from, to := span.From(), span.To()
	var pieces []netipx.IPRange
	if before := from.Prev(); before.IsValid() && before.BitLen() == from.BitLen() {
		if k := containing(fs.pre, before); k >= 0 {
			from = fs.pre[k].From()
			pieces = append(pieces, netipx.IPRangeFrom(from, before))
		}
	}
	for _, r := range inner {
		pieces = appendMerged(pieces, r)
	}
	if after := to.Next(); after.IsValid() && after.BitLen() == to.BitLen() {
		if k := containing(fs.pre, after); k >= 0 {
			to = fs.pre[k].To()
			pieces = appendMerged(pieces, netipx.IPRangeFrom(after, to))
		}
	}
	lo, _ := slices.BinarySearchFunc(fs.pre, from, func(r netipx.IPRange, a netip.Addr) int { return r.To().Compare(a) })
	hi, _ := slices.BinarySearchFunc(fs.pre, to, func(r netipx.IPRange, a netip.Addr) int {
		if r.From().Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	if slices.Equal(fs.pre[lo:hi], pieces) {
		return nil, nil
	}
	fs.pre = slices.Replace(fs.pre, lo, hi, pieces...)

	served, removed := st.serve(i, pieces)
	si, sj := addrWindow(fs.served, from, to, func(p netip.Prefix) netip.Addr { return p.Addr() })
	ri, rj := addrWindow(fs.removed, from, to, func(r guard.Removed) netip.Addr { return r.Prefix.Addr() })
	if ri != rj || len(removed) > 0 {
		fs.removed = slices.Replace(fs.removed, ri, rj, removed...)
	}
	old := fs.served[si:sj]
	strs := make([]string, 0, len(served))
	// Both lists are in address order: one merge walk finds what changed and
	// keeps the strings of what did not.
	a, b := 0, 0
	for a < len(old) || b < len(served) {
		switch c := cmpPrefix(old, served, a, b); {
		case c == 0:
			strs = append(strs, fs.strs[si+a])
			a++
			b++
		case c < 0:
			del = append(del, old[a])
			fs.sum = subHash(fs.sum, elemHash(i, old[a]))
			a++
		default:
			add = append(add, served[b])
			strs = append(strs, served[b].String())
			fs.sum = addHash(fs.sum, elemHash(i, served[b]))
			b++
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil, nil
	}
	fs.served = slices.Replace(fs.served, si, sj, served...)
	next := make([]string, 0, len(fs.strs)-(sj-si)+len(strs))
	next = append(next, fs.strs[:si]...)
	next = append(next, strs...)
	fs.strs = append(next, fs.strs[sj:]...)
	return add, del
}

// cmpPrefix orders old[a] and served[b], an exhausted side last.
func cmpPrefix(old, served []netip.Prefix, a, b int) int {
	switch {
	case a == len(old):
		return 1
	case b == len(served):
		return -1
	}
	return comparePrefix(old[a], served[b])
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}

// containing returns the index of the range of rs containing a, or -1.
func containing(rs []netipx.IPRange, a netip.Addr) int {
	k, _ := slices.BinarySearchFunc(rs, a, func(r netipx.IPRange, a netip.Addr) int {
		if r.From().Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	if k--; k >= 0 && rs[k].Contains(a) {
		return k
	}
	return -1
}

// addrWindow returns the window [i, j) of xs (in address order) whose
// addresses lie in [from, to].
func addrWindow[T any](xs []T, from, to netip.Addr, addr func(T) netip.Addr) (int, int) {
	i, _ := slices.BinarySearchFunc(xs, from, func(x T, a netip.Addr) int {
		if addr(x).Less(a) {
			return -1
		}
		return 1
	})
	j, _ := slices.BinarySearchFunc(xs[i:], to, func(x T, a netip.Addr) int {
		if addr(x).Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	return i, i + j
}

// appendMerged appends r to sorted disjoint ranges, merging it with the
// last one when they touch.
func appendMerged(rs []netipx.IPRange, r netipx.IPRange) []netipx.IPRange {
	if n := len(rs); n > 0 && rs[n-1].To().Next() == r.From() {
		rs[n-1] = netipx.IPRangeFrom(rs[n-1].From(), r.To())
		return rs
	}
	return append(rs, r)
}

// normalizeSpans canonicalises spans and drops the ones inside others.
func normalizeSpans(spans []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(spans))
	for _, s := range spans {
		if s.IsValid() {
			out = append(out, policy.CanonicalPrefix(s))
		}
	}
	slices.SortFunc(out, comparePrefix)
	kept := out[:0]
	for _, s := range out {
		if n := len(kept); n > 0 && kept[n-1].Overlaps(s) {
			continue // sorted by address then length: the earlier one contains s
		}
		kept = append(kept, s)
	}
	return kept
}

// elemHash is a 128-bit hash of one served element: rule index and CIDR. It
// is a fixed function (no per-process seed) so every process computes the
// same content hash; it detects changes, it does not resist forgery.
func elemHash(rule int, p netip.Prefix) [2]uint64 {
	a := p.Addr().As16()
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	meta := uint64(rule)<<16 | uint64(p.Bits())<<1
	if p.Addr().Is4() {
		meta |= 1
	}
	return [2]uint64{
		mix(mix(mix(meta^0x9e3779b97f4a7c15)^hi) ^ lo),
		mix(mix(mix(meta^0xc2b2ae3d27d4eb4f)^lo) ^ hi),
	}
}

// mix is the 64-bit finaliser of MurmurHash3.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func addHash(s, h [2]uint64) [2]uint64 { return [2]uint64{s[0] + h[0], s[1] + h[1]} }
func subHash(s, h [2]uint64) [2]uint64 { return [2]uint64{s[0] - h[0], s[1] - h[1]} }

// render returns the full render of the state (without version and time).
func (st *state) render() (*Render, error) {
	rs := st.rs
	r := &Render{
		Ruleset: rs.Name, Hook: rs.Hook, Default: string(rs.Default),
		Scope:        Scope{Protocol: rs.Scope.Protocol, DPorts: expandPorts(rs.Scope.DPorts), IIfNames: nonNil(rs.Scope.IIfNames)},
		Honeypot:     Honeypot{TCP: nonNil(rs.Honeypot.TCP), UDP: nonNil(rs.Honeypot.UDP)},
		Rules:        make([]Rule, len(rs.Rules)),
		GuardRemoved: []guard.Removed{},
	}
	for i, rule := range rs.Rules {
		r.Rules[i] = Rule{ID: i + 1, Action: string(rule.Action), Rate: rule.Rate, Text: policy.FormatRule(rule),
			V4: nilIfEmpty(st.rules[i][0].strs), V6: nilIfEmpty(st.rules[i][1].strs)}
		r.GuardRemoved = append(r.GuardRemoved, st.rules[i][0].removed...)
		r.GuardRemoved = append(r.GuardRemoved, st.rules[i][1].removed...)
	}
	h, err := st.hash(r)
	if err != nil {
		return nil, err
	}
	r.Hash = h
	return r, nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// hash is the content hash of a render: SHA-256 over the JSON of everything
// but the sets (ruleset, hook, scope, default, honeypot, each rule's id,
// action, rate and text, and what the guard removed) followed by, per rule
// and family, the number of CIDRs and the sum of their elemHash. The sum is
// order-independent, so a change updates it in O(change) instead of
// rehashing a million CIDRs; equal contents give equal hashes in every
// process.
func (st *state) hash(r *Render) (string, error) {
	type meta struct {
		ID     int    `json:"id"`
		Action string `json:"action"`
		Rate   string `json:"rate"`
		Text   string `json:"text"`
	}
	head := struct {
		Ruleset      string          `json:"ruleset"`
		Hook         string          `json:"hook"`
		Scope        Scope           `json:"scope"`
		Default      string          `json:"default"`
		Honeypot     Honeypot        `json:"honeypot"`
		Rules        []meta          `json:"rules"`
		GuardRemoved []guard.Removed `json:"guard_removed"`
	}{Ruleset: r.Ruleset, Hook: r.Hook, Scope: r.Scope, Default: r.Default, Honeypot: r.Honeypot, GuardRemoved: r.GuardRemoved}
	for _, rule := range r.Rules {
		head.Rules = append(head.Rules, meta{rule.ID, rule.Action, rule.Rate, rule.Text})
	}
	b, err := json.Marshal(head)
	if err != nil {
		return "", fmt.Errorf("render: hash: %w", err)
	}
	h := sha256.New()
	h.Write(b)
	var buf [24]byte
	for i := range st.rules {
		for fam := range 2 {
			fs := &st.rules[i][fam]
			binary.BigEndian.PutUint64(buf[0:], uint64(len(fs.served)))
			binary.BigEndian.PutUint64(buf[8:], fs.sum[0])
			binary.BigEndian.PutUint64(buf[16:], fs.sum[1])
			h.Write(buf[:])
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
