// Package guard is the never-block guard (DESIGN.md §3): prefixes that no
// block set may contain. Render passes each block rule's sets through Filter,
// which cuts the guarded addresses out and reports what it removed.
package guard

import (
	"bufio"
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"
)

//go:embed data/*.json data/root.hints
var data embed.FS

// Entry is one guarded prefix and why it is guarded.
type Entry struct {
	Prefix netip.Prefix
	Reason string
}

// Removed is one piece Filter cut out of a block set.
type Removed struct {
	Prefix netip.Prefix `json:"prefix"`
	Rule   int          `json:"rule"`
	Reason string       `json:"reason"`
}

// documentation holds the documentation ranges, which are NOT guarded by
// default although they are special-use: every test in this project uses them
// as stand-ins for internet addresses, and guarding them would make every
// block set in those tests empty.
var documentation = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// anycastResolvers are the golden public resolvers MISP's public-dns generator
// hard-codes (the rest of public-dns-v4/v6 are open resolvers on arbitrary
// hosts and belong to the soft tier, not here).
var anycastResolvers = []string{"9.9.9.9", "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "1.1.1.3"}

// ipv6SpecialUse completes the MISP special-use lists, which only cover
// IPv6 link-local.
var ipv6SpecialUse = []Entry{
	{netip.MustParsePrefix("::/128"), "special-use: IPv6 unspecified (RFC 4291)"},
	{netip.MustParsePrefix("::1/128"), "special-use: IPv6 loopback (RFC 4291)"},
	{netip.MustParsePrefix("fc00::/7"), "special-use: IPv6 unique local (RFC 4193)"},
	{netip.MustParsePrefix("ff00::/8"), "special-use: IPv6 multicast (RFC 4291)"},
}

// specialUseLists are the embedded MISP special-use lists and their reasons.
var specialUseLists = []struct{ file, reason string }{
	{"rfc1918.json", "special-use: private network (RFC 1918)"},
	{"rfc5735.json", "special-use: IPv4 special-use (RFC 5735)"},
	{"rfc6598.json", "special-use: shared address space (RFC 6598)"},
	{"ipv6-linklocal.json", "special-use: IPv6 link-local (RFC 4291)"},
	{"multicast.json", "special-use: IPv4 multicast (RFC 5771)"},
}

// Default returns the hard never-block tier of
// ../shared/data/warninglists/README.md: special-use ranges (without the
// documentation ranges, see documentation), the DNS root servers, the golden
// anycast resolvers, the Cloudflare and Fastly edges and GitHub's ranges that
// are not inside Azure. The data is embedded; Default panics only if the
// embedded copy is corrupt, which the tests rule out.
func Default() []Entry {
	entries, err := defaultEntries()
	if err != nil {
		panic(fmt.Sprintf("guard: embedded data: %v", err))
	}
	return entries
}

func defaultEntries() ([]Entry, error) {
	out, err := specialUseEntries()
	if err != nil {
		return nil, err
	}
	roots, err := rootServers()
	if err != nil {
		return nil, err
	}
	out = append(out, roots...)
	for _, a := range anycastResolvers {
		addr := netip.MustParseAddr(a)
		out = append(out, Entry{Prefix: netip.PrefixFrom(addr, addr.BitLen()), Reason: "public resolver"})
	}
	for _, l := range []struct{ file, reason string }{{"cloudflare.json", "CDN edge: Cloudflare"}, {"fastly.json", "CDN edge: Fastly"}} {
		ps, err := readList(l.file)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			out = append(out, Entry{Prefix: p, Reason: l.reason})
		}
	}
	gh, err := githubOutsideAzure()
	if err != nil {
		return nil, err
	}
	for _, p := range gh {
		out = append(out, Entry{Prefix: p, Reason: "GitHub (outside Azure)"})
	}
	return out, nil
}

