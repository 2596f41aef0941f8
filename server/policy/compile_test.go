package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/server/resolve"
)

// testNow is the clock of the random universes.
var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// naiveDecide evaluates rs for one address straight from the definitions in
// DESIGN.md §3, independently of Compile and Explain: the address's view is
// resolved from every stored prefix containing it by the one resolver, not
// taken from the most specific entry as Compile does. It returns the indices
// of the sets the address belongs to: matching log rules before the decision,
// then the deciding rule or len(rules) for "unmatched".
func naiveDecide(t *testing.T, rs *Ruleset, f *Facts, stored []resolve.Prefix, a netip.Addr) []int {
	t.Helper()
	v := resolve.Resolve(netip.PrefixFrom(a, a.BitLen()), stored, testNow)
	tags := map[string]bool{}
	for _, tf := range v.Tags {
		tags[tf.Name] = true
	}
	sources := map[string]bool{}
	for _, s := range v.Sources {
		sources[s] = true
	}
	class := ViewClass(v)
	var geo *GeoNet
	for i := range f.Geo {
		if f.Geo[i].Prefix.Contains(a) && (geo == nil || f.Geo[i].Prefix.Bits() >= geo.Prefix.Bits()) {
			geo = &f.Geo[i]
		}
	}
	var match func(conds []Cond) bool
	match = func(conds []Cond) bool {
		for _, c := range conds {
			hit := false
			for _, v := range c.Values {
				switch c.Kind {
				case KindTag:
					hit = hit || tags[v]
				case KindClassification:
					hit = hit || (class != "" && class == v)
				case KindCountry:
					hit = hit || (geo != nil && geo.Country == v)
				case KindContinent:
					hit = hit || (geo != nil && geo.Continent == v)
				case KindASN:
					hit = hit || (geo != nil && fmt.Sprintf("AS%d", geo.ASN) == v)
				case KindOrg:
					hit = hit || (geo != nil && strings.Contains(strings.ToLower(geo.Org), strings.ToLower(v)))
				case KindCIDR:
					hit = hit || netip.MustParsePrefix(v).Contains(a)
				case KindList:
					hit = hit || match(f.Lists[v])
				case KindSource:
					for s := range sources {
						if p, ok := strings.CutSuffix(v, "*"); ok && strings.HasPrefix(s, p) || s == v {
							hit = true
						}
					}
				}
			}
			if hit == c.Not {
				return false
			}
		}
		return true
	}
	var out []int
	for i, r := range rs.Rules {
		if match(r.Conds) {
			out = append(out, i)
			if r.Action != ActionLog {
				return out
			}
		}
	}
	return append(out, len(rs.Rules))
}

// universe describes one family's random test region.
type universe struct {
	base    netip.Prefix // addresses checked exhaustively
	minBits int          // shortest random prefix
}

var (
	uni4 = universe{base: netip.MustParsePrefix("198.51.100.0/22"), minBits: 20}
	uni6 = universe{base: netip.MustParsePrefix("2001:db8::/118"), minBits: 114}
)

