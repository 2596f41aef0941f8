package bouncer

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"
)

// naiveSet is the model of one AddrSet: a map of single addresses and the ranges
// merged from scratch by netipx on every change.
type naiveSet struct {
	addrs  map[netip.Addr]bool
	ranges []netipx.IPRange
}

// apply is the delta as the protocol defines it (deletes first, then adds) computed
// the slow way; it returns the kernel changes that take the old set to the new one.
func (m *naiveSet) apply(t *testing.T, add, del []string, v6 bool) SetDelta {
	t.Helper()
	addSingle, addWide, err := parsePrefixes(add, v6)
	require.NoError(t, err)
	delSingle, delWide, err := parsePrefixes(del, v6)
	require.NoError(t, err)
	var d SetDelta
	next := maps.Clone(m.addrs)
	for _, a := range delSingle {
		delete(next, a)
	}
	for _, a := range addSingle {
		next[a] = true
	}
	for a := range next {
		if !m.addrs[a] {
			d.AddHash = append(d.AddHash, a)
		}
	}
	for a := range m.addrs {
		if !next[a] {
			d.DelHash = append(d.DelHash, a)
		}
	}
	slices.SortFunc(d.AddHash, netip.Addr.Compare)
	slices.SortFunc(d.DelHash, netip.Addr.Compare)
	m.addrs = next

	var b netipx.IPSetBuilder
	for _, r := range m.ranges {
		b.AddRange(r)
	}
	for _, p := range delWide {
		b.RemovePrefix(p)
	}
	for _, p := range addWide {
		b.AddPrefix(p)
	}
	set, err := b.IPSet()
	require.NoError(t, err)
	fresh := set.Ranges()
	for _, r := range fresh {
		if !slices.Contains(m.ranges, r) {
			d.AddRanges = append(d.AddRanges, r)
		}
	}
	for _, r := range m.ranges {
		if !slices.Contains(fresh, r) {
			d.DelRanges = append(d.DelRanges, r)
		}
	}
	m.ranges = fresh
	return d
}

func (m *naiveSet) sortedAddrs() []netip.Addr {
	return slices.SortedFunc(maps.Keys(m.addrs), netip.Addr.Compare)
}

// checkChunked asserts the invariants of a chunked sequence.
func checkChunked[T sortedKey[T]](t *testing.T, c chunked[T]) {
	t.Helper()
	require.Len(t, c.firsts, len(c.chunks))
	n := 0
	for i, ch := range c.chunks {
		if len(ch) == 0 || len(ch) > chunkMax || ch[0] != c.firsts[i] {
			require.Failf(t, "bad chunk", "chunk %d: %d elements (at most %d), first %v, index %v", i, len(ch), chunkMax, ch[0], c.firsts[i])
		}
		if i > 0 && c.firsts[i-1].compare(ch[0]) >= 0 {
			require.Failf(t, "chunks out of order", "chunk %d", i)
		}
		if !slices.IsSortedFunc(ch, T.compare) || len(slices.CompactFunc(slices.Clone(ch), func(a, b T) bool { return a.compare(b) == 0 })) != len(ch) {
			require.Failf(t, "chunk out of order", "chunk %d", i)
		}
		n += len(ch)
	}
	require.Equal(t, n, c.Len())
	if n == 0 {
		require.Nil(t, c.chunks, "an empty sequence is the zero value")
	}
}

// randomPrefixes draws n prefixes of the family from a small space (so that adds
// and deletes collide, overlap and touch): mostly single addresses, written bare or
// with their full length, and some wider prefixes.
func randomPrefixes(rng *rand.Rand, n int, v6 bool) []string {
	out := make([]string, 0, n)
	for range n {
		var a netip.Addr
		bits, minBits := 32, 24
		if v6 {
			// 2001:db8::/108: 2^20 addresses, enough for sets of many chunks of
			// addresses and of ranges.
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(rng.IntN(16)), 14: byte(rng.IntN(256)), 15: byte(rng.IntN(256))})
			bits, minBits = 128, 118
		} else {
			nets := [][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}}
			n := nets[rng.IntN(len(nets))]
			a = netip.AddrFrom4([4]byte{n[0], n[1], n[2], byte(rng.IntN(256))})
		}
		switch r := rng.IntN(10); {
		case r < 5:
			out = append(out, a.String())
		case r < 7:
			out = append(out, netip.PrefixFrom(a, bits).String())
		default:
			// Not masked: the parser masks it.
			out = append(out, netip.PrefixFrom(a, minBits+rng.IntN(bits-minBits)).String())
		}
	}
	return out
}

