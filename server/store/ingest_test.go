package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func obs(p, src string, seen time.Time, tags ...string) store.Observation {
	return store.Observation{Prefix: netip.MustParsePrefix(p), Source: src, Tags: tags, SeenAt: seen}
}

func TestIngestMergesRepeatsAndKeepsLatestClassification(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := t0.Add(time.Hour)
	a := obs("198.51.100.7/32", "ingest:a", t0, "scanner", "scanner")
	a.Classification, a.ExpiresAt = "malicious", &exp
	b := obs("198.51.100.7/32", "ingest:a", t0.Add(time.Minute), "scanner")
	b.Classification = "benign"
	c := obs("198.51.100.7/32", "ingest:a", t0.Add(-time.Minute))
	c.Classification = "suspicious" // older than b: must not win
	require.NoError(t, st.Ingest(ctx, []store.Observation{a, b, c}, "test"))

	var ps []resolve.Prefix
	require.NoError(t, st.LoadPrefixes(ctx, t0, []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}, func(p resolve.Prefix) error {
		p.Assertions = slices.Clone(p.Assertions)
		ps = append(ps, p)
		return nil
	}))
	require.Len(t, ps, 1)
	require.EqualValues(t, 3, ps[0].Sightings)
	require.Equal(t, t0.Add(-time.Minute), ps[0].FirstSeen.UTC())
	require.Equal(t, t0.Add(time.Minute), ps[0].LastSeen.UTC())
	var tags, classes int
	for _, as := range ps[0].Assertions {
		switch as.Kind {
		case resolve.KindTag:
			tags++
			require.Nil(t, as.ExpiresAt, "a later observation without a TTL makes the tag permanent")
		case resolve.KindClassification:
			classes++
			require.Equal(t, "benign", as.Value, "the newest observation decides")
		}
	}
	require.Equal(t, 1, tags)
	require.Equal(t, 1, classes)
}