// randPrefix returns a random prefix around u.base, at most 2 bits shorter.
func (u universe) randPrefix(r *rand.Rand) netip.Prefix {
	bl := u.base.Addr().BitLen()
	bits := u.minBits + r.IntN(bl-u.minBits+1)
	a := u.base.Addr().As16()
	off := r.Uint32() & (1<<(bl-u.base.Bits()) - 1)
	for i := 0; i < 4; i++ {
		a[15-i] |= byte(off >> (8 * i))
	}
	addr := netip.AddrFrom16(a)
	if u.base.Addr().Is4() {
		addr = addr.Unmap()
		// AddrFrom16 of a v4 base is mapped; rebuild from the 4-byte form.
		b := u.base.Addr().As4()
		for i := 0; i < 4; i++ {
			b[3-i] |= byte(off >> (8 * i))
		}
		addr = netip.AddrFrom4(b)
	}
	return netip.PrefixFrom(addr, bits).Masked()
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func subset(r *rand.Rand, xs []string) []string {
	var out []string
	for _, x := range xs {
		if r.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

var (
	poolTags    = []string{"a", "b", "c", "d"}
	poolClass   = []string{"malicious", "suspicious", "benign", "unknown"}
	poolCountry = []string{"US", "DE", "FR"}
	poolCont    = []string{"EU", "NA"}
	poolASN     = []string{"AS1", "AS2", "AS3"}
	poolOrgs    = []string{"ACME Corp", "Example Net", "acme-net", ""}
	poolOrgSub  = []string{"acme", "NET", "corp"}
	poolSources = []string{"feed:x", "feed:y", "manual:alice", "ingest:cowrie"}
	poolSrcPat  = []string{"feed:x", "feed:*", "manual:alice", "ingest:*", "bouncer:*"}
)

func randCond(r *rand.Rand, u universe, lists []string) Cond {
	kinds := []string{KindTag, KindTag, KindClassification, KindCountry, KindContinent, KindASN, KindOrg, KindCIDR, KindSource}
	if len(lists) > 0 {
		kinds = append(kinds, KindList, KindList)
	}
	c := Cond{Kind: pick(r, kinds), Not: r.IntN(4) == 0}
	n := 1 + r.IntN(2)
	for i := 0; i < n; i++ {
		var v string
		switch c.Kind {
		case KindTag:
			v = pick(r, poolTags)
		case KindClassification:
			v = pick(r, poolClass)
		case KindCountry:
			v = pick(r, poolCountry)
		case KindContinent:
			v = pick(r, poolCont)
		case KindASN:
			v = pick(r, poolASN)
		case KindOrg:
			v = pick(r, poolOrgSub)
		case KindCIDR:
			v = u.randPrefix(r).String()
		case KindList:
			v = pick(r, lists)
		case KindSource:
			v = pick(r, poolSrcPat)
		}
		c.Values = append(c.Values, v)
	}
	return c
}

func randConds(r *rand.Rand, u universe, lists []string) []Cond {
	conds := make([]Cond, 1+r.IntN(3))
	for i := range conds {
		conds[i] = randCond(r, u, lists)
	}
	return conds
}

// randFacts returns random stored prefixes with random assertions (tags,
// classifications, manual suppressions and overrides, expired ones) and the
// facts Compile gets from them: per stored prefix its resolved view.
func randFacts(r *rand.Rand, u universe) (*Facts, []resolve.Prefix) {
	f := &Facts{Lists: map[string][]Cond{}}
	var stored []resolve.Prefix
	seen := map[netip.Prefix]bool{}
	past := testNow.Add(-time.Hour)
	for i := r.IntN(30); i > 0; i-- {
		p := resolve.Prefix{Prefix: u.randPrefix(r)}
		if seen[p.Prefix] {
			continue
		}
		seen[p.Prefix] = true
		for j := r.IntN(5); j > 0; j-- {
			a := resolve.Assertion{Source: pick(r, poolSources)}
			switch r.IntN(6) {
			case 0, 1, 2:
				a.Kind, a.Value = resolve.KindTag, pick(r, poolTags)
			case 3:
				a.Kind, a.Value = resolve.KindClassification, pick(r, poolClass)
			case 4:
				a.Kind, a.Value, a.Source = resolve.KindSuppress, pick(r, poolTags), "manual:alice"
			case 5:
				a.Kind, a.Value = resolve.KindNote, "n"
			}
			if r.IntN(8) == 0 {
				a.ExpiresAt = &past
			}
			p.Assertions = append(p.Assertions, a)
		}
		stored = append(stored, p)
	}
	for _, p := range stored {
		f.Entries = append(f.Entries, EntryOf(p.Prefix, resolve.Resolve(p.Prefix, stored, testNow)))
	}
	for i := r.IntN(7); i > 0; i-- {
		f.Geo = append(f.Geo, GeoNet{Prefix: u.randPrefix(r), Country: pick(r, poolCountry), Continent: pick(r, poolCont), ASN: uint32(r.IntN(4)), Org: pick(r, poolOrgs)})
	}
	// Lists may refer to earlier lists only, so they never form a cycle.
	var names []string
	for i := range 3 {
		name := fmt.Sprintf("l%d", i)
		f.Lists[name] = randConds(r, u, names)
		names = append(names, name)
	}
	return f, stored
}

func randRuleset(r *rand.Rand, u universe) *Ruleset {
	rs := &Ruleset{Name: "t", Hook: HookInput}
	if r.IntN(2) == 0 {
		rs.Default = pick(r, []Action{ActionAllow, ActionBlock})
	}
	for i := 1 + r.IntN(6); i > 0; i-- {
		rule := Rule{Action: pick(r, []Action{ActionBlock, ActionAllow, ActionLog, ActionThrottle}), Conds: randConds(r, u, []string{"l0", "l1", "l2"})}
		if rule.Action == ActionThrottle {
			rule.Rate = "10/second"
		}
		rs.Rules = append(rs.Rules, rule)
	}
	return rs
}

func ipset(t *testing.T, ps []netip.Prefix) *netipx.IPSet {
	t.Helper()
	var b netipx.IPSetBuilder
	for _, p := range ps {
		b.AddPrefix(p)
	}
	s, err := b.IPSet()
	require.NoError(t, err)
	return s
}

// requireMinimal checks that ps is sorted, disjoint and that no two prefixes
// could be merged (the output of an IPSet for the same addresses).
func requireMinimal(t *testing.T, ps []netip.Prefix) {
	t.Helper()
	require.Equal(t, nilIfEmpty(ipset(t, ps).Prefixes()), nilIfEmpty(ps))
}

// TestCompileMatchesNaive is the proof of correctness of Compile, DenyList and
// Explain: random universes, every address checked against a naive evaluator.
func TestCompileMatchesNaive(t *testing.T) {
	t.Parallel()
	for _, u := range []universe{uni4, uni6} {
		t.Run(u.base.String(), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(1, uint64(u.base.Addr().BitLen())))
			iterations := 300
			if testing.Short() {
				iterations = 40
			}
			for it := range iterations {
				f, stored := randFacts(r, u)
				rs := randRuleset(r, u)
				c, err := Compile(rs, f)
				require.NoError(t, err)
				checkCompiled(t, it, u, rs, f, stored, c, r)
			}
		})
	}
}

func checkCompiled(t *testing.T, it int, u universe, rs *Ruleset, f *Facts, stored []resolve.Prefix, c *Compiled, r *rand.Rand) {
	sets := make([]*netipx.IPSet, len(rs.Rules)+1)
	var all netipx.IPSetBuilder
	total := 0
	for i := range sets {
		ps := c.Unmatched
		if i == len(rs.Rules) && rs.Default != ActionBlock {
			require.Empty(t, ps.V4)
			require.Empty(t, ps.V6)
			// Rebuild the unmatched set as the complement of the deciding rules
			// so the partition and membership checks below still cover it.
			var b netipx.IPSetBuilder
			b.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
			b.AddPrefix(netip.MustParsePrefix("::/0"))
			for j, r := range c.Rules {
				if r.Rule.Action != ActionLog {
					b.RemoveSet(sets[j])
				}
			}
			s, err := b.IPSet()
			require.NoError(t, err)
			ps = PrefixSet{}
			for _, p := range s.Prefixes() {
				if p.Addr().Is4() {
					ps.V4 = append(ps.V4, p)
				} else {
					ps.V6 = append(ps.V6, p)
				}
			}
		}
		if i < len(rs.Rules) {
			ps = c.Rules[i].Set
		}
		requireMinimal(t, ps.V4)
		requireMinimal(t, ps.V6)
		sets[i] = ipset(t, append(slices.Clone(ps.V4), ps.V6...))
		if i == len(rs.Rules) || rs.Rules[i].Action != ActionLog {
			// Non-log sets and the unmatched set partition the address space.
			for _, rg := range sets[i].Ranges() {
				total++
				all.AddRange(rg)
			}
			for j := 0; j < i; j++ {
				if j < len(rs.Rules) && rs.Rules[j].Action != ActionLog {
					require.False(t, sets[i].Overlaps(sets[j]), "iteration %d: sets %d and %d overlap", it, i, j)
				}
			}
		}
	}
	allSet, err := all.IPSet()
	require.NoError(t, err)
	full := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	require.Equal(t, full, allSet.Prefixes(), "iteration %d: non-log sets do not cover the address space", it)

	dv4, dv6 := DenyList(c)
	deny := ipset(t, append(dv4, dv6...))

	addrs := []netip.Addr{u.base.Addr().Prev(), netipx.PrefixLastIP(u.base).Next(), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
	for a := u.base.Addr(); u.base.Contains(a); a = a.Next() {
		addrs = append(addrs, a)
	}
	for _, a := range addrs {
		want := naiveDecide(t, rs, f, stored, a)
		for i, s := range sets {
			require.Equal(t, slices.Contains(want, i), s.Contains(a), "iteration %d: address %s set %d (want %v)\nruleset:\n%s\nfacts: %+v", it, a, i, want, Format(rs), f)
		}
		decided := want[len(want)-1]
		action := rs.Default
		if decided < len(rs.Rules) {
			action = rs.Rules[decided].Action
		}
		require.Equal(t, action == ActionBlock, deny.Contains(a), "iteration %d: address %s deny list", it, a)
		if r.IntN(8) == 0 {
			ex, err := Explain(rs, f.Lists, a, resolve.Resolve(netip.PrefixFrom(a, a.BitLen()), stored, testNow), f.Geo)
			require.NoError(t, err)
			wantDecided := decided
			if decided == len(rs.Rules) {
				wantDecided = -1
			}
			require.Equal(t, wantDecided, ex.Decided, "iteration %d: explain %s", it, a)
			require.Equal(t, action, ex.Action)
			require.Equal(t, nilIfEmpty(want[:len(want)-1]), ex.Logged)
		}
	}
}

func TestCompileSuppressionSplitsPrefix(t *testing.T) {
	t.Parallel()
	rs, err := Parse("ruleset s\n  block tag X\n")
	require.NoError(t, err)
	f := &Facts{Entries: []Entry{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Tags: []string{"X"}},
		{Prefix: netip.MustParsePrefix("198.51.100.77/32"), Sources: []string{"manual:alice"}},
	}}
	c, err := Compile(rs, f)
	require.NoError(t, err)
	require.Len(t, c.Rules[0].Set.V4, 8)
	require.NotContains(t, c.Rules[0].Set.V4, netip.MustParsePrefix("198.51.100.77/32"))
	require.Empty(t, c.Rules[0].Set.V6)
}

// TestCompileSuppressionHidesContainedTags is issue 10's suppression case:
// 192.0.2.0/24 (source a), 192.0.2.64/26 (source b) and 192.0.2.5/32
// (source c) all tagged supx, then a manual suppress of supx on the /24. The
// resolver hides supx on all three; the render of "block tag supx" is empty.
func TestCompileSuppressionHidesContainedTags(t *testing.T) {
	t.Parallel()
	rs, err := Parse("ruleset s\n  block tag supx\n")
	require.NoError(t, err)
	tag := func(src string) resolve.Assertion {
		return resolve.Assertion{Kind: resolve.KindTag, Value: "supx", Source: src}
	}
	stored := []resolve.Prefix{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Assertions: []resolve.Assertion{tag("feed:a"), {Kind: resolve.KindSuppress, Value: "supx", Source: "manual:alice"}}},
		{Prefix: netip.MustParsePrefix("192.0.2.64/26"), Assertions: []resolve.Assertion{tag("feed:b")}},
		{Prefix: netip.MustParsePrefix("192.0.2.5/32"), Assertions: []resolve.Assertion{tag("feed:c")}},
	}
	f := &Facts{}
	for _, p := range stored {
		f.Entries = append(f.Entries, EntryOf(p.Prefix, resolve.Resolve(p.Prefix, stored, testNow)))
	}
	require.Equal(t, []Entry{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Classification: "unknown", Sources: []string{"feed:a", "manual:alice"}},
		{Prefix: netip.MustParsePrefix("192.0.2.64/26"), Classification: "unknown", Sources: []string{"feed:a", "feed:b", "manual:alice"}},
		{Prefix: netip.MustParsePrefix("192.0.2.5/32"), Classification: "unknown", Sources: []string{"feed:a", "feed:c", "manual:alice"}},
	}, f.Entries)
	c, err := Compile(rs, f)
	require.NoError(t, err)
	require.Empty(t, c.Rules[0].Set.V4)
	require.Empty(t, c.Rules[0].Set.V6)

	addr := netip.MustParseAddr("192.0.2.70")
	ex, err := Explain(rs, nil, addr, resolve.Resolve(netip.PrefixFrom(addr, 32), stored, testNow), nil)
	require.NoError(t, err)
	require.Equal(t, -1, ex.Decided)
	require.Empty(t, ex.Facts.Tags)
	require.Equal(t, []TagFact{
		{Tag: "supx", Source: "feed:b", Prefix: netip.MustParsePrefix("192.0.2.64/26")},
		{Tag: "supx", Source: "feed:a", Prefix: netip.MustParsePrefix("192.0.2.0/24")},
	}, ex.Facts.Suppressed)
}

