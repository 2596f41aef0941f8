package policy

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"
)

// PrefixSet is a set of addresses as minimal sorted CIDR lists per family.
type PrefixSet struct {
	V4 []netip.Prefix `json:"v4"`
	V6 []netip.Prefix `json:"v6"`
}

// CompiledRule is a rule with the exact set of addresses it decides.
type CompiledRule struct {
	Rule Rule
	// Set holds the addresses whose first matching rule is this one. For a log
	// rule: the addresses it matches that no earlier non-log rule matched.
	Set PrefixSet
}

// Compiled is a ruleset turned into prefix sets.
type Compiled struct {
	Name    string
	Default Action
	Rules   []CompiledRule
	// Unmatched holds the addresses no block, allow or throttle rule matches:
	// the default action decides them. It is computed only when Default is
	// block (otherwise nothing enforces it) and is nil otherwise.
	Unmatched PrefixSet
}

// condProg is a condition compiled against the bit layout of one compilation.
type condProg struct {
	kind    string
	not     bool
	values  []string
	tagBits []int         // tag: bits of the values that some entry carries
	srcBits []int         // source: bits of the patterns
	cidrBit int           // cidr: this condition's bit
	classes []string      // classification: the lower-cased values
	lists   [][]*condProg // list: per named list its conditions, all of which must hold
}

// compiler holds the state of one Compile call.
type compiler struct {
	facts    *Facts
	tagBit   map[string]int
	srcBit   map[string]int
	srcPats  []string
	srcMemo  map[string][]int
	cidrBits map[netip.Prefix][]int
	nCidr    int
	lists    map[string][]*condProg
	rules    [][]*condProg
}

// Compile turns rs into per-rule prefix sets over the facts f. It partitions
// the address space into atoms (the regions between all entry, geo and cidr
// prefixes, which nest or are disjoint), evaluates each atom once and emits
// its range to the rule that decides it, so its cost grows with the number of
// prefixes, never with the number of addresses. An atom's facts are the Entry
// of the most specific stored prefix containing it and the most specific geo
// net containing it.
func Compile(rs *Ruleset, f *Facts) (*Compiled, error) {
	return compileRoots(rs, f, []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)})
}

// CompileRanges is Compile restricted to the addresses of span, with every
// set as sorted, disjoint, maximal inclusive ranges (what a caller that
// splices sets needs, without a round trip through CIDRs). The result has one
// set per rule and, at index len(rs.Rules), the unmatched set (empty unless
// the default is block); each set lies inside span and equals the part of
// Compile's set inside span. f must hold every entry and geo net inside span
// and, for each of the two, at least the most specific one containing span
// (span itself included); anything else in f is ignored. Its cost grows with
// the number of prefixes inside span.
func CompileRanges(rs *Ruleset, f *Facts, span netip.Prefix) ([][]netipx.IPRange, error) {
	if !span.IsValid() {
		return nil, fmt.Errorf("policy: compile %s: invalid span %v", rs.Name, span)
	}
	c, err := newCompiler(rs, f)
	if err != nil {
		return nil, err
	}
	sets, err := c.sweep(rs, CanonicalPrefix(span))
	if err != nil {
		return nil, fmt.Errorf("policy: compile %s: %w", rs.Name, err)
	}
	return sets, nil
}

func newCompiler(rs *Ruleset, f *Facts) (*compiler, error) {
	c := &compiler{facts: f, tagBit: map[string]int{}, srcBit: map[string]int{}, srcMemo: map[string][]int{}, cidrBits: map[netip.Prefix][]int{}, lists: map[string][]*condProg{}}
	for i, r := range rs.Rules {
		conds, err := c.compileConds(r.Conds, nil)
		if err != nil {
			return nil, fmt.Errorf("policy: compile %s: rule %d: %w", rs.Name, i+1, err)
		}
		c.rules = append(c.rules, conds)
	}
	return c, nil
}

