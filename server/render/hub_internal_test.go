package render

import (
	"encoding/json"
	"log/slog"
	"net/netip"
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
