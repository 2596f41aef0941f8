package render

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

const incBenchPrefixes = 1_000_000

// incBenchEntry is the i-th benchmark entry, the same universe as the
// external BenchmarkBuild1M: mostly scattered IPv4 /32s, every 20th a /24,
// every 50th an IPv6 /64, tagged in four patterns.
func incBenchEntry(i int) policy.Entry {
	var p netip.Prefix
	switch {
	case i%50 == 0:
		p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 64)
	case i%20 == 0:
		n := uint32(0x50000000) + uint32(i)<<8
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), 0}), 24)
	default:
		n := uint32(0x14000000) + uint32(i)*13
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), 32)
	}
	tags := [][]string{{"ipsum"}, {"scanner"}, {"ipsum", "ssh"}, {"benign-crawler"}}[i%4]
	return policy.Entry{Prefix: p, Tags: tags, Sources: []string{"feed:bench"}}
}

const incBenchRuleset = "ruleset bench\n  hook input\n  scope tcp dport 22,80,443\n  allow tag benign-crawler\n  block tag ssh\n  block tag ipsum\n  throttle 10/second tag scanner\n"

func incBenchSource(b *testing.B) *memSource {
	b.Helper()
	entries := make([]policy.Entry, incBenchPrefixes)
	for i := range entries {
		entries[i] = incBenchEntry(i)
	}
	return newMemSource(entries, nil)
}

// retag changes the tags of a random benchmark entry to the next pattern,
// which moves its addresses from one rule's set to another's.
func retag(src *memSource, r *rand.Rand) {
	i := r.IntN(incBenchPrefixes)
	e := incBenchEntry(i)
	e.Tags = incBenchEntry(i + 1).Tags
	src.setEntry(e.Prefix, &e)
}

// BenchmarkIncrementalRender1M measures one fact change at 1M prefixes: the
// changed span recompiled and spliced into the per-rule sets, the render
// with its content hash, and the delta encoded as served. Target ≤ 50 ms.
func BenchmarkIncrementalRender1M(b *testing.B) {
	src := incBenchSource(b)
	rs, err := policy.Parse(incBenchRuleset)
	require.NoError(b, err)
	g := guard.New(guard.Default())
	snap, _ := src.Snapshot(b.Context(), false)
	st, err := newState(rs, nil, g, false, snap.Facts(false), snap.Gen())
	require.NoError(b, err)
	r := rand.New(rand.NewPCG(1, 1))
	var changed int
	for b.Loop() {
		b.StopTimer()
		retag(src, r)
		snap, _ := src.Snapshot(b.Context(), false)
		b.StartTimer()
		spans, _, ok := snap.ChangedSince(st.gen)
		if !ok {
			b.Fatal("lost the change log")
		}
		d, err := st.update(snap, spans)
		if err != nil {
			b.Fatal(err)
		}
		out, err := st.render()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(deltaRender(out, 1, d)); err != nil {
			b.Fatal(err)
		}
		changed = 0
		for _, rd := range d {
			changed += len(rd[0].add) + len(rd[0].del) + len(rd[1].add) + len(rd[1].del)
		}
	}
	b.ReportMetric(float64(changed), "delta-cidrs")
}

// BenchmarkHubIncremental1M measures the same change through a hub over the
// in-memory source: reading rulesets, lists and guard from PostgreSQL,
// the incremental render, storing the new version and installing it.
func BenchmarkHubIncremental1M(b *testing.B) {
	ctx := b.Context()
	st, err := store.Open(ctx, storetest.URL(b), 5, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	b.Cleanup(st.Close)
	_, _, err = st.PutRuleset(ctx, "bench", incBenchRuleset, []byte(`{}`), "bench")
	require.NoError(b, err)
	src := incBenchSource(b)
	h := NewHub(st, slog.New(slog.DiscardHandler), time.Now, Options{Source: src})
	start := time.Now()
	require.NoError(b, h.Recompute(ctx))
	b.Logf("first (full) recompute over %d prefixes: %s", incBenchPrefixes, time.Since(start).Round(time.Millisecond))
	r := rand.New(rand.NewPCG(2, 2))
	for b.Loop() {
		b.StopTimer()
		retag(src, r)
		before := h.Latest("bench").Render.Version
		b.StartTimer()
		if err := h.Recompute(ctx); err != nil {
			b.Fatal(err)
		}
		if h.Latest("bench").Render.Version == before {
			b.Fatal("the change made no new version")
		}
	}
}

// BenchmarkFullRender1M measures a full render from in-memory facts:
// compile, guard, strings, hash, and the encoded body (plain and gzip) that
// the first full request of it would produce. Target ≤ 1.5 s.
func BenchmarkFullRender1M(b *testing.B) {
	src := incBenchSource(b)
	rs, err := policy.Parse(incBenchRuleset)
	require.NoError(b, err)
	g := guard.New(guard.Default())
	snap, _ := src.Snapshot(b.Context(), false)
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			if _, err := Build(rs, snap.Facts(false), g); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("build+encode", func(b *testing.B) {
		for b.Loop() {
			r, err := Build(rs, snap.Facts(false), g)
			if err != nil {
				b.Fatal(err)
			}
			newSnapshot(r).Gzip()
		}
	})
}
