package render

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// TestHubRendersIncrementally drives a hub over an in-memory source: a fact
// change yields a new version whose delta, applied to the previous render,
// gives the new one, and which equals a full build of the same facts; a
// change that does not alter the content stores no version.
func TestHubRendersIncrementally(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := store.Open(ctx, storetest.URL(t), 5, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	e := func(p string, tags ...string) policy.Entry {
		return policy.Entry{Prefix: netip.MustParsePrefix(p), Tags: tags, Sources: []string{"feed:x"}}
	}
	src := newMemSource([]policy.Entry{e("192.0.2.0/24", "bad"), e("2001:db8::/48", "bad")}, nil)
	h := NewHub(st, slog.New(slog.NewTextHandler(t.Output(), nil)), time.Now, Options{Source: src})
	text := "ruleset edge\n  block tag bad\n  allow tag good\n"
	_, _, err = st.PutRuleset(ctx, "edge", text, []byte(`{}`), "test")
	require.NoError(t, err)
	require.NoError(t, h.Recompute(ctx))
	first := h.Latest("edge")
	require.NotNil(t, first)
	require.Equal(t, []string{"192.0.2.0/24"}, first.Render.Rules[0].V4)

	// Suppressing the tag on one address splits the /24.
	src.setEntry(netip.MustParsePrefix("192.0.2.7/32"), &policy.Entry{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Sources: []string{"feed:x", "manual:alice"}})
	require.NoError(t, h.Recompute(ctx))
	second := h.Latest("edge")
	require.Equal(t, first.Render.Version+1, second.Render.Version)
	b, ok, err := h.DeltaSince("edge", first.Render.Version)
	require.NoError(t, err)
	require.True(t, ok)
	var d Render
	require.NoError(t, json.Unmarshal(b, &d))
	require.True(t, d.Delta)
	require.Equal(t, first.Render.Version, d.BaseVersion)
	require.Equal(t, second.Render.Hash, d.Hash)
	require.Equal(t, []string{"192.0.2.0/24"}, d.Rules[0].DelV4)
	require.Equal(t, []string{"192.0.2.0/30", "192.0.2.4/31", "192.0.2.6/32", "192.0.2.8/29", "192.0.2.16/28", "192.0.2.32/27", "192.0.2.64/26", "192.0.2.128/25"}, d.Rules[0].AddV4)
	require.Empty(t, d.Rules[0].AddV6)
	require.Empty(t, d.Rules[1].AddV4)

	snap, err := src.Snapshot(ctx, false)
	require.NoError(t, err)
	full, err := Build(mustParseRuleset(t, text), snap.Facts(false), guard.New(guard.Default()))
	require.NoError(t, err)
	require.Equal(t, full.Hash, second.Render.Hash)
	require.Equal(t, full.Rules, second.Render.Rules)

	// Tagging it good moves it to the allow rule; the delta from the first
	// version composes both changes.
	src.setEntry(netip.MustParsePrefix("192.0.2.7/32"), &policy.Entry{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Tags: []string{"good"}})
	require.NoError(t, h.Recompute(ctx))
	third := h.Latest("edge")
	require.Equal(t, second.Render.Version+1, third.Render.Version)
	require.Equal(t, []string{"192.0.2.7/32"}, third.Render.Rules[1].V4)
	b, ok, err = h.DeltaSince("edge", first.Render.Version)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, json.Unmarshal(b, &d))
	require.Equal(t, []string{"192.0.2.7/32"}, d.Rules[1].AddV4)
	require.Len(t, d.Rules[0].AddV4, 8)

	// A change that alters no render stores no version.
	src.setEntry(netip.MustParsePrefix("203.0.113.0/24"), &policy.Entry{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Tags: []string{"other"}})
	require.NoError(t, h.Recompute(ctx))
	require.Same(t, third, h.Latest("edge"))
	stored, err := st.LatestRender(ctx, "edge")
	require.NoError(t, err)
	require.Equal(t, third.Render.Version, stored.Version)
	require.Equal(t, third.Render.Hash, stored.Hash)
}

func mustParseRuleset(t testing.TB, text string) *policy.Ruleset {
	t.Helper()
	rs, err := policy.Parse(text)
	require.NoError(t, err)
	return rs
}

