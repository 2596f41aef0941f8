package render

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"go4.org/netipx"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"

	"github.com/stretchr/testify/require"
)

func renderOf(rules ...Rule) *Render {
	for i := range rules {
		rules[i].ID = i + 1
	}
	return &Render{Ruleset: "edge", Version: 1, Rules: rules}
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func decisionStrings(s *DecisionSet) []string {
	out := []string{}
	for _, d := range s.List {
		out = append(out, d.Prefix.String())
	}
	return out
}

// TestDecisionsPerStoredPrefix covers the definition of a decision: one per
// blocked stored prefix, split by what is not blocked, never merged.
func TestDecisionsPerStoredPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		served  []string // the block rule's served CIDRs
		owners  []string
		want    []string
		wantAll []string // optional: other rule
	}{
		// The neighbour case of issue 11: .6 and .7 are one served /31 but two decisions.
		{name: "neighbours", served: []string{"198.51.100.6/31"}, owners: []string{"198.51.100.6/32", "198.51.100.7/32"},
			want: []string{"198.51.100.6/32", "198.51.100.7/32"}},
		// A stored /31 that only carries the two (nothing of its own) adds nothing.
		{name: "covered parent", served: []string{"198.51.100.6/31"}, owners: []string{"198.51.100.6/31", "198.51.100.6/32", "198.51.100.7/32"},
			want: []string{"198.51.100.6/32", "198.51.100.7/32"}},
		// A blocked /24 with an allowed /32 inside: the pieces are the decisions.
		{name: "allow splits", served: []string{"198.51.100.0/30", "198.51.100.5/32", "198.51.100.6/31", "198.51.100.8/29", "198.51.100.16/28", "198.51.100.32/27", "198.51.100.64/26", "198.51.100.128/25"},
			owners: []string{"198.51.100.0/24", "198.51.100.4/32"},
			want:   []string{"198.51.100.0/30", "198.51.100.5/32", "198.51.100.6/31", "198.51.100.8/29", "198.51.100.16/28", "198.51.100.32/27", "198.51.100.64/26", "198.51.100.128/25"}},
		// A blocked /24 with a blocked /32 inside: both, overlapping.
		{name: "nested blocked", served: []string{"198.51.100.0/24"}, owners: []string{"198.51.100.0/24", "198.51.100.7/32"},
			want: []string{"198.51.100.0/24", "198.51.100.7/32"}},
		// A stored /24 that is not blocked around a blocked /32: only the /32.
		{name: "unblocked parent", served: []string{"198.51.100.7/32"}, owners: []string{"198.51.100.0/24", "198.51.100.7/32"},
			want: []string{"198.51.100.7/32"}},
		// Blocked addresses in no stored prefix (a cidr or geo condition):
		// the served CIDRs around the stored prefixes.
		{name: "unowned", served: []string{"203.0.113.0/30"}, owners: []string{"203.0.113.1/32"},
			want: []string{"203.0.113.0/32", "203.0.113.1/32", "203.0.113.2/31"}},
		{name: "v6", served: []string{"2001:db8::/127"}, owners: []string{"2001:db8::/128", "2001:db8::1/128"},
			want: []string{"2001:db8::/128", "2001:db8::1/128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var v4, v6 []string
			for _, s := range tc.served {
				if netip.MustParsePrefix(s).Addr().Is4() {
					v4 = append(v4, s)
				} else {
					v6 = append(v6, s)
				}
			}
			r := renderOf(Rule{Action: "allow", Text: "allow classification benign"}, Rule{Action: "block", Text: "block tag bad", V4: v4, V6: v6})
			got := decisionsOf(r, prefixes(tc.owners...))
			require.Equal(t, tc.want, decisionStrings(got))
			for _, d := range got.List {
				require.Equal(t, 2, d.Rule)
			}
		})
	}
}

// TestDecisionsNeighbourDelta: blocking .6 while .7 is blocked adds only .6.
func TestDecisionsNeighbourDelta(t *testing.T) {
	t.Parallel()
	before := decisionsOf(renderOf(Rule{Action: "block", Text: "block tag bad", V4: []string{"198.51.100.7/32"}}), prefixes("198.51.100.7/32"))
	after := decisionsOf(renderOf(Rule{Action: "block", Text: "block tag bad", V4: []string{"198.51.100.6/31"}}), prefixes("198.51.100.6/32", "198.51.100.7/32"))
	add, del := diffDecisions(before.List, after.List)
	require.Equal(t, []Decision{{Prefix: netip.MustParsePrefix("198.51.100.6/32"), Rule: 1}}, add)
	require.Empty(t, del)
}

// TestDecisionsCoverServedSets: over random stored prefixes and blocked
// addresses, the decisions cover exactly the block rules' served sets, each
// lies inside them, and every stored prefix wholly blocked that has
// addresses of its own is a decision of its own.
func TestDecisionsCoverServedSets(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 11))
	for round := range 300 {
		var owners []netip.Prefix
		for range 1 + rng.IntN(12) {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(64))})
			owners = append(owners, netip.PrefixFrom(a, 26+rng.IntN(7)).Masked())
		}
		slices.SortFunc(owners, comparePrefix)
		owners = slices.Compact(owners)
		var sb netipx.IPSetBuilder
		for range rng.IntN(20) {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(64))})
			sb.AddPrefix(netip.PrefixFrom(a, 28+rng.IntN(5)).Masked())
		}
		served, _ := sb.IPSet()
		var v4 []string
		for _, p := range served.Prefixes() {
			v4 = append(v4, p.String())
		}
		got := decisionsOf(renderOf(Rule{Action: "block", Text: "block tag bad", V4: v4}), owners)
		var ub netipx.IPSetBuilder
		for _, d := range got.List {
			require.True(t, served.ContainsPrefix(d.Prefix), "round %d: %s is not blocked", round, d.Prefix)
			ub.AddPrefix(d.Prefix)
		}
		union, _ := ub.IPSet()
		require.True(t, union.Equal(served), "round %d: owners %v served %v decisions %v", round, owners, v4, decisionStrings(got))
	}
}

// FuzzDecodeDecisions: stored steps never panic the decoder, and what decodes
// encodes back to the same bytes.
func FuzzDecodeDecisions(f *testing.F) {
	f.Add(encodeDecisions([]Decision{{Prefix: netip.MustParsePrefix("198.51.100.6/32"), Rule: 1}, {Prefix: netip.MustParsePrefix("2001:db8::/120"), Rule: 3}}))
	f.Add([]byte{4, 33, 1, 2, 3, 4, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := decodeDecisions(b)
		if err != nil {
			return
		}
		require.Equal(t, b, encodeDecisions(ds)[:len(b)])
	})
}

// BenchmarkDecisionsOf1M measures the decision set of one render over the
// incremental benchmark's million prefixes (what a new render version costs
// once a CrowdSec bouncer asked for the ruleset).
func BenchmarkDecisionsOf1M(b *testing.B) {
	src := incBenchSource(b)
	rs, err := policy.Parse(incBenchRuleset)
	require.NoError(b, err)
	snap, _ := src.Snapshot(b.Context(), false)
	st, err := newState(rs, nil, guard.New(guard.Default()), false, snap.Facts(false), snap.Gen())
	require.NoError(b, err)
	r, err := st.render()
	require.NoError(b, err)
	owners := storedPrefixes(snap)
	var n int
	for b.Loop() {
		n = len(decisionsOf(r, owners).List)
	}
	b.ReportMetric(float64(n), "decisions")
}