// TestCompileRangesMatchesCompile checks CompileRanges against the part of
// Compile inside random spans, given only the facts a render source hands
// it: everything inside the span plus the most specific entry and geo net
// containing it.
func TestCompileRangesMatchesCompile(t *testing.T) {
	t.Parallel()
	for _, u := range []universe{uni4, uni6} {
		t.Run(u.base.String(), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(3, uint64(u.base.Addr().BitLen())))
			for it := range 300 {
				f, _ := randFacts(r, u)
				rs := randRuleset(r, u)
				full, err := Compile(rs, f)
				require.NoError(t, err)
				span := u.randPrefix(r)
				if r.IntN(4) == 0 && len(f.Entries) > 0 {
					span = pick(r, f.Entries).Prefix
				}
				sf := &Facts{Lists: f.Lists}
				var outerE *Entry
				for i, e := range f.Entries {
					switch {
					case span.Contains(e.Prefix.Addr()) && e.Prefix.Bits() > span.Bits():
						sf.Entries = append(sf.Entries, e)
					case e.Prefix.Contains(span.Addr()) && e.Prefix.Bits() <= span.Bits() && (outerE == nil || e.Prefix.Bits() > outerE.Prefix.Bits()):
						outerE = &f.Entries[i]
					}
				}
				if outerE != nil {
					sf.Entries = append(sf.Entries, *outerE)
				}
				var outerG *GeoNet
				for i, g := range f.Geo {
					switch {
					case span.Contains(g.Prefix.Addr()) && g.Prefix.Bits() > span.Bits():
						sf.Geo = append(sf.Geo, g)
					case g.Prefix.Contains(span.Addr()) && g.Prefix.Bits() <= span.Bits() && (outerG == nil || g.Prefix.Bits() >= outerG.Prefix.Bits()):
						outerG = &f.Geo[i]
					}
				}
				if outerG != nil {
					sf.Geo = append(sf.Geo, *outerG)
				}
				ranges, err := CompileRanges(rs, sf, span)
				require.NoError(t, err)
				require.Len(t, ranges, len(rs.Rules)+1)
				part := &Compiled{Rules: make([]CompiledRule, len(rs.Rules))}
				for i, set := range ranges {
					ps := &part.Unmatched
					if i < len(rs.Rules) {
						ps = &part.Rules[i].Set
					}
					for j, r := range set {
						require.True(t, j == 0 || set[j-1].To().Next().Less(r.From()), "ranges sorted, disjoint and maximal")
						require.True(t, span.Contains(r.From()) && span.Contains(r.To()))
						if span.Addr().Is4() {
							ps.V4 = r.AppendPrefixes(ps.V4)
						} else {
							ps.V6 = r.AppendPrefixes(ps.V6)
						}
					}
				}
				in := ipset(t, []netip.Prefix{span})
				clip := func(ps PrefixSet) []netip.Prefix {
					var b netipx.IPSetBuilder
					for _, p := range append(slices.Clone(ps.V4), ps.V6...) {
						b.AddPrefix(p)
					}
					b.Intersect(in)
					s, err := b.IPSet()
					require.NoError(t, err)
					return nilIfEmpty(s.Prefixes())
				}
				for i := range rs.Rules {
					require.Equal(t, clip(full.Rules[i].Set), nilIfEmpty(append(slices.Clone(part.Rules[i].Set.V4), part.Rules[i].Set.V6...)), "iteration %d rule %d span %s", it, i, span)
				}
				require.Equal(t, clip(full.Unmatched), nilIfEmpty(append(slices.Clone(part.Unmatched.V4), part.Unmatched.V6...)), "iteration %d unmatched", it)
			}
		})
	}
}

