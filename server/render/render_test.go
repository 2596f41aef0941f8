package render_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func mustParse(t testing.TB, text string) *policy.Ruleset {
	t.Helper()
	rs, err := policy.Parse(text)
	require.NoError(t, err)
	return rs
}

func TestBuildGuardHashAndDelta(t *testing.T) {
	t.Parallel()
	rs := mustParse(t, "ruleset edge\n  hook input\n  scope tcp dport 80,8000-8002\n  block tag bad\n  allow tag bad\n")
	facts := &policy.Facts{Entries: []policy.Entry{
		{Prefix: netip.MustParsePrefix("8.8.8.0/24"), Tags: []string{"bad"}},
		{Prefix: netip.MustParsePrefix("2001:db8::/48"), Tags: []string{"bad"}},
	}}
	g := guard.New(guard.Default())
	r, err := render.Build(rs, facts, g)
	require.NoError(t, err)
	require.Equal(t, []uint16{80, 8000, 8001, 8002}, r.Scope.DPorts)
	require.NotContains(t, r.Rules[0].V4, "8.8.8.0/24")
	require.Len(t, r.Rules[0].V4, 8, "8.8.8.0/24 minus the resolver 8.8.8.8/32")
	require.Equal(t, []string{"2001:db8::/48"}, r.Rules[0].V6)
	require.NotEmpty(t, r.GuardRemoved)
	for _, rm := range r.GuardRemoved {
		require.Equal(t, 1, rm.Rule)
	}
	require.Empty(t, r.Rules[1].V4, "first match: the allow rule decides nothing the block rule took")

	again, err := render.Build(rs, facts, g)
	require.NoError(t, err)
	require.Equal(t, r.Hash, again.Hash, "the hash depends only on content")

	facts.Entries = append(facts.Entries, policy.Entry{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Tags: []string{"bad"}})
	next, err := render.Build(rs, facts, g)
	require.NoError(t, err)
	require.NotEqual(t, r.Hash, next.Hash)
	r.Version, next.Version = 1, 2
	d, ok := render.Delta(r, next)
	require.True(t, ok)
	require.True(t, d.Delta)
	require.EqualValues(t, 1, d.BaseVersion)
	require.Equal(t, []string{"192.0.2.1/32"}, d.Rules[0].AddV4)
	require.Empty(t, d.Rules[0].DelV4)
	require.Nil(t, d.Rules[0].V4)

	other, err := render.Build(mustParse(t, "ruleset edge\n  block tag bad\n"), facts, g)
	require.NoError(t, err)
	_, ok = render.Delta(r, other)
	require.False(t, ok, "another rule list needs a full render")
}

func runHub(t *testing.T, st *store.Store) *render.Hub {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := render.NewHub(st, log, time.Now, render.Options{Debounce: 10 * time.Millisecond, Source: indextest.Start(t, st, log, nil).RenderSource()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func waitFor(t *testing.T, h *render.Hub, name string, since int64) *render.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := h.Wait(ctx, name, since)
	require.NotNil(t, s, "no render of %s above version %d", name, since)
	return s
}

// TestHubsConverge runs two hubs on one database, as two muninn serve
// processes would: each change is stored once, and both serve the same
// version and bytes.
func TestHubsConverge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.URL(t)
	open := func() *store.Store {
		st, err := store.Open(ctx, url, 5, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return st
	}
	stA, stB := open(), open()
	a, b := runHub(t, stA), runHub(t, stB)

	_, _, err := stA.PutRuleset(ctx, "edge", "ruleset edge\n  block tag bad\n", []byte(`{}`), "test")
	require.NoError(t, err)
	sa, sb := waitFor(t, a, "edge", 0), waitFor(t, b, "edge", 0)
	require.Equal(t, sa.Render.Hash, sb.Render.Hash)

	require.NoError(t, stB.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: "ingest:t", Tags: []string{"bad"}, SeenAt: time.Now()}}, "test"))
	na := waitFor(t, a, "edge", sa.Render.Version)
	nb := waitFor(t, b, "edge", sb.Render.Version)
	require.Equal(t, na.Render.Version, nb.Render.Version)
	require.Equal(t, na.Render.Hash, nb.Render.Hash)
	require.Equal(t, string(na.Body()), string(nb.Body()))
	require.Equal(t, []string{"192.0.2.0/24"}, na.Render.Rules[0].V4)

	stored, err := stA.LatestRender(ctx, "edge")
	require.NoError(t, err)
	require.Equal(t, na.Render.Version, stored.Version)
	require.Equal(t, sa.Render.Version+1, stored.Version, "one change, one new version")

	// Deleting the ruleset drops it from both caches.
	require.NoError(t, stA.DeleteRuleset(ctx, "edge", "test"))
	for _, h := range []*render.Hub{a, b} {
		for {
			ch := h.Changed()
			if h.Latest("edge") == nil {
				break
			}
			<-ch
		}
	}
}

