package worker_test

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/feed"
)

// BenchmarkApplyFeed measures store.ApplyFeed (COPY + set-based merge in one
// transaction) for real feeds, from an empty database and as a 5% diff (5% of
// the entries replaced by new ones). Parsing is outside the timer.
//
//	go test ./worker/ -run '^$' -bench ApplyFeed -benchtime 5x
func BenchmarkApplyFeed(b *testing.B) {
	feeds := sharedDir(b) + "/data/feeds/"
	for _, tc := range []struct{ name, file, format string }{
		{"firehol_level4", "firehol/firehol_level4.netset", feed.FormatList},
		{"ipsum", "ipsum/ipsum.txt", feed.FormatIPsum},
	} {
		f, err := os.Open(feeds + tc.file)
		require.NoError(b, err)
		res, err := feed.Parse(tc.format, feed.Options{}, f)
		require.NoError(b, err)
		require.NoError(b, f.Close())
		all := res.Prefixes

		// diff: the last 5% of entries swapped for as many unseen addresses.
		n := len(all) / 20
		alt := append([]netip.Prefix(nil), all[:len(all)-n]...)
		a := netip.MustParseAddr("100.64.0.1")
		for range n {
			alt = append(alt, netip.PrefixFrom(a, 32))
			a = a.Next()
		}

		setupBench := func(b *testing.B) (testBundle, func(ps []netip.Prefix) store.FeedRun) {
			tb := setup(b)
			tb.putFeed(b, store.Feed{Name: "bench", Format: tc.format, Tag: "bench", Classification: "suspicious", Enabled: true})
			now := time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)
			apply := func(ps []netip.Prefix) store.FeedRun {
				now = now.Add(time.Minute)
				run, err := tb.st.ApplyFeed(tb.ctx, "bench", store.FeedUpdate{Prefixes: ps, StartedAt: now, Now: now})
				require.NoError(b, err)
				return run
			}
			return tb, apply
		}

		b.Run(tc.name+"/scratch", func(b *testing.B) {
			tb, apply := setupBench(b)
			for b.Loop() {
				b.StopTimer()
				_, err := tb.st.Pool().Exec(tb.ctx, `TRUNCATE prefixes CASCADE`)
				require.NoError(b, err)
				_, err = tb.st.Pool().Exec(tb.ctx, `VACUUM ANALYZE prefixes`)
				require.NoError(b, err)
				b.StartTimer()
				run := apply(all)
				require.EqualValues(b, len(all), run.Added)
			}
			b.ReportMetric(float64(len(all)), "entries")
		})
		b.Run(tc.name+"/diff5pct", func(b *testing.B) {
			_, apply := setupBench(b)
			apply(all)
			cur := alt
			for b.Loop() {
				run := apply(cur)
				require.EqualValues(b, n, run.Added)
				require.EqualValues(b, n, run.Removed)
				if len(cur) > 0 && cur[len(cur)-1] == alt[len(alt)-1] {
					cur = all
				} else {
					cur = alt
				}
			}
			b.ReportMetric(float64(n), "changed")
		})
	}
}