func TestCompileNotCoversEverything(t *testing.T) {
	t.Parallel()
	rs, err := Parse("ruleset n\n  block not tag X\n")
	require.NoError(t, err)
	f := &Facts{Entries: []Entry{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Tags: []string{"X"}}}}
	c, err := Compile(rs, f)
	require.NoError(t, err)
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
	b.RemovePrefix(netip.MustParsePrefix("203.0.113.0/24"))
	want, err := b.IPSet()
	require.NoError(t, err)
	require.Equal(t, want.Prefixes(), c.Rules[0].Set.V4)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("::/0")}, c.Rules[0].Set.V6)
}

func TestCompileListErrors(t *testing.T) {
	t.Parallel()
	rs, err := Parse("ruleset l\n  block list a\n")
	require.NoError(t, err)
	for name, lists := range map[string]map[string][]Cond{
		"cycle":   {"a": {{Kind: KindList, Values: []string{"b"}}}, "b": {{Kind: KindList, Values: []string{"a"}}}},
		"self":    {"a": {{Kind: KindTag, Values: []string{"x"}}, {Kind: KindList, Values: []string{"a"}}}},
		"unknown": {"a": {{Kind: KindList, Values: []string{"nope"}}}},
		"empty":   {"a": nil},
	} {
		_, err := Compile(rs, &Facts{Lists: lists})
		require.Error(t, err, name)
		_, err = Explain(rs, lists, netip.MustParseAddr("192.0.2.1"), resolve.View{}, nil)
		require.Error(t, err, name)
	}
}

