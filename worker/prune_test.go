package worker_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker"
)

// The periodic prune job deletes the prefixes whose assertions all expired
// longer ago than the retention, and keeps a live one.
func TestRiverPruneDeletesExpiredPrefixes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deps.SightingRetention, b.deps.ExpiredRetention = 24*time.Hour, time.Hour
	at := time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)
	gone, kept := netip.MustParsePrefix("192.0.2.77/32"), netip.MustParsePrefix("192.0.2.78/32")
	long := at.Add(-2 * time.Hour)
	later := at.Add(time.Hour)
	require.NoError(t, b.st.PutOverride(b.ctx, gone, store.Override{Classification: "malicious", ExpiresAt: &long}, "alice", at.Add(-3*time.Hour)))
	require.NoError(t, b.st.PutOverride(b.ctx, kept, store.Override{Classification: "malicious", ExpiresAt: &later}, "alice", at))
	_, events := startClient(t, b) // the prune job runs on start

	ev := waitFor(t, events, worker.PruneArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	rows, err := b.st.Pool().Query(b.ctx, `SELECT prefix FROM prefixes ORDER BY prefix`)
	require.NoError(t, err)
	var left []netip.Prefix
	for rows.Next() {
		var p netip.Prefix
		require.NoError(t, rows.Scan(&p))
		left = append(left, p)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []netip.Prefix{kept}, left)
}

// A feed refresh counts its entries as observations of kind feed.
func TestFeedRefreshCountsObservations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	b.deps.Metrics = worker.NewMetrics(reg, b.st)
	b.srv.set("r", []byte("192.0.2.1\n192.0.2.2\n198.51.100.0/24\n"))
	b.putFeed(t, store.Feed{Name: "r", Format: "list", Tag: "r", Enabled: true})
	_, events := startClient(t, b)
	ev := waitFor(t, events, worker.FeedRefreshArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	require.Equal(t, map[string]float64{"ingest": 0, "bouncer": 0, "feed": 3}, observedByKind(t, reg))
}

// observedByKind reads muninn_observations_ingested_total by kind.
func observedByKind(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "muninn_observations_ingested_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// A worker built without retentions (zero) prunes nothing: an unset
// retention once read as "keep nothing" and deleted every sensor event.
func TestRiverPruneZeroRetentionKeeps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)
	old := netip.MustParsePrefix("192.0.2.77/32")
	long := at.Add(-2 * time.Hour)
	require.NoError(t, b.st.PutOverride(b.ctx, old, store.Override{Classification: "malicious", ExpiresAt: &long}, "alice", at.Add(-3*time.Hour)))
	_, events := startClient(t, b)
	ev := waitFor(t, events, worker.PruneArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	var n int
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT count(*) FROM prefixes WHERE prefix = $1`, old).Scan(&n))
	require.Equal(t, 1, n)
}