func compileRoots(rs *Ruleset, f *Facts, roots []netip.Prefix) (*Compiled, error) {
	c, err := newCompiler(rs, f)
	if err != nil {
		return nil, err
	}
	out := &Compiled{Name: rs.Name, Default: rs.Default, Rules: make([]CompiledRule, len(rs.Rules))}
	for i, r := range rs.Rules {
		out.Rules[i].Rule = r
	}
	for _, root := range roots {
		v6 := root.Addr().Is6()
		sets, err := c.sweep(rs, root)
		if err != nil {
			return nil, fmt.Errorf("policy: compile %s: %w", rs.Name, err)
		}
		for i := range sets {
			ps := &out.Unmatched
			if i < len(rs.Rules) {
				ps = &out.Rules[i].Set
			}
			var prefixes []netip.Prefix
			for _, r := range sets[i] {
				prefixes = r.AppendPrefixes(prefixes)
			}
			if v6 {
				ps.V6 = prefixes
			} else {
				ps.V4 = prefixes
			}
		}
	}
	return out, nil
}

// compileConds compiles conditions; stack holds the lists being expanded, to detect cycles.
func (c *compiler) compileConds(conds []Cond, stack []string) ([]*condProg, error) {
	var out []*condProg
	for _, cd := range conds {
		p := &condProg{kind: cd.Kind, not: cd.Not, values: cd.Values}
		switch cd.Kind {
		case KindTag:
			for _, v := range cd.Values {
				p.tagBits = append(p.tagBits, c.bit(c.tagBit, v, nil))
			}
		case KindSource:
			for _, v := range cd.Values {
				p.srcBits = append(p.srcBits, c.bit(c.srcBit, v, &c.srcPats))
			}
		case KindClassification:
			for _, v := range cd.Values {
				cl := strings.ToLower(v)
				if err := checkClass(cl); err != nil {
					return nil, err
				}
				p.classes = append(p.classes, cl)
			}
		case KindCIDR:
			p.cidrBit = c.nCidr
			c.nCidr++
			for _, v := range cd.Values {
				pfx, err := parseCIDR(v)
				if err != nil {
					return nil, err
				}
				c.cidrBits[pfx] = append(c.cidrBits[pfx], p.cidrBit)
			}
		case KindList:
			for _, name := range cd.Values {
				sub, err := c.list(name, stack)
				if err != nil {
					return nil, err
				}
				p.lists = append(p.lists, sub)
			}
		case KindCountry, KindContinent, KindASN, KindOrg:
		default:
			return nil, fmt.Errorf("unknown condition kind %q", cd.Kind)
		}
		out = append(out, p)
	}
	return out, nil
}

// list compiles a named list once, detecting reference cycles.
func (c *compiler) list(name string, stack []string) ([]*condProg, error) {
	if slices.Contains(stack, name) {
		return nil, fmt.Errorf("list cycle: %s -> %s", strings.Join(stack, " -> "), name)
	}
	if p, ok := c.lists[name]; ok {
		return p, nil
	}
	conds, ok := c.facts.Lists[name]
	if !ok {
		return nil, fmt.Errorf("unknown list %q", name)
	}
	if len(conds) == 0 {
		return nil, fmt.Errorf("list %q has no conditions", name)
	}
	p, err := c.compileConds(conds, append(stack, name))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", name, err)
	}
	c.lists[name] = p
	return p, nil
}

// bit returns the bit of key in m, assigning the next one if new.
func (c *compiler) bit(m map[string]int, key string, keys *[]string) int {
	if b, ok := m[key]; ok {
		return b
	}
	b := len(m)
	m[key] = b
	if keys != nil {
		*keys = append(*keys, key)
	}
	return b
}

// state is the resolved view of one atom, in the bit layout of the compiler.
type state struct {
	tags  []uint64
	srcs  []uint64
	cidrs []uint64
	class string // effective classification, "" when none
	geo   *GeoNet
	org   string // lower-cased geo.Org
}