func TestCompileRejectsBadClassification(t *testing.T) {
	t.Parallel()
	rs, err := Parse("ruleset c\n  block classification malicious\n")
	require.NoError(t, err)
	_, err = Compile(rs, &Facts{Entries: []Entry{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Classification: "evil"}}})
	require.ErrorContains(t, err, `"evil"`)
}

func TestExplainShowsFacts(t *testing.T) {
	t.Parallel()
	rs, err := Parse(`ruleset e
  default block
  log source feed:*
  block tag ipsum and not country US
  allow org "example"
`)
	require.NoError(t, err)
	stored := []resolve.Prefix{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Assertions: []resolve.Assertion{
			{Kind: resolve.KindTag, Value: "ipsum", Source: "feed:ipsum"},
			{Kind: resolve.KindClassification, Value: "suspicious", Source: "feed:ipsum"},
		}},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Assertions: []resolve.Assertion{{Kind: resolve.KindClassification, Value: "benign", Source: "manual:alice"}}},
	}
	geo := []GeoNet{{Prefix: netip.MustParsePrefix("192.0.2.0/25"), Country: "DE", Continent: "EU", ASN: 64500, Org: "Example GmbH"}}
	addr := netip.MustParseAddr("192.0.2.7")
	ex, err := Explain(rs, nil, addr, resolve.Resolve(netip.PrefixFrom(addr, 32), stored, testNow), geo)
	require.NoError(t, err)
	require.Equal(t, 1, ex.Decided)
	require.Equal(t, ActionBlock, ex.Action)
	require.Equal(t, []int{0}, ex.Logged)
	require.Equal(t, []TagFact{{Tag: "ipsum", Source: "feed:ipsum", Prefix: netip.MustParsePrefix("192.0.2.0/24")}}, ex.Facts.Tags)
	require.Equal(t, "benign", ex.Facts.Classification)
	require.Equal(t, "manual:alice", ex.Facts.ClassificationSource)
	require.Equal(t, netip.MustParsePrefix("192.0.2.7/32"), ex.Facts.ClassificationFrom)
	require.True(t, ex.Facts.Manual)
	require.Equal(t, []string{"feed:ipsum", "manual:alice"}, ex.Facts.Sources)
	require.Equal(t, "DE", ex.Facts.Geo.Country)
	require.Equal(t, `has tag "ipsum" from feed:ipsum on 192.0.2.0/24`, ex.Rules[1].Conds[0].Reason)
	require.Equal(t, `classification is "benign" (manual, from manual:alice on 192.0.2.7/32)`, mustExplainCond(t, "classification benign", addr, ex.Facts).Reason)
	require.True(t, ex.Rules[2].Matched)

	v6 := netip.MustParseAddr("2001:db8::1")
	ex, err = Explain(rs, nil, v6, resolve.Resolve(netip.PrefixFrom(v6, 128), stored, testNow), geo)
	require.NoError(t, err)
	require.Equal(t, -1, ex.Decided)
	require.Equal(t, ActionBlock, ex.Action)
	require.Empty(t, ex.Facts.Classification, "no classification asserted")
	require.Nil(t, ex.Facts.Geo)
}

