package ui

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// TestDashboardFollowsTheIndex: the prefix counts and the tag chart come from
// the index's effective views, are kept while the index has not changed, and
// follow it when it has.
func TestDashboardFollowsTheIndex(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	log := slog.New(slog.DiscardHandler)
	ix := indextest.Start(t, st, log, nil)
	h, err := New(Deps{Store: st, Index: ix, Logger: log, Now: time.Now})
	require.NoError(t, err)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: "feed:a", Tags: []string{"scan"}, Classification: "malicious", SeenAt: now},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Source: "ingest:b", Tags: []string{"ssh"}, SeenAt: now},
	}, "test"))
	require.NoError(t, ix.CatchUp(ctx))

	first, err := h.refreshStats(ctx)
	require.NoError(t, err)
	require.Equal(t, dashboardCounts{Prefixes: 2, Malicious: 2, Tags: 2}, first.Counts)
	require.Equal(t, []store.Bucket{{Label: "scan", Count: 2}, {Label: "ssh", Count: 1}}, first.Tags)

	again, err := h.refreshStats(ctx)
	require.NoError(t, err)
	require.Equal(t, first.Gen, again.Gen)
	require.Same(t, &first.Tags[0], &again.Tags[0], "an unchanged index is not walked again")

	require.NoError(t, st.PutOverride(ctx, netip.MustParsePrefix("192.0.2.0/24"), store.Override{SuppressTags: []string{"scan"}}, "alice", now))
	require.NoError(t, ix.CatchUp(ctx))
	after, err := h.refreshStats(ctx)
	require.NoError(t, err)
	require.Greater(t, after.Gen, first.Gen)
	require.Equal(t, dashboardCounts{Prefixes: 2, Malicious: 2, Tags: 2}, after.Counts)
	require.Equal(t, []store.Bucket{{Label: "ssh", Count: 1}}, after.Tags)
}