func TestIngestConcurrentOverlappingBatches(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Now()
	batch := func(rev bool) []store.Observation {
		out := make([]store.Observation, 0, 2000)
		for i := 0; i < 2000; i++ {
			j := i
			if rev {
				j = 1999 - i
			}
			out = append(out, obs(fmt.Sprintf("198.51.%d.%d/32", 100+j/250, j%250), "ingest:x", now, "t"))
		}
		return out
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(rev bool) {
			defer wg.Done()
			errs <- st.Ingest(ctx, batch(rev), "test")
		}(i%2 == 1)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var ps []netip.Prefix
	for _, o := range batch(false) {
		ps = append(ps, o.Prefix)
	}
	n := 0
	require.NoError(t, st.LoadPrefixes(ctx, now, ps, func(p resolve.Prefix) error {
		n++
		require.EqualValues(t, 4, p.Sightings, "%s", p.Prefix)
		require.Len(t, p.Assertions, 1, "%s", p.Prefix)
		return nil
	}))
	require.Equal(t, 2000, n)
}

// TestIngestNewPrefixesFromTwoProcesses: two stores on one database (two
// serve processes) ingest the same new addresses at once, in opposite
// orders. Whichever creates a prefix inserts its assertions plainly; the
// other finds it existing and merges: every address ends with one tag and
// one classification row, both processes' sightings, the earlier first
// seen, and the classification of the newer observation.
func TestIngestNewPrefixesFromTwoProcesses(t *testing.T) {
	t.Parallel()
	u := storetest.URL(t)
	ctx := context.Background()
	open := func() *store.Store {
		st, err := store.Open(ctx, u, 4, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return st
	}
	a, b := open(), open()
	now := time.Now().UTC().Truncate(time.Second)
	batch := func(rev bool, class string, seen time.Time) []store.Observation {
		out := make([]store.Observation, 0, 3000)
		for i := range 3000 {
			j := i
			if rev {
				j = 2999 - i
			}
			o := obs(fmt.Sprintf("198.51.%d.%d/32", 100+j/250, j%250), "ingest:x", seen, "scanner")
			o.Classification = class
			out = append(out, o)
		}
		return out
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, w := range []struct {
		st    *store.Store
		rev   bool
		class string
		seen  time.Time
	}{{a, false, "suspicious", now.Add(-time.Second)}, {b, true, "malicious", now}} {
		wg.Go(func() { errs <- w.st.Ingest(ctx, batch(w.rev, w.class, w.seen), "test") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var ps []netip.Prefix
	for _, o := range batch(false, "", now) {
		ps = append(ps, o.Prefix)
	}
	n := 0
	require.NoError(t, a.LoadPrefixes(ctx, now, ps, func(p resolve.Prefix) error {
		n++
		require.EqualValues(t, 2, p.Sightings, "%s", p.Prefix)
		require.Len(t, p.Assertions, 2, "%s", p.Prefix)
		for _, as := range p.Assertions {
			require.Equal(t, now.Add(-time.Second), as.FirstSeen.UTC(), "%s %s", p.Prefix, as.Kind)
			if as.Kind == "classification" {
				require.Equal(t, now, as.LastSeen.UTC(), "%s", p.Prefix)
				require.Equal(t, "malicious", as.Value, "%s", p.Prefix)
			} else {
				// A tag's last_seen moves only by the grain (a minute):
				// the first process's time stays.
				require.Contains(t, []time.Time{now.Add(-time.Second), now}, as.LastSeen.UTC(), "%s", p.Prefix)
			}
		}
		return nil
	}))
	require.Equal(t, 3000, n)
}

// BenchmarkIngest measures store.Ingest (append to the observation log, then
// merge) of 100k distinct /32s per iteration in calls of 20k, and the parts:
// the durable append alone (what acknowledges an observation), and the merge
// of observations that repeat 10,000 addresses (a busy sensor fleet sees the
// same scanners again and again: a merge folds the repeats into one row
// each).
//
//	go test ./server/store/ -run '^$' -bench Ingest -benchtime 3x
func BenchmarkIngest(b *testing.B) {
	const n = 100_000
	rowsOf := func(distinct int) []store.Observation {
		now := time.Now()
		rows := make([]store.Observation, n)
		for i := range rows {
			j := i % distinct
			rows[i] = store.Observation{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(j >> 16), byte(j >> 8), byte(j)}), 32),
				Source: "ingest:bench", Tags: []string{"scanner"}, Classification: "suspicious", SeenAt: now}
		}
		return rows
	}
	ctx := context.Background()
	b.Run("distinct", func(b *testing.B) {
		st := storetest.Store(b)
		rows := rowsOf(n)
		for b.Loop() {
			for off := 0; off < n; off += 20000 {
				if err := st.Ingest(ctx, rows[off:off+20000], "bench"); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "obs/s")
	})
	b.Run("append-only", func(b *testing.B) {
		st := storetest.Store(b)
		rows := rowsOf(n)
		for b.Loop() {
			for off := 0; off < n; off += 20000 {
				if err := st.AppendObservations(ctx, rows[off:off+20000], "bench"); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "obs/s")
	})
	b.Run("repeats-10k", func(b *testing.B) {
		st := storetest.Store(b)
		rows := rowsOf(10_000)
		for b.Loop() {
			for off := 0; off < n; off += 20000 {
				if err := st.AppendObservations(ctx, rows[off:off+20000], "bench"); err != nil {
					b.Fatal(err)
				}
			}
			if err := st.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "obs/s")
	})
}

// Observations appended by a process that never merged them (it died after
// acknowledging) are merged by the next Flush of any process, exactly once:
// the sighting counts and the per-day counts say each was counted once.
func TestIngestLogLeftoversMergedOnce(t *testing.T) {
	t.Parallel()
	url := storetest.URL(t)
	ctx := context.Background()
	open := func() *store.Store {
		st, err := store.Open(ctx, url, 4, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return st
	}
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	a := open()
	require.NoError(t, a.AppendObservations(ctx, []store.Observation{
		obs("198.51.100.7/32", "ingest:a", t0, "scanner"),
		obs("198.51.100.7/32", "ingest:a", t0.Add(time.Minute), "scanner"),
		obs("198.51.100.8/32", "ingest:b", t0.Add(24*time.Hour), "scanner"),
	}, "test"))
	a.Close()
	b, c := open(), open()
	var ps []resolve.Prefix
	load := func() {
		ps = nil
		require.NoError(t, b.LoadPrefixes(ctx, t0, []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("198.51.100.8/32")},
			func(p resolve.Prefix) error { ps = append(ps, p); return nil }))
	}
	load()
	require.Empty(t, ps, "appended is not merged yet")
	// Two processes flush at once: they claim disjoint rows, and each waits
	// for the other's merge in flight before it answers.
	var wg sync.WaitGroup
	for _, st := range []*store.Store{b, c} {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, st.Flush(ctx)) }()
	}
	wg.Wait()
	load()
	require.Len(t, ps, 2)
	require.EqualValues(t, 2, ps[0].Sightings)
	require.EqualValues(t, 1, ps[1].Sightings)
	days, err := b.SightingsPerDay(ctx, t0.Add(24*time.Hour), 2)
	require.NoError(t, err)
	require.Equal(t, []store.Bucket{{Label: "01-01", Count: 2}, {Label: "01-02", Count: 1}}, days)
	require.Equal(t, int64(3), b.MergeStats().Merged+c.MergeStats().Merged)
	// Retention drops whole days older than it.
	pruned, _, _, err := b.Prune(ctx, t0.Add(60*time.Hour), 24*time.Hour, 24*time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 2, pruned)
	days, err = b.SightingsPerDay(ctx, t0.Add(24*time.Hour), 2)
	require.NoError(t, err)
	require.Equal(t, []store.Bucket{{Label: "01-01", Count: 0}, {Label: "01-02", Count: 1}}, days)
}

// MergeLag counts from an acknowledged append until a merge folds it in, and
// MergeSoon merges in the background without a caller waiting: what an ingest
// that answers once durable (IngestVisibleWithin) relies on.
func TestMergeLagAndMergeSoon(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	require.Zero(t, st.MergeLag(), "nothing appended")
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	require.NoError(t, st.AppendObservations(ctx, []store.Observation{obs("198.51.100.9/32", "ingest:a", t0, "scanner")}, "test"))
	require.Eventually(t, func() bool { return st.MergeLag() > 0 }, 10*time.Second, time.Millisecond, "appended, not merged: the lag counts")
	st.MergeSoon()
	require.Eventually(t, func() bool { return st.MergeLag() == 0 }, 30*time.Second, 10*time.Millisecond, "merged in the background")
	var ps []resolve.Prefix
	require.NoError(t, st.LoadPrefixes(ctx, t0, []netip.Prefix{netip.MustParsePrefix("198.51.100.9/32")},
		func(p resolve.Prefix) error { ps = append(ps, p); return nil }))
	require.Len(t, ps, 1)
	require.EqualValues(t, 1, ps[0].Sightings)
	require.Equal(t, store.MergeStats{Appended: 1, Merged: 1, Merges: 1, Total: st.MergeStats().Total, Max: st.MergeStats().Max}, st.MergeStats())
}