// readList parses one embedded MISP list.json; entries are prefixes or bare addresses.
func readList(file string) ([]netip.Prefix, error) {
	b, err := data.ReadFile("data/" + file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var l struct {
		List []string `json:"list"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode %s: %w", file, err)
	}
	out := make([]netip.Prefix, 0, len(l.List))
	for _, s := range l.List {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix parses a prefix or a bare address into canonical form (host bits
// zeroed, IPv4-mapped IPv6 unmapped).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// rootServers reads the A and AAAA records of the embedded root hints.
func rootServers() ([]Entry, error) {
	b, err := data.ReadFile("data/root.hints")
	if err != nil {
		return nil, fmt.Errorf("read root.hints: %w", err)
	}
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), ";")
		f := strings.Fields(line)
		if len(f) != 4 || (f[2] != "A" && f[2] != "AAAA") {
			continue
		}
		a, err := netip.ParseAddr(f[3])
		if err != nil {
			return nil, fmt.Errorf("root.hints: %s: %w", f[0], err)
		}
		out = append(out, Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Reason: "DNS root server " + strings.ToLower(strings.TrimSuffix(f[0], "."))})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("root.hints: %w", err)
	}
	if len(out) != 26 {
		return nil, fmt.Errorf("root.hints: %d root server addresses, want 26", len(out))
	}
	return out, nil
}

// githubOutsideAzure returns GitHub's ranges minus Microsoft Azure: most of
// GitHub's IPv4 prefixes are Actions runners inside Azure, which host anyone.
func githubOutsideAzure() ([]netip.Prefix, error) {
	gh, err := readList("github.json")
	if err != nil {
		return nil, err
	}
	az, err := readList("microsoft-azure.json")
	if err != nil {
		return nil, err
	}
	var b netipx.IPSetBuilder
	for _, p := range gh {
		b.AddPrefix(p)
	}
	for _, p := range az {
		b.RemovePrefix(p)
	}
	s, err := b.IPSet()
	if err != nil {
		return nil, fmt.Errorf("github minus azure: %w", err)
	}
	return s.Prefixes(), nil
}

// segment is a guarded range attributed to the most specific entry covering it.
type segment struct {
	r      netipx.IPRange
	reason string
}

// Guard removes guarded addresses from block sets. It is immutable and safe
// for concurrent use.
type Guard struct {
	segs []segment // sorted, disjoint
	set  *netipx.IPSet
}

// New builds a guard from entries. Where entries overlap, the reason of the
// most specific one is reported (the first one given on equal prefixes).
func New(entries []Entry) *Guard {
	es := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if e.Prefix.IsValid() {
			es = append(es, Entry{Prefix: canonical(e.Prefix), Reason: e.Reason})
		}
	}
	slices.SortStableFunc(es, func(a, b Entry) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	es = slices.CompactFunc(es, func(a, b Entry) bool { return a.Prefix == b.Prefix })
	g := &Guard{}
	// Sweep the nested prefixes in order; each open prefix owns the addresses
	// between its children.
	type open struct {
		e      Entry
		last   netip.Addr
		cursor netip.Addr // invalid when the prefix ends at the top of the space
	}
	var stack []open
	emit := func(from, to netip.Addr, reason string) {
		if n := len(g.segs); n > 0 && g.segs[n-1].reason == reason && g.segs[n-1].r.To().Next() == from {
			g.segs[n-1].r = netipx.IPRangeFrom(g.segs[n-1].r.From(), to)
			return
		}
		g.segs = append(g.segs, segment{netipx.IPRangeFrom(from, to), reason})
	}
	pop := func() {
		o := stack[len(stack)-1]
		if o.cursor.IsValid() && !o.last.Less(o.cursor) {
			emit(o.cursor, o.last, o.e.Reason)
		}
		stack = stack[:len(stack)-1]
	}
	var b netipx.IPSetBuilder
	for _, e := range es {
		b.AddPrefix(e.Prefix)
		for len(stack) > 0 && !stack[len(stack)-1].e.Prefix.Contains(e.Prefix.Addr()) {
			pop()
		}
		last := netipx.PrefixLastIP(e.Prefix)
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			if top.cursor.IsValid() && top.cursor.Less(e.Prefix.Addr()) {
				emit(top.cursor, e.Prefix.Addr().Prev(), top.e.Reason)
			}
			top.cursor = last.Next()
		}
		stack = append(stack, open{e: e, last: last, cursor: e.Prefix.Addr()})
	}
	for len(stack) > 0 {
		pop()
	}
	// The builder only fails on invalid prefixes, which were dropped above.
	g.set, _ = b.IPSet()
	return g
}

func canonical(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// Contains reports whether addr is guarded.
func (g *Guard) Contains(addr netip.Addr) bool {
	return g.set.Contains(addr.Unmap())
}

// Reason returns why addr is guarded (the reason of the most specific entry
// holding it), or "" and false when it is not.
func (g *Guard) Reason(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	i, found := slices.BinarySearchFunc(g.segs, addr, func(s segment, a netip.Addr) int {
		switch {
		case s.r.To().Less(a):
			return -1
		case a.Less(s.r.From()):
			return 1
		}
		return 0
	})
	if !found {
		return "", false
	}
	return g.segs[i].reason, true
}

// SpecialUse returns the special-use ranges of the embedded MISP lists
// (private, shared, loopback, link-local, multicast, reserved, IPv6
// unique-local ...) with their reasons, the documentation ranges included
// (reason "special-use: documentation (RFC 5737, RFC 3849)"): addresses no
// outside registry or reverse zone says anything useful about. Like Default
// it panics only on corrupt embedded data.
func SpecialUse() []Entry {
	out, err := specialUseEntries()
	if err != nil {
		panic(fmt.Sprintf("guard: embedded data: %v", err))
	}
	for _, p := range documentation {
		out = append(out, Entry{Prefix: p, Reason: "special-use: documentation (RFC 5737, RFC 3849)"})
	}
	return out
}

// specialUseEntries are the special-use lists without the documentation
// ranges, plus the IPv6 ranges they lack.
func specialUseEntries() ([]Entry, error) {
	var out []Entry
	for _, l := range specialUseLists {
		ps, err := readList(l.file)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if !slices.Contains(documentation, p) {
				out = append(out, Entry{Prefix: p, Reason: l.reason})
			}
		}
	}
	return append(out, ipv6SpecialUse...), nil
}

// Prefixes returns the guarded addresses as a minimal CIDR list.
func (g *Guard) Prefixes() []netip.Prefix {
	return g.set.Prefixes()
}

// Filter returns the block sets v4 and v6 of rule number rule without the
// guarded addresses, as minimal CIDR lists, and every removed piece with the
// reason it is guarded. A wide prefix containing a guarded /32 is split
// around it and the /32 is reported. Its cost is linear in the number of
// input prefixes and guarded segments (plus a sort when the input is not in
// address order).
func (g *Guard) Filter(v4, v6 []netip.Prefix, rule int) (keptV4, keptV6 []netip.Prefix, removed []Removed) {
	var k4, k6 []netipx.IPRange
	k4, removed = g.FilterRanges(ranges(v4), rule, removed)
	k6, removed = g.FilterRanges(ranges(v6), rule, removed)
	return appendPrefixes(nil, k4), appendPrefixes(nil, k6), removed
}

// ranges turns prefixes into the sorted, disjoint, maximal ranges covering
// them: a linear merge when the prefixes come in address order (as a
// compiled set does), after a sort otherwise.
func ranges(ps []netip.Prefix) []netipx.IPRange {
	if len(ps) == 0 {
		return nil
	}
	ps = slices.Clone(ps)
	for i := range ps {
		ps[i] = canonical(ps[i])
	}
	if !slices.IsSortedFunc(ps, comparePrefix) {
		slices.SortFunc(ps, comparePrefix)
	}
	out := make([]netipx.IPRange, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		r := netipx.RangeOfPrefix(p)
		if n := len(out); n > 0 {
			last := out[n-1]
			// Merge when r overlaps or touches the previous range of the same family.
			if last.From().BitLen() == r.From().BitLen() && (last.To().Next() == r.From() || !last.To().Less(r.From())) {
				if last.To().Less(r.To()) {
					out[n-1] = netipx.IPRangeFrom(last.From(), r.To())
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func appendPrefixes(dst []netip.Prefix, rs []netipx.IPRange) []netip.Prefix {
	for _, r := range rs {
		dst = r.AppendPrefixes(dst)
	}
	return dst
}

// FilterRanges is Filter on sorted, disjoint ranges of one family (e.g. the
// ranges a render delta touches): it returns the parts of in that are not
// guarded, as sorted ranges, and appends the removed pieces to removed. One
// merge walk over in and the guarded segments.
func (g *Guard) FilterRanges(in []netipx.IPRange, rule int, removed []Removed) ([]netipx.IPRange, []Removed) {
	if len(in) == 0 {
		return nil, removed
	}
	// Find the first segment that could overlap, by binary search.
	j, _ := slices.BinarySearchFunc(g.segs, in[0].From(), func(s segment, a netip.Addr) int {
		if s.r.To().Less(a) {
			return -1
		}
		return 1
	})
	if j == len(g.segs) || in[len(in)-1].To().Less(g.segs[j].r.From()) {
		return in, removed
	}
	kept := make([]netipx.IPRange, 0, len(in))
	for _, r := range in {
		from := r.From()
		for j < len(g.segs) && g.segs[j].r.To().Less(from) {
			j++
		}
		k := j
		for ; k < len(g.segs) && !r.To().Less(g.segs[k].r.From()); k++ {
			seg := g.segs[k]
			if from.Less(seg.r.From()) {
				kept = append(kept, netipx.IPRangeFrom(from, seg.r.From().Prev()))
			}
			lo, hi := maxAddr(from, seg.r.From()), minAddr(r.To(), seg.r.To())
			for _, p := range netipx.IPRangeFrom(lo, hi).Prefixes() {
				removed = append(removed, Removed{Prefix: p, Rule: rule, Reason: seg.reason})
			}
			from = hi.Next()
			if !from.IsValid() || r.To().Less(from) {
				break
			}
		}
		if from.IsValid() && !r.To().Less(from) {
			kept = append(kept, netipx.IPRangeFrom(from, r.To()))
		}
	}
	return kept, removed
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return a
	}
	return b
}
