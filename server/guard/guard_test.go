package guard

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"
)

func mp(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestDefault(t *testing.T) {
	t.Parallel()
	g := New(Default())
	for _, a := range []string{"10.1.2.3", "127.0.0.1", "169.254.1.1", "224.0.0.1", "100.64.0.1", "8.8.8.8", "1.1.1.3", "9.9.9.9", "198.41.0.4", "2001:503:ba3e::2:30", "::1", "fe80::1", "fd00::1", "ff02::1", "104.16.0.1", "151.101.1.1", "140.82.112.3"} {
		require.True(t, g.Contains(netip.MustParseAddr(a)), a)
	}
	// Documentation ranges are the "internet" of this project's tests.
	for _, a := range []string{"192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1", "8.8.8.9", "1.1.1.2"} {
		require.False(t, g.Contains(netip.MustParseAddr(a)), a)
	}
	roots := 0
	for _, e := range Default() {
		require.True(t, e.Prefix.IsValid())
		require.Equal(t, e.Prefix.Masked(), e.Prefix)
		require.NotEmpty(t, e.Reason)
		if e.Reason == "DNS root server a.root-servers.net" {
			roots++
		}
	}
	require.Equal(t, 2, roots)
}

func TestDefaultGitHubExcludesAzure(t *testing.T) {
	t.Parallel()
	gh, err := githubOutsideAzure()
	require.NoError(t, err)
	az, err := readList("microsoft-azure.json")
	require.NoError(t, err)
	var b netipx.IPSetBuilder
	for _, p := range az {
		b.AddPrefix(p)
	}
	azure, err := b.IPSet()
	require.NoError(t, err)
	require.NotEmpty(t, gh)
	for _, p := range gh {
		require.False(t, azure.OverlapsPrefix(p), p)
	}
}

func TestFilterSplitsWidePrefix(t *testing.T) {
	t.Parallel()
	g := New(Default())
	v4, v6, removed := g.Filter([]netip.Prefix{mp("8.8.0.0/16"), mp("198.51.100.0/24")}, []netip.Prefix{mp("2001:db8::/32")}, 3)
	require.Equal(t, []Removed{
		{Prefix: mp("8.8.4.4/32"), Rule: 3, Reason: "public resolver"},
		{Prefix: mp("8.8.8.8/32"), Rule: 3, Reason: "public resolver"},
	}, removed)
	var b netipx.IPSetBuilder
	b.AddPrefix(mp("8.8.0.0/16"))
	b.AddPrefix(mp("198.51.100.0/24"))
	b.Remove(netip.MustParseAddr("8.8.8.8"))
	b.Remove(netip.MustParseAddr("8.8.4.4"))
	want, err := b.IPSet()
	require.NoError(t, err)
	require.Equal(t, want.Prefixes(), v4)
	require.Equal(t, []netip.Prefix{mp("2001:db8::/32")}, v6)
}

func TestFilterEverything(t *testing.T) {
	t.Parallel()
	g := New(Default())
	v4, v6, removed := g.Filter([]netip.Prefix{mp("0.0.0.0/0")}, []netip.Prefix{mp("::/0")}, 1)
	require.NotEmpty(t, v4)
	require.NotEmpty(t, v6)
	kept := ipset(t, append(v4, v6...))
	var rb netipx.IPSetBuilder
	for _, r := range removed {
		rb.AddPrefix(r.Prefix)
	}
	rem, err := rb.IPSet()
	require.NoError(t, err)
	require.False(t, kept.Overlaps(rem))
	require.True(t, rem.Equal(g.set))
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

func randPrefix(r *rand.Rand) netip.Prefix {
	// Inside 10.0.0.0/22 with lengths 20..32, so prefixes nest and overlap often.
	a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
	return netip.PrefixFrom(a, 20+r.IntN(13)).Masked()
}

// TestFilterRandom checks Filter against a per-address evaluation.
func TestFilterRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	reasons := []string{"a", "b", "c"}
	for it := range 300 {
		var entries []Entry
		for i := r.IntN(8); i > 0; i-- {
			entries = append(entries, Entry{Prefix: randPrefix(r), Reason: reasons[r.IntN(3)]})
		}
		var in []netip.Prefix
		for i := r.IntN(6); i > 0; i-- {
			in = append(in, randPrefix(r))
		}
		g := New(entries)
		v4, v6, removed := g.Filter(in, nil, it)
		require.Empty(t, v6)
		if len(v4) > 0 {
			require.Equal(t, ipset(t, v4).Prefixes(), v4, "kept list is minimal")
		}
		inSet, kept := ipset(t, in), ipset(t, v4)
		for a := netip.MustParseAddr("10.0.0.0"); a.Less(netip.MustParseAddr("10.0.16.0")); a = a.Next() {
			// The most specific entry containing a (first given on ties) decides the reason.
			want := ""
			bits := -1
			for _, e := range entries {
				if e.Prefix.Contains(a) && e.Prefix.Bits() > bits {
					want, bits = e.Reason, e.Prefix.Bits()
				}
			}
			guarded := bits >= 0
			require.Equal(t, inSet.Contains(a) && !guarded, kept.Contains(a), "iteration %d: %s", it, a)
			got := ""
			for _, rm := range removed {
				if rm.Prefix.Contains(a) {
					require.Empty(t, got, "removed pieces overlap")
					got = rm.Reason
					require.Equal(t, it, rm.Rule)
				}
			}
			if inSet.Contains(a) && guarded {
				require.Equal(t, want, got, "iteration %d: %s", it, a)
			} else {
				require.Empty(t, got)
			}
		}
	}
}

func BenchmarkFilter(b *testing.B) {
	g := New(Default())
	r := rand.New(rand.NewPCG(1, 2))
	in := make([]netip.Prefix, 0, 300_000)
	for range 300_000 {
		in = append(in, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}), 32))
	}
	in = append(in, mp("8.0.0.0/8"))
	b.ReportAllocs()
	for b.Loop() {
		g.Filter(in, nil, 1)
	}
}

// TestSpecialUseReason: the special-use set (documentation included) names
// why an address is special; public addresses are not in it.
func TestSpecialUseReason(t *testing.T) {
	t.Parallel()
	g := New(SpecialUse())
	for addr, want := range map[string]string{
		"192.0.2.1":       "special-use: documentation (RFC 5737, RFC 3849)",
		"203.0.113.255":   "special-use: documentation (RFC 5737, RFC 3849)",
		"2001:db8::1":     "special-use: documentation (RFC 5737, RFC 3849)",
		"10.1.2.3":        "special-use: private network (RFC 1918)",
		"::ffff:10.1.2.3": "special-use: private network (RFC 1918)",
		"100.64.0.1":      "special-use: shared address space (RFC 6598)",
		"127.0.0.1":       "special-use: IPv4 special-use (RFC 5735)",
		"fd00::1":         "special-use: IPv6 unique local (RFC 4193)",
		"fe80::1":         "special-use: IPv6 link-local (RFC 4291)",
		"224.0.0.1":       "special-use: IPv4 multicast (RFC 5771)",
	} {
		got, ok := g.Reason(netip.MustParseAddr(addr))
		require.True(t, ok, addr)
		require.Equal(t, want, got, addr)
	}
	for _, addr := range []string{"1.1.1.1", "8.8.8.8", "2606:4700::1"} {
		got, ok := g.Reason(netip.MustParseAddr(addr))
		require.False(t, ok, addr)
		require.Empty(t, got)
	}
}