func hasBit(w []uint64, b int) bool { return w[b>>6]&(1<<(b&63)) != 0 }
func setBit(w []uint64, b int)      { w[b>>6] |= 1 << (b & 63) }

// eval evaluates compiled conditions (joined by and) on s.
func eval(conds []*condProg, s *state) bool {
	for _, p := range conds {
		if evalOne(p, s) == p.not {
			return false
		}
	}
	return true
}

func evalOne(p *condProg, s *state) bool {
	switch p.kind {
	case KindTag:
		for _, b := range p.tagBits {
			if hasBit(s.tags, b) {
				return true
			}
		}
		return false
	case KindSource:
		for _, b := range p.srcBits {
			if hasBit(s.srcs, b) {
				return true
			}
		}
		return false
	case KindClassification:
		return s.class != "" && slices.Contains(p.classes, s.class)
	case KindCIDR:
		return hasBit(s.cidrs, p.cidrBit)
	case KindList:
		for _, l := range p.lists {
			if eval(l, s) {
				return true
			}
		}
		return false
	}
	return geoMatches(p.kind, p.values, s.geo, s.org)
}

// item is one prefix the partition is built from.
type item struct {
	p     netip.Prefix
	entry int32 // index into Facts.Entries or -1
	geo   int32 // index into Facts.Geo or -1
}

// frame is one open prefix during the sweep.
type frame struct {
	p      netip.Prefix
	last   netip.Addr
	cursor netip.Addr // first address of p not yet emitted; invalid when done
	st     state
	outs   []int // rule indices (len(rules) = unmatched) the atom belongs to
}

// sweep walks the prefixes inside root in address order and returns, per
// rule index (and len(rules) for unmatched), the maximal ranges inside root
// it decides. The state of root itself comes from the items containing it.
// The unmatched set is left empty unless the default is block: nothing
// enforces it then, and around many /32s it is the largest set.
func (c *compiler) sweep(rs *Ruleset, root netip.Prefix) ([][]netipx.IPRange, error) {
	outer, items, err := c.items(root)
	if err != nil {
		return nil, err
	}
	nRules := len(rs.Rules)
	// The sets grow as pointer-free integer ranges (netip.Addr holds a
	// pointer, which would make the garbage collector scan and write-barrier
	// millions of ranges) and are converted once at the end.
	acc := make([][]span128, nRules+1)
	emit := func(fromA, toA netip.Addr, outs []int) {
		from, to := u128(fromA), u128(toA)
		for _, o := range outs {
			if o == nRules && rs.Default != ActionBlock {
				continue
			}
			rr := acc[o]
			if n := len(rr); n > 0 && rr[n-1].to.next() == from {
				rr[n-1].to = to
				continue
			}
			acc[o] = append(rr, span128{from, to})
		}
	}
	tagW, srcW, cidrW := words(len(c.tagBit)), words(len(c.srcBit)), words(c.nCidr)
	frames := make([]frame, root.Addr().BitLen()-root.Bits()+2)
	for i := range frames {
		frames[i].st = state{tags: make([]uint64, tagW), srcs: make([]uint64, srcW), cidrs: make([]uint64, cidrW)}
	}
	// The root's state: the items containing it applied least specific first.
	scratch := state{tags: make([]uint64, tagW), srcs: make([]uint64, srcW), cidrs: make([]uint64, cidrW)}
	cur, next := &scratch, &frames[0].st
	for i := 0; i < len(outer); {
		j := groupEnd(outer, i)
		if err := c.inherit(next, cur, outer[i:j], outer[i].p); err != nil {
			return nil, err
		}
		cur, next = next, cur
		i = j
	}
	if cur != &frames[0].st {
		frames[0].st.copyFrom(cur)
	}
	frames[0].p, frames[0].last, frames[0].cursor = root, netipx.PrefixLastIP(root), root.Addr()
	frames[0].outs = c.decide(&frames[0].st, rs, frames[0].outs[:0])
	depth := 0
	closeTop := func() {
		f := &frames[depth]
		// The cursor is past the end when the last child ended where f ends.
		if f.cursor.IsValid() && !f.last.Less(f.cursor) {
			emit(f.cursor, f.last, f.outs)
		}
		depth--
	}
	for i := 0; i < len(items); {
		p := items[i].p
		j := groupEnd(items, i)
		for !frames[depth].p.Contains(p.Addr()) {
			closeTop()
		}
		top := &frames[depth]
		if top.cursor.IsValid() && top.cursor.Less(p.Addr()) {
			emit(top.cursor, p.Addr().Prev(), top.outs)
		}
		last := netipx.PrefixLastIP(p)
		top.cursor = last.Next()
		depth++
		f := &frames[depth]
		f.p, f.last, f.cursor = p, last, p.Addr()
		if err := c.inherit(&f.st, &top.st, items[i:j], p); err != nil {
			return nil, err
		}
		f.outs = c.decide(&f.st, rs, f.outs[:0])
		i = j
	}
	for depth >= 0 {
		closeTop()
	}
	out := make([][]netipx.IPRange, nRules+1)
	v4 := root.Addr().Is4()
	for i, rr := range acc {
		if len(rr) == 0 {
			continue
		}
		out[i] = make([]netipx.IPRange, len(rr))
		for j, r := range rr {
			out[i][j] = netipx.IPRangeFrom(r.from.addr(v4), r.to.addr(v4))
		}
	}
	return out, nil
}