// TestHubRecomputesAtExpiry: an expiring tag announces nothing, yet the render
// drops the prefix once it expires.
func TestHubRecomputesAtExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Store(t)
	h := runHub(t, st)
	_, _, err := st.PutRuleset(ctx, "edge", "ruleset edge\n  block tag bad\n", []byte(`{}`), "test")
	require.NoError(t, err)
	// Far enough ahead that a loaded machine renders the tag before it expires.
	exp := time.Now().Add(2 * time.Second)
	require.NoError(t, st.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Source: "ingest:t", Tags: []string{"bad"}, SeenAt: time.Now(), ExpiresAt: &exp}}, "test"))
	s := waitFor(t, h, "edge", 0)
	for len(s.Render.Rules[0].V4) == 0 {
		s = waitFor(t, h, "edge", s.Render.Version)
	}
	require.Equal(t, []string{"192.0.2.1/32"}, s.Render.Rules[0].V4)
	s = waitFor(t, h, "edge", s.Render.Version)
	require.Empty(t, s.Render.Rules[0].V4)
	require.False(t, time.Now().Before(exp))
}

// TestHubGeoOnlyWhenNeeded: a country condition sees the geo networks; a
// geo-free ruleset renders without loading them.
func TestHubGeoOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Store(t)
	nets := func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: netip.MustParsePrefix("192.0.2.0/25"), Country: "NL", Continent: "EU"}, nil)
	}
	_, err := st.ReplaceGeoNetworks(ctx, "test", nets)
	require.NoError(t, err)
	require.NoError(t, st.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: "ingest:t", Tags: []string{"bad"}, SeenAt: time.Now()}}, "t"))
	_, err = st.PutList(ctx, "dutch", "country NL", "t")
	require.NoError(t, err)
	_, _, err = st.PutRuleset(ctx, "geo", "ruleset geo\n  block tag bad and list dutch\n", []byte(`{}`), "t")
	require.NoError(t, err)
	_, _, err = st.PutRuleset(ctx, "plain", "ruleset plain\n  block tag bad\n", []byte(`{}`), "t")
	require.NoError(t, err)
	h := runHub(t, st)
	require.Equal(t, []string{"192.0.2.0/25"}, waitFor(t, h, "geo", 0).Render.Rules[0].V4)
	require.Equal(t, []string{"192.0.2.0/24"}, waitFor(t, h, "plain", 0).Render.Rules[0].V4)
	require.True(t, render.NeedsGeo([]policy.Cond{{Kind: policy.KindList, Values: []string{"dutch"}}}, map[string][]policy.Cond{"dutch": {{Kind: policy.KindCountry, Values: []string{"NL"}}}}))
	require.False(t, render.NeedsGeo([]policy.Cond{{Kind: policy.KindTag, Values: []string{"x"}}}, nil))
}

// TestSuppressionRendersEmpty is issue 10's suppression case as the render
// sees it: 192.0.2.0/24, 192.0.2.64/26 and 192.0.2.5/32, all tagged supx by
// three sources, after a manual suppress of supx on the /24 — each entry is
// its prefix's effective view, with no tags left. "block tag supx" renders
// nothing; before the suppression it rendered the /24.
func TestSuppressionRendersEmpty(t *testing.T) {
	t.Parallel()
	rs := mustParse(t, "ruleset s\n  block tag supx\n")
	entry := func(p string, tags []string, sources ...string) policy.Entry {
		return policy.Entry{Prefix: netip.MustParsePrefix(p), Tags: tags, Sources: sources}
	}
	supx := []string{"supx"}
	before, err := render.Build(rs, &policy.Facts{Entries: []policy.Entry{
		entry("192.0.2.0/24", supx, "feed:a"), entry("192.0.2.64/26", supx, "feed:a", "feed:b"), entry("192.0.2.5/32", supx, "feed:a", "feed:c"),
	}}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"192.0.2.0/24"}, before.Rules[0].V4)
	after, err := render.Build(rs, &policy.Facts{Entries: []policy.Entry{
		entry("192.0.2.0/24", nil, "feed:a", "manual:alice"), entry("192.0.2.64/26", nil, "feed:a", "feed:b", "manual:alice"), entry("192.0.2.5/32", nil, "feed:a", "feed:c", "manual:alice"),
	}}, nil)
	require.NoError(t, err)
	require.Empty(t, after.Rules[0].V4)
	require.Empty(t, after.Rules[0].V6)
	require.Empty(t, after.GuardRemoved)
}
