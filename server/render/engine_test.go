package render

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
)

var engineNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// world is a random universe of stored prefixes with assertions, from which
// every entry is resolved by the one resolver, as the index would.
type world struct {
	stored map[netip.Prefix][]resolve.Assertion
	geo    []policy.GeoNet
}

var (
	worldBases = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/120")}
	worldTags  = []string{"a", "b", "c"}
	worldClass = []string{"malicious", "suspicious", "benign", "unknown"}
	worldSrcs  = []string{"feed:x", "feed:y", "manual:alice"}
)

func randWorldPrefix(r *rand.Rand) netip.Prefix {
	base := worldBases[r.IntN(len(worldBases))]
	bl := base.Addr().BitLen()
	bits := base.Bits() - 1 + r.IntN(bl-base.Bits()+2)
	a := base.Addr().As16()
	off := r.Uint32() & 0xff
	a[15] |= byte(off)
	addr := netip.AddrFrom16(a)
	if base.Addr().Is4() {
		addr = addr.Unmap()
	}
	return netip.PrefixFrom(addr, bits).Masked()
}

func randAssertions(r *rand.Rand) []resolve.Assertion {
	var out []resolve.Assertion
	for i := 1 + r.IntN(3); i > 0; i-- {
		a := resolve.Assertion{Source: worldSrcs[r.IntN(len(worldSrcs))]}
		switch r.IntN(5) {
		case 0, 1, 2:
			a.Kind, a.Value = resolve.KindTag, worldTags[r.IntN(len(worldTags))]
		case 3:
			a.Kind, a.Value = resolve.KindClassification, worldClass[r.IntN(len(worldClass))]
		case 4:
			a.Kind, a.Value, a.Source = resolve.KindSuppress, worldTags[r.IntN(len(worldTags))], "manual:alice"
		}
		out = append(out, a)
	}
	return out
}

// entries resolves every stored prefix.
func (w *world) entries() []policy.Entry {
	var all []resolve.Prefix
	for p, as := range w.stored {
		all = append(all, resolve.Prefix{Prefix: p, Assertions: as})
	}
	out := make([]policy.Entry, 0, len(all))
	for _, p := range all {
		out = append(out, policy.EntryOf(p.Prefix, resolve.Resolve(p.Prefix, all, engineNow)))
	}
	return out
}

// change alters one stored prefix at random and returns it.
func (w *world) change(r *rand.Rand) netip.Prefix {
	p := randWorldPrefix(r)
	if _, ok := w.stored[p]; ok && r.IntN(3) == 0 {
		delete(w.stored, p)
		return p
	}
	w.stored[p] = randAssertions(r)
	return p
}

func randEngineRuleset(r *rand.Rand) *policy.Ruleset {
	texts := []string{
		"block tag a", "allow tag b", "log tag c", "throttle 5/second tag b, c", "block classification malicious, suspicious",
		"block not tag a", "allow source manual:*", "block country DE", "block cidr 198.51.100.128/25", "block tag a and not tag b",
	}
	text := "ruleset t\n"
	if r.IntN(3) == 0 {
		text += "  default block\n"
	}
	for i := 1 + r.IntN(4); i > 0; i-- {
		text += "  " + texts[r.IntN(len(texts))] + "\n"
	}
	rs, err := policy.Parse(text)
	if err != nil {
		panic(err)
	}
	return rs
}

// applyDelta applies d to the sets of r and returns them per rule and family.
func applyDelta(t *testing.T, sets [][2][]string, d delta) [][2][]string {
	t.Helper()
	out := make([][2][]string, len(sets))
	for i := range sets {
		for fam := range 2 {
			cur := map[string]bool{}
			for _, s := range sets[i][fam] {
				cur[s] = true
			}
			for _, p := range d[i][fam].del {
				require.True(t, cur[p.String()], "delta deletes %s, which is not in the set", p)
				delete(cur, p.String())
			}
			for _, p := range d[i][fam].add {
				require.False(t, cur[p.String()], "delta adds %s, which is in the set", p)
				cur[p.String()] = true
			}
			for s := range cur {
				out[i][fam] = append(out[i][fam], s)
			}
			slices.Sort(out[i][fam])
		}
	}
	return out
}

func setsOf(r *Render) [][2][]string {
	out := make([][2][]string, len(r.Rules))
	for i, rule := range r.Rules {
		out[i] = [2][]string{slices.Sorted(slices.Values(rule.V4)), slices.Sorted(slices.Values(rule.V6))}
	}
	return out
}

