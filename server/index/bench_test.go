package index_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIndex1M measures the index at a million stored prefixes with
// three million assertions (storetest.Seed; -short: 100k): the load from
// PostgreSQL and the heap it keeps, lookups, a full walk, the compiler's
// full entries, and applying one change. Each reports its own figure, so
// it means the same at -benchtime 1x.
func BenchmarkIndex1M(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	st := storetest.Store(b)
	storetest.Seed(b, st, n)
	ctx := context.Background()
	ix := index.New(st, logger(b), time.Now)
	if err := ix.Reload(ctx); err != nil {
		b.Fatal(err)
	}

	b.Run("Load", func(b *testing.B) {
		for b.Loop() {
			before := heapBytes()
			start := time.Now()
			loaded := index.New(st, logger(b), time.Now)
			if err := loaded.Reload(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s/load")
			b.ReportMetric(float64(heapBytes()-before)/(1<<20), "MB-heap")
			b.ReportMetric(float64(loaded.Snapshot().Len()), "prefixes")
			runtime.KeepAlive(loaded)
		}
	})
	s := ix.Snapshot()
	r := rand.New(rand.NewPCG(1, 2))
	addrs := make([]netip.Addr, 100_000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(r.IntN(46)), byte(r.IntN(256)), byte(r.IntN(256))})
	}

	b.Run("Lookup", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			hits := 0
			for _, a := range addrs {
				if _, ok := s.Lookup(a); ok {
					hits++
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(len(addrs)), "ns/lookup")
			b.ReportMetric(float64(hits)/float64(len(addrs)), "hit-ratio")
		}
	})
	b.Run("Walk", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			rows := 0
			s.Walk(func(netip.Prefix, resolve.View) bool { rows++; return true })
			b.ReportMetric(time.Since(start).Seconds(), "s/walk")
			b.ReportMetric(float64(rows), "rows")
		}
	})
	b.Run("Entries", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			f := s.Entries(false)
			b.ReportMetric(time.Since(start).Seconds(), "s/entries")
			b.ReportMetric(float64(len(f.Entries)), "entries")
		}
	})
	// GC: the time of one full garbage collection with the index live, the
	// work every GC cycle of a serve process does (the lookup tail at 5k
	// req/s is requests waiting on it).
	b.Run("GC", func(b *testing.B) {
		for b.Loop() {
			runtime.GC()
			start := time.Now()
			runtime.GC()
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms/gc")
			runtime.KeepAlive(s)
		}
	})
	b.Run("ApplyOne", func(b *testing.B) {
		for b.Loop() {
			const changes = 20
			var total time.Duration
			for i := range changes {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, 0, byte(i)}), 32)
				if err := st.Ingest(ctx, []store.Observation{{Prefix: p, Source: "ingest:bench", Tags: []string{"new"}, SeenAt: time.Now()}}, "bench"); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := ix.CatchUp(ctx); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				if !ix.Snapshot().Stored(p) {
					b.Fatal("change not applied")
				}
			}
			b.ReportMetric(float64(total.Microseconds())/changes/1000, "ms/apply")
		}
	})
}