func mustExplainCond(t *testing.T, selector string, addr netip.Addr, af AddrFacts) CondExplanation {
	t.Helper()
	conds, err := ParseSelector(selector)
	require.NoError(t, err)
	ce, err := explainCond(conds[0], &Facts{}, addr, &af, nil)
	require.NoError(t, err)
	return ce
}

// BenchmarkCompile1M compiles 3 rules over 1M random /32 entries (mostly
// tagged) and a few thousand /24s.
func BenchmarkCompile1M(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 7))
	f := &Facts{Entries: make([]Entry, 0, 1_000_000+2000)}
	tags := [][]string{{"ipsum"}, {"ssh"}, {"ipsum", "ssh"}, nil}
	for range 1_000_000 {
		a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		f.Entries = append(f.Entries, Entry{Prefix: netip.PrefixFrom(a, 32), Tags: tags[r.IntN(4)], Classification: "suspicious", Sources: []string{"feed:ipsum"}})
	}
	for range 2000 {
		a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), 0})
		f.Entries = append(f.Entries, Entry{Prefix: netip.PrefixFrom(a, 24), Tags: []string{"spamhaus"}, Classification: "malicious"})
	}
	rs, err := Parse("ruleset bench\n  default allow\n  allow tag ssh and source manual:*\n  block classification malicious\n  block tag ipsum, spamhaus\n")
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for b.Loop() {
		c, err := Compile(rs, f)
		require.NoError(b, err)
		n = len(c.Rules[2].Set.V4)
	}
	b.ReportMetric(float64(n), "prefixes/op")
}