// present draws up to n members of m as prefixes, so that deletes hit.
func (m *naiveSet) present(rng *rand.Rand, n int) []string {
	var out []string
	addrs := slices.Collect(maps.Keys(m.addrs))
	for range n {
		if len(addrs) > 0 && rng.IntN(3) > 0 {
			out = append(out, addrs[rng.IntN(len(addrs))].String())
		} else if len(m.ranges) > 0 {
			r := m.ranges[rng.IntN(len(m.ranges))]
			ps := r.Prefixes()
			out = append(out, ps[rng.IntN(len(ps))].String())
		}
	}
	return out
}

// TestApplyDeltaRandom applies random deltas to a ruleset and compares every step
// with the naive model: the resulting sets exactly, the kernel add and delete lists
// exactly (same elements, same order), and the state before each delta, which must
// be left as it was (other goroutines read it).
func TestApplyDeltaRandom(t *testing.T) {
	t.Parallel()
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 14))
			rs, err := NewRulesetState(Render{Ruleset: "r", Version: 1, Hook: HookInput, Default: ActionBlock,
				Rules: []RenderRule{{ID: 7, Action: ActionBlock}}})
			require.NoError(t, err)
			models := []*naiveSet{{addrs: map[netip.Addr]bool{}}, {addrs: map[netip.Addr]bool{}}}
			for step := range 200 {
				// Grow for a while, then shrink, then churn; now and then a burst.
				nAdd, nDel := rng.IntN(60), rng.IntN(60)
				switch {
				case step < 70:
					nAdd *= 4
				case step < 100:
					nDel *= 6
				case rng.IntN(20) == 0:
					nAdd, nDel = 600, 600
				}
				rr := RenderRule{ID: 7}
				var want [2]SetDelta
				for fam, m := range models {
					v6 := fam == 1
					// Some adds are present already, some deletes absent.
					add := append(randomPrefixes(rng, nAdd, v6), m.present(rng, nAdd/8)...)
					del := append(m.present(rng, nDel), randomPrefixes(rng, nDel/4, v6)...)
					if v6 {
						rr.AddV6, rr.DelV6 = add, del
					} else {
						rr.AddV4, rr.DelV4 = add, del
					}
					want[fam] = m.apply(t, add, del, v6)
				}
				// The slow checks (every set rendered to strings) now and then.
				slow := step%10 == 0
				var before Render
				if slow {
					before = rs.Render()
				}
				next, d, err := rs.ApplyDelta(Render{Ruleset: "r", Delta: true, BaseVersion: rs.Version, Version: rs.Version + 1, Rules: []RenderRule{rr}})
				require.NoError(t, err, "step %d", step)
				if slow {
					require.Equal(t, before, rs.Render(), "step %d: the old state changed", step)
				}

				var got [2]SetDelta
				if len(d.Rules) > 0 {
					require.Len(t, d.Rules, 1)
					got = [2]SetDelta{d.Rules[0].V4, d.Rules[0].V6}
				}
				for fam, m := range models {
					set := []AddrSet{next.Rules[0].V4, next.Rules[0].V6}[fam]
					msg := fmt.Sprintf("step %d v6=%v", step, fam == 1)
					require.Equal(t, want[fam], got[fam], msg)
					require.Equal(t, orEmpty(m.sortedAddrs()), orEmpty(slices.Collect(set.Addrs())), msg)
					require.Equal(t, orEmpty(m.ranges), orEmpty(slices.Collect(set.Ranges())), msg)
					checkChunked(t, set.addrs)
					checkChunked(t, set.ranges)
					if slow {
						// Built from its strings (the state file), the set is the same.
						again, err := buildAddrSet(set.strings(), fam == 1)
						require.NoError(t, err)
						require.True(t, again.Equal(set), msg)
					}
				}
				rs = next
			}
			t.Logf("final sizes: v4 %d addrs %d ranges, v6 %d addrs %d ranges",
				rs.Rules[0].V4.NumAddrs(), rs.Rules[0].V4.NumRanges(), rs.Rules[0].V6.NumAddrs(), rs.Rules[0].V6.NumRanges())
		})
	}
}

// orEmpty makes a nil slice an empty one, so that emptiness compares equal.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
