package bouncer_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/bouncer"
)

// TestRulesetWithoutDefault: the server renders a ruleset without a default action as
// "default": ""; the bouncer enforces its rules and lets unmatched packets pass.
func TestRulesetWithoutDefault(t *testing.T) {
	t.Parallel()
	r := render(1)
	r.Default = ""
	rs, err := bouncer.NewRulesetState(r)
	require.NoError(t, err)
	l, err := bouncer.BuildLayout("muninn", -10, 1, (&bouncer.State{}).With(rs), nil)
	require.NoError(t, err)
	last := l.Chains[len(l.Chains)-1].Rules
	require.Equal(t, "return", last[len(last)-1].Verdict, "unmatched packets leave the ruleset's chain")

	r.Rules[0].Action = ""
	_, err = bouncer.NewRulesetState(r)
	require.ErrorContains(t, err, "unsupported action", "a rule needs an action")
}

// TestNewAddrSet: addresses come out sorted without duplicates, overlapping and
// adjacent ranges merged; mixed families, zones and IPv4-mapped addresses are refused.
func TestNewAddrSet(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddr
	rng := func(from, to string) netipx.IPRange { return netipx.IPRangeFrom(a(from), a(to)) }

	set, err := bouncer.NewAddrSet(
		[]netip.Addr{a("203.0.113.9"), a("192.0.2.1"), a("203.0.113.9"), a("198.51.100.7")},
		[]netipx.IPRange{rng("198.51.100.0", "198.51.100.127"), rng("192.0.2.0", "192.0.2.15"), rng("198.51.100.128", "198.51.100.255"), rng("192.0.2.8", "192.0.2.31")})
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{a("192.0.2.1"), a("198.51.100.7"), a("203.0.113.9")}, slices.Collect(set.Addrs()))
	require.Equal(t, []netipx.IPRange{rng("192.0.2.0", "192.0.2.31"), rng("198.51.100.0", "198.51.100.255")}, slices.Collect(set.Ranges()))
	require.Equal(t, 5, set.Len())
	require.Equal(t, 3, set.NumAddrs())
	require.Equal(t, 2, set.NumRanges())

	// Sorted, normalized input is taken as it is; a repeated address still counts once.
	same, err := bouncer.NewAddrSet(
		[]netip.Addr{a("192.0.2.1"), a("198.51.100.7"), a("198.51.100.7"), a("203.0.113.9")},
		[]netipx.IPRange{rng("192.0.2.0", "192.0.2.31"), rng("198.51.100.0", "198.51.100.255")})
	require.NoError(t, err)
	require.True(t, same.Equal(set))
	require.False(t, same.Equal(bouncer.AddrSet{}))
	empty, err := bouncer.NewAddrSet(nil, nil)
	require.NoError(t, err)
	require.True(t, bouncer.AddrSet{}.Equal(empty))
	require.Zero(t, empty.Len())

	v6, err := bouncer.NewAddrSet([]netip.Addr{a("2001:db8::2"), a("2001:db8::1")}, []netipx.IPRange{rng("2001:db8:1::", "2001:db8:1::ff")})
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{a("2001:db8::1"), a("2001:db8::2")}, slices.Collect(v6.Addrs()))
	require.Equal(t, []netipx.IPRange{rng("2001:db8:1::", "2001:db8:1::ff")}, slices.Collect(v6.Ranges()))

	for _, tc := range []struct {
		addrs  []netip.Addr
		ranges []netipx.IPRange
		err    string
	}{
		{[]netip.Addr{a("192.0.2.1"), a("2001:db8::1")}, nil, "address 2001:db8::1: all addresses must be of one family"},
		{[]netip.Addr{a("192.0.2.1")}, []netipx.IPRange{rng("2001:db8::", "2001:db8::1")}, "address 2001:db8::: all addresses must be of one family"},
		{[]netip.Addr{a("::ffff:192.0.2.1")}, nil, "address ::ffff:192.0.2.1: zones and IPv4-mapped IPv6 addresses are not allowed"},
		{[]netip.Addr{a("fe80::1%eth0")}, nil, "address fe80::1%eth0: zones and IPv4-mapped IPv6 addresses are not allowed"},
		{[]netip.Addr{{}}, nil, "address set: invalid address"},
		{nil, []netipx.IPRange{rng("192.0.2.9", "192.0.2.1")}, "address set: range 192.0.2.9-192.0.2.1 is not valid"},
	} {
		_, err := bouncer.NewAddrSet(tc.addrs, tc.ranges)
		require.ErrorContains(t, err, tc.err)
	}
}
