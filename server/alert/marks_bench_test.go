package alert_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// BenchmarkDiff: comparing the views of 1,000 changed host prefixes (each
// gaining a wanted tag, under a /48 with a classification) between two
// snapshots of an index of 20,000 prefixes. WatchMarks pays this once per
// published snapshot, off the ingest path; with no rule of the address
// kinds it pays nothing (the "none wanted" case).
func BenchmarkDiff(b *testing.B) {
	st := storetest.Store(b)
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(time.Hour)
	var obs []store.Observation
	base := netip.MustParseAddr("2001:db8::")
	a := base
	for range 20_000 {
		a = a.Next()
		obs = append(obs, store.Observation{Prefix: netip.PrefixFrom(a, 128), Source: "ingest:bench", Tags: []string{"old"}, SeenAt: now, ExpiresAt: &exp})
	}
	obs = append(obs, store.Observation{Prefix: netip.MustParsePrefix("2001:db8::/48"), Source: "ingest:bench", Classification: "suspicious", SeenAt: now})
	require.NoError(b, st.Ingest(ctx, obs, "bench"))
	ix := indextest.Start(b, st, quiet(), nil)
	prev := ix.Snapshot()
	changed := obs[:1000]
	for i := range changed {
		changed[i].Tags = []string{"scanner"}
	}
	require.NoError(b, st.Ingest(ctx, changed, "bench"))
	require.NoError(b, ix.CatchUp(ctx))
	cur := ix.Snapshot()
	for _, c := range []struct {
		name string
		w    alert.Wanted
		want int
	}{
		{"scanner", alert.Wanted{Tags: map[string]bool{"scanner": true}}, 1000},
		{"all", alert.Wanted{AllTags: true, AllClassifications: true}, 1000},
		{"none wanted", alert.Wanted{}, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			require.Len(b, alert.Diff(prev, cur, c.w), c.want)
			b.ReportAllocs()
			for b.Loop() {
				alert.Diff(prev, cur, c.w)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/prefix")
		})
	}
}

// BenchmarkReportMarks: reporting 1,000 transitions (present, then absent,
// alternately, so every report stores and half store events) in one call.
func BenchmarkReportMarks(b *testing.B) {
	st := storetest.Store(b)
	ctx := context.Background()
	at := time.Now()
	ms := make([]store.Mark, 1000)
	a := netip.MustParseAddr("2001:db8::")
	for i := range ms {
		a = a.Next()
		ms[i] = store.Mark{Subject: a.String(), Mark: "tag:scanner", Event: store.Event{Kind: store.EventAddressTag, SubjectType: "address", Subject: a.String(),
			Details: map[string]any{"tag": "scanner"}}}
	}
	b.ReportAllocs()
	seq := int64(0)
	for b.Loop() {
		seq++
		for i := range ms {
			ms[i].Seq, ms[i].At, ms[i].Present = seq, at, seq%2 == 1
		}
		if _, err := st.ReportMarks(ctx, ms); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/mark")
}