// uint128 is an address as an integer (IPv4 in the low 32 bits).
type uint128 struct{ hi, lo uint64 }

// span128 is an inclusive range of uint128 addresses.
type span128 struct{ from, to uint128 }

func u128(a netip.Addr) uint128 {
	b := a.As16()
	return uint128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u uint128) next() uint128 {
	if u.lo == ^uint64(0) {
		return uint128{u.hi + 1, 0}
	}
	return uint128{u.hi, u.lo + 1}
}

func (u uint128) addr(v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{byte(u.lo >> 24), byte(u.lo >> 16), byte(u.lo >> 8), byte(u.lo)})
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

// groupEnd returns the end of the run of items on the same prefix as items[i].
func groupEnd(items []item, i int) int {
	j := i + 1
	for j < len(items) && items[j].p == items[i].p {
		j++
	}
	return j
}

func (s *state) copyFrom(o *state) {
	copy(s.tags, o.tags)
	copy(s.srcs, o.srcs)
	copy(s.cidrs, o.cidrs)
	s.class, s.geo, s.org = o.class, o.geo, o.org
}

func words(n int) int { return (n + 63) / 64 }

// items collects the entry, geo and cidr-condition prefixes of root's family
// in address order, shorter prefixes first: outer holds those containing
// root (root itself included), inner those strictly inside it.
func (c *compiler) items(root netip.Prefix) (outer, inner []item, err error) {
	f := c.facts
	inner = make([]item, 0, len(f.Entries)+len(f.Geo)+len(c.cidrBits))
	add := func(p netip.Prefix, entry, geo int32) error {
		if !p.IsValid() {
			return fmt.Errorf("invalid prefix %v", p)
		}
		p = CanonicalPrefix(p)
		switch {
		case p.Bits() <= root.Bits() && p.Contains(root.Addr()):
			outer = append(outer, item{p: p, entry: entry, geo: geo})
		case root.Contains(p.Addr()):
			inner = append(inner, item{p: p, entry: entry, geo: geo})
		}
		return nil
	}
	for i := range f.Entries {
		if err := add(f.Entries[i].Prefix, int32(i), -1); err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	for i := range f.Geo {
		if err := add(f.Geo[i].Prefix, -1, int32(i)); err != nil {
			return nil, nil, fmt.Errorf("geo net %d: %w", i, err)
		}
	}
	for p := range c.cidrBits {
		if err := add(p, -1, -1); err != nil {
			return nil, nil, err
		}
	}
	order := func(a, b item) int {
		if r := a.p.Addr().Compare(b.p.Addr()); r != 0 {
			return r
		}
		if r := cmp.Compare(a.p.Bits(), b.p.Bits()); r != 0 {
			return r
		}
		// Equal prefixes keep input order: the last classification and the
		// last geo net on a prefix win.
		return cmp.Or(cmp.Compare(a.entry, b.entry), cmp.Compare(a.geo, b.geo))
	}
	slices.SortFunc(outer, order)
	slices.SortFunc(inner, order)
	return outer, inner, nil
}

// inherit computes the state of prefix p from its parent's state and the
// items (entries, geo nets, cidr marks) stored on exactly p: the entries on p
// replace the parent's tags, sources and classification (each entry is
// already the effective view), a geo net on p replaces the parent's, and cidr
// marks accumulate.
func (c *compiler) inherit(dst, parent *state, items []item, p netip.Prefix) error {
	dst.copyFrom(parent)
	first := true
	for _, it := range items {
		switch {
		case it.entry >= 0:
			e := &c.facts.Entries[it.entry]
			if err := checkClass(e.Classification); err != nil {
				return fmt.Errorf("entry %s: %w", p, err)
			}
			if first {
				clear(dst.tags)
				clear(dst.srcs)
				dst.class, first = "", false
			}
			for _, t := range e.Tags {
				if b, ok := c.tagBit[t]; ok {
					setBit(dst.tags, b)
				}
			}
			for _, s := range e.Sources {
				for _, b := range c.sourceBits(s) {
					setBit(dst.srcs, b)
				}
			}
			if e.Classification != "" {
				dst.class = e.Classification
			}
		case it.geo >= 0:
			dst.geo = &c.facts.Geo[it.geo]
			dst.org = strings.ToLower(dst.geo.Org)
		}
	}
	for _, b := range c.cidrBits[p] {
		setBit(dst.cidrs, b)
	}
	return nil
}

// sourceBits returns the bits of the source patterns matching source s,
// memoised because a million entries share a handful of sources.
func (c *compiler) sourceBits(s string) []int {
	if b, ok := c.srcMemo[s]; ok {
		return b
	}
	var bits []int
	for b, pat := range c.srcPats {
		if sourceMatches(pat, s) {
			bits = append(bits, b)
		}
	}
	c.srcMemo[s] = bits
	return bits
}

// decide appends to outs the rule indices an atom with state s belongs to:
// matching log rules before the first matching non-log rule, then that rule
// (or len(rules) when none matches).
func (c *compiler) decide(s *state, rs *Ruleset, outs []int) []int {
	for i, conds := range c.rules {
		if !eval(conds, s) {
			continue
		}
		outs = append(outs, i)
		if rs.Rules[i].Action != ActionLog {
			return outs
		}
	}
	return append(outs, len(c.rules))
}

// DenyList returns every address whose decision is block: the union of the
// block rules' sets and, when the default is block, the unmatched addresses.
func DenyList(c *Compiled) (v4, v6 []netip.Prefix) {
	var b netipx.IPSetBuilder
	add := func(ps PrefixSet) {
		for _, p := range ps.V4 {
			b.AddPrefix(p)
		}
		for _, p := range ps.V6 {
			b.AddPrefix(p)
		}
	}
	for _, r := range c.Rules {
		if r.Rule.Action == ActionBlock {
			add(r.Set)
		}
	}
	if c.Default == ActionBlock {
		add(c.Unmatched)
	}
	// The builder only fails on invalid input; compiled sets are always valid.
	set, _ := b.IPSet()
	for _, p := range set.Prefixes() {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}