// TestIncrementalMatchesFull applies random sequences of changes to random
// worlds and checks after each step that the incremental render equals a
// full compile of the same facts (sets, guard removals and hash), and that
// the delta applied to the previous render's sets gives the new ones.
func TestIncrementalMatchesFull(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 10))
	g := guard.New([]guard.Entry{
		{Prefix: netip.MustParsePrefix("198.51.100.16/28"), Reason: "test guard"},
		{Prefix: netip.MustParsePrefix("198.51.100.200/32"), Reason: "test host"},
		{Prefix: netip.MustParsePrefix("2001:db8::40/122"), Reason: "test v6"},
	})
	geo := []policy.GeoNet{{Prefix: netip.MustParsePrefix("198.51.100.64/26"), Country: "DE"}, {Prefix: netip.MustParsePrefix("2001:db8::/121"), Country: "DE"}}
	worlds := 60
	if testing.Short() {
		worlds = 10
	}
	for it := range worlds {
		w := &world{stored: map[netip.Prefix][]resolve.Assertion{}, geo: geo}
		for i := r.IntN(12); i > 0; i-- {
			w.change(r)
		}
		rs := randEngineRuleset(r)
		src := newMemSource(w.entries(), geo)
		snap, _ := src.Snapshot(t.Context(), true)
		st, err := newState(rs, nil, g, true, snap.Facts(true), snap.Gen())
		require.NoError(t, err)
		prev, err := st.render()
		require.NoError(t, err)
		for step := range 25 {
			var spans []netip.Prefix
			for i := 1 + r.IntN(3); i > 0; i-- {
				spans = append(spans, w.change(r))
			}
			src.replace(w.entries(), geo, spans, false)
			snap, _ := src.Snapshot(t.Context(), true)
			changed, geoChanged, ok := snap.ChangedSince(st.gen)
			require.True(t, ok)
			require.False(t, geoChanged)
			d, err := st.update(snap, changed)
			require.NoError(t, err)
			got, err := st.render()
			require.NoError(t, err)
			full, err := Build(rs, snap.Facts(true), g)
			require.NoError(t, err)
			msg := fmt.Sprintf("world %d step %d spans %v\n%s", it, step, spans, policy.Format(rs))
			require.Equal(t, full.Rules, got.Rules, msg)
			require.Equal(t, full.GuardRemoved, got.GuardRemoved, msg)
			require.Equal(t, full.Hash, got.Hash, msg)
			require.Equal(t, setsOf(got), applyDelta(t, setsOf(prev), d), msg)
			prev = got
		}
	}
}

// TestHashIsContent checks the incremental hash against content: equal
// contents built in different orders hash equal, and any change of a set,
// of a rule's text or of the guard removals changes it.
func TestHashIsContent(t *testing.T) {
	t.Parallel()
	rs, err := policy.Parse("ruleset h\n  block tag a\n  allow tag b\n")
	require.NoError(t, err)
	e := func(p string, tags ...string) policy.Entry {
		return policy.Entry{Prefix: netip.MustParsePrefix(p), Tags: tags}
	}
	f1 := &policy.Facts{Entries: []policy.Entry{e("192.0.2.0/25", "a"), e("192.0.2.128/25", "b"), e("2001:db8::/64", "a")}}
	f2 := &policy.Facts{Entries: []policy.Entry{e("2001:db8::/64", "a"), e("192.0.2.128/25", "b"), e("192.0.2.0/25", "a")}}
	r1, err := Build(rs, f1, nil)
	require.NoError(t, err)
	r2, err := Build(rs, f2, nil)
	require.NoError(t, err)
	require.Equal(t, r1.Hash, r2.Hash)
	swapped := &policy.Facts{Entries: []policy.Entry{e("192.0.2.0/25", "b"), e("192.0.2.128/25", "a"), e("2001:db8::/64", "a")}}
	r3, err := Build(rs, swapped, nil)
	require.NoError(t, err)
	require.NotEqual(t, r1.Hash, r3.Hash, "the same CIDRs under other rules")
	other, err := policy.Parse("ruleset h\n  block tag a\n  allow tag b, c\n")
	require.NoError(t, err)
	r4, err := Build(other, f1, nil)
	require.NoError(t, err)
	require.NotEqual(t, r1.Hash, r4.Hash, "another rule text")
	r5, err := Build(rs, f1, guard.New([]guard.Entry{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: "x"}}))
	require.NoError(t, err)
	require.NotEqual(t, r1.Hash, r5.Hash, "a guard removal")
}
