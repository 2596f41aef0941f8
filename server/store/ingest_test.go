package store_test

import (
	"context"
	"fmt"
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

func BenchmarkIngest(b *testing.B) {
	st := storetest.Store(b)
	ctx := context.Background()
	const n = 100_000
	now := time.Now()
	rows := make([]store.Observation, n)
	for i := range rows {
		rows[i] = store.Observation{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
			Source: "ingest:bench", Tags: []string{"scanner"}, Classification: "suspicious", SeenAt: now}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := 0; off < n; off += 20000 {
			if err := st.Ingest(ctx, rows[off:off+20000], "bench"); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "obs/s")
}
