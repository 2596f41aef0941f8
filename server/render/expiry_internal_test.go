package render

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/policy"
)

// stubFacts is a FactSnapshot with a generation and a sequence only.
type stubFacts struct {
	FactSnapshot
	gen uint64
	seq int64
}

func (s stubFacts) Gen() uint64 { return s.gen }
func (s stubFacts) Seq() int64  { return s.seq }

func TestSeqGens(t *testing.T) {
	t.Parallel()
	var s seqGens
	for _, f := range []stubFacts{{gen: 1, seq: 10}, {gen: 2, seq: 10}, {gen: 3, seq: 12}, {gen: 5, seq: 20}} {
		s.note(f)
	}
	// The first generation at a sequence, or of the latest sequence before.
	for seq, want := range map[int64]uint64{10: 1, 11: 1, 12: 3, 19: 3, 20: 5, 99: 5} {
		gen, ok := s.at(seq)
		require.True(t, ok, "seq %d", seq)
		require.Equal(t, want, gen, "seq %d", seq)
	}
	_, ok := s.at(9)
	require.False(t, ok)
}

func TestDecisionSetOverlapping(t *testing.T) {
	t.Parallel()
	set := &DecisionSet{}
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "198.51.100.7/32", "198.51.100.8/29", "198.51.101.0/32", "2001:db8::/32"} {
		set.List = append(set.List, Decision{Prefix: netip.MustParsePrefix(p), Rule: 1})
	}
	got := func(p string) []string {
		out := []string{}
		for _, d := range set.Overlapping(netip.MustParsePrefix(p)) {
			out = append(out, d.Prefix.String())
		}
		return out
	}
	require.Equal(t, []string{"198.51.100.0/24", "198.51.100.7/32"}, got("198.51.100.7/32"))
	require.Equal(t, []string{"198.51.100.0/24", "198.51.100.7/32", "198.51.100.8/29"}, got("198.51.100.0/27"))
	require.Equal(t, []string{"198.51.100.0/24", "198.51.100.7/32", "198.51.100.8/29", "198.51.101.0/32"}, got("198.51.100.0/23"))
	require.Equal(t, []string{"2001:db8::/32"}, got("2001:db8::1/128"))
	require.Equal(t, []string{}, got("203.0.113.0/24"))
}

func TestLastingSet(t *testing.T) {
	t.Parallel()
	lasting := func(text, p string) bool {
		rs, err := policy.Parse(text)
		require.NoError(t, err)
		set := &DecisionSet{lasting: lastingSet(rs, false)}
		return set.Lasting(netip.MustParsePrefix(p))
	}
	// Only assertions block: a ban ends with them.
	require.False(t, lasting("ruleset r\n  block tag bad\n", "198.51.100.7/32"))
	require.False(t, lasting("ruleset r\n  block tag bad and not tag good\n", "198.51.100.7/32"))
	// A cidr condition alone blocks its network.
	require.True(t, lasting("ruleset r\n  block tag bad\n  block cidr 203.0.113.0/28\n", "203.0.113.5/32"))
	require.True(t, lasting("ruleset r\n  block tag bad\n  block cidr 203.0.113.0/28\n", "203.0.113.0/24"))
	require.False(t, lasting("ruleset r\n  block tag bad\n  block cidr 203.0.113.0/28\n", "203.0.113.16/28"))
	// Negations and unknown classifications match a view without
	// assertions (a prefix that keeps its sightings is unknown).
	require.True(t, lasting("ruleset r\n  block not tag good\n", "198.51.100.7/32"))
	require.True(t, lasting("ruleset r\n  block classification unknown\n", "198.51.100.7/32"))
	// Geo and list conditions change without a new render: every ban lasts.
	rs, err := policy.Parse("ruleset r\n  block tag bad and country XX\n")
	require.NoError(t, err)
	require.Nil(t, lastingSet(rs, true))
	rs, err = policy.Parse("ruleset r\n  block tag bad\n  allow list friends\n")
	require.NoError(t, err)
	require.Nil(t, lastingSet(rs, false))
	// Unknown when there is no ruleset.
	require.True(t, (&DecisionSet{}).Lasting(netip.MustParsePrefix("198.51.100.7/32")))
}