// TestHubsConvergeFromOwnSources runs two hubs on one database, each over
// its own in-memory source as two serve processes each hold their own index:
// a process whose facts lag keeps its version until it catches up, then
// takes the version the other stored for the same content, with the same
// bytes.
func TestHubsConvergeFromOwnSources(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := storetest.URL(t)
	open := func() *store.Store {
		st, err := store.Open(ctx, url, 5, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return st
	}
	e := policy.Entry{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Tags: []string{"bad"}}
	srcA, srcB := newMemSource([]policy.Entry{e}, nil), newMemSource([]policy.Entry{e}, nil)
	now := func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
	a := NewHub(open(), slog.New(slog.DiscardHandler), now, Options{Source: srcA})
	b := NewHub(open(), slog.New(slog.DiscardHandler), now, Options{Source: srcB})
	_, _, err := a.store.PutRuleset(ctx, "edge", "ruleset edge\n  block tag bad\n", []byte(`{}`), "test")
	require.NoError(t, err)
	require.NoError(t, a.Recompute(ctx))
	require.NoError(t, b.Recompute(ctx))
	va, vb := a.Latest("edge"), b.Latest("edge")
	require.Equal(t, va.Render.Version, vb.Render.Version)
	require.Equal(t, string(va.Body()), string(vb.Body()))

	host := netip.MustParsePrefix("192.0.2.9/32")
	srcA.setEntry(host, &policy.Entry{Prefix: host})
	require.NoError(t, a.Recompute(ctx))
	require.NoError(t, b.Recompute(ctx))
	require.Equal(t, va.Render.Version+1, a.Latest("edge").Render.Version)
	require.Same(t, vb, b.Latest("edge"), "b's facts lag: it keeps its render")

	srcB.setEntry(host, &policy.Entry{Prefix: host})
	require.NoError(t, b.Recompute(ctx))
	na, nb := a.Latest("edge"), b.Latest("edge")
	require.Equal(t, na.Render.Version, nb.Render.Version, "the same content takes the stored version")
	require.Equal(t, na.Render.Hash, nb.Render.Hash)
	require.Equal(t, string(na.Body()), string(nb.Body()))
	stored, err := b.store.LatestRender(ctx, "edge")
	require.NoError(t, err)
	require.Equal(t, na.Render.Version, stored.Version, "one change, one version")
	d, ok, err := b.DeltaSince("edge", vb.Render.Version)
	require.NoError(t, err)
	require.True(t, ok)
	var dr Render
	require.NoError(t, json.Unmarshal(d, &dr))
	require.Equal(t, []string{"192.0.2.0/24"}, dr.Rules[0].DelV4)
	require.Len(t, dr.Rules[0].AddV4, 8)
}

// TestHubCompilesBulkChangesInFull: a change in which more than
// maxChangedSpans spans change a set is compiled in full after the first
// ones were spliced (splicing each would copy the set each time), and
// bouncers still get one delta with exactly what changed.
func TestHubCompilesBulkChangesInFull(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := store.Open(ctx, storetest.URL(t), 5, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	entries := []policy.Entry{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Tags: []string{"bad"}, Sources: []string{"feed:x"}}}
	src := newMemSource(entries, nil)
	h := NewHub(st, slog.New(slog.NewTextHandler(t.Output(), nil)), time.Now, Options{Source: src})
	text := "ruleset bulk\n  block tag bad\n"
	_, _, err = st.PutRuleset(ctx, "bulk", text, []byte(`{}`), "test")
	require.NoError(t, err)
	require.NoError(t, h.Recompute(ctx))
	first := h.Latest("bulk")
	require.NotNil(t, first)

	// The /24 goes (a span spliced before the full compile), and
	// 3×maxChangedSpans new blocked addresses, none adjacent to another,
	// come.
	n := 3 * maxChangedSpans
	spans := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	var want []string
	var next []policy.Entry
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 7), 15: byte(i<<1) & 0xff}), 128)
		spans = append(spans, p)
		next = append(next, policy.Entry{Prefix: p, Tags: []string{"bad"}, Sources: []string{"feed:x"}})
	}
	slices.SortFunc(spans, comparePrefix)
	for _, p := range spans[1:] {
		want = append(want, p.String())
	}
	src.replace(next, nil, spans, false)
	require.NoError(t, h.Recompute(ctx))
	second := h.Latest("bulk")
	require.Equal(t, first.Render.Version+1, second.Render.Version)
	require.Equal(t, want, second.Render.Rules[0].V6)
	require.Empty(t, second.Render.Rules[0].V4)

	b, ok, err := h.DeltaSince("bulk", first.Render.Version)
	require.NoError(t, err)
	require.True(t, ok, "a full compile of the same rules still yields a delta")
	var d Render
	require.NoError(t, json.Unmarshal(b, &d))
	require.True(t, d.Delta)
	require.Equal(t, want, d.Rules[0].AddV6)
	require.Empty(t, d.Rules[0].DelV6)
	require.Empty(t, d.Rules[0].AddV4)
	require.Equal(t, []string{"192.0.2.0/24"}, d.Rules[0].DelV4)
}
