package render_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

const benchPrefixes = 1_000_000

// benchPrefix returns the i-th benchmark prefix: mostly scattered IPv4 /32s,
// every 20th a /24 and every 50th an IPv6 /64, all in public space.
func benchPrefix(i int) netip.Prefix {
	switch {
	case i%50 == 0:
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 64)
	case i%20 == 0:
		n := uint32(0x50000000) + uint32(i)<<8 // from 80.0.0.0, one /24 each
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), 0}), 24)
	default:
		n := uint32(0x14000000) + uint32(i)*13 // from 20.0.0.0, scattered
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), 32)
	}
}

func benchTags(i int) []string {
	switch i % 4 {
	case 0:
		return []string{"ipsum"}
	case 1:
		return []string{"scanner"}
	case 2:
		return []string{"ipsum", "ssh"}
	}
	return []string{"benign-crawler"}
}

const benchRuleset = "ruleset bench\n  hook input\n  scope tcp dport 22,80,443\n  allow tag benign-crawler\n  block tag ssh\n  block tag ipsum\n  throttle 10/second tag scanner\n"

// BenchmarkBuild1M measures compile + guard + hash of a ruleset over 1M
// prefixes held in memory.
func BenchmarkBuild1M(b *testing.B) {
	facts := &policy.Facts{Entries: make([]policy.Entry, benchPrefixes)}
	for i := range facts.Entries {
		facts.Entries[i] = policy.Entry{Prefix: benchPrefix(i), Tags: benchTags(i), Sources: []string{"feed:bench"}}
	}
	rs, err := policy.Parse(benchRuleset)
	require.NoError(b, err)
	g := guard.New(guard.Default())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render.Build(rs, facts, g); err != nil {
			b.Fatal(err)
		}
	}
}

// fillBench stores 1M prefixes with tags through the ingest path.
func fillBench(b *testing.B, st *store.Store) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	const batch = 50_000
	now := time.Now()
	obs := make([]store.Observation, 0, batch)
	for i := 0; i < benchPrefixes; i++ {
		obs = append(obs, store.Observation{Prefix: benchPrefix(i), Source: "feed:bench", Tags: benchTags(i), SeenAt: now})
		if len(obs) == batch {
			require.NoError(b, st.Ingest(ctx, obs, "bench"))
			obs = obs[:0]
		}
	}
	b.Logf("stored %d prefixes in %s", benchPrefixes, time.Since(start).Round(time.Millisecond))
}

// BenchmarkRender1M measures the render path over 1M stored prefixes: loading
// the facts, building, and a full recompute that stores a new render (the
// ruleset alternates between two texts so every iteration's hash changes);
// then serving the cached render over HTTP, gzip and plain.
func BenchmarkRender1M(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, storetest.URL(b), 10, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	b.Cleanup(st.Close)
	fillBench(b, st)
	log := slog.New(slog.DiscardHandler)
	hub := render.NewHub(st, log, time.Now, render.Options{Source: indextest.Start(b, st, log, nil).RenderSource()})
	texts := []string{benchRuleset, benchRuleset + "  log tag ssh\n"}
	_, _, err = st.PutRuleset(ctx, "bench", texts[0], []byte(`{}`), "bench")
	require.NoError(b, err)

	b.Run("facts", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Facts(ctx, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("build", func(b *testing.B) {
		facts, err := st.Facts(ctx, time.Now())
		require.NoError(b, err)
		rs, err := policy.Parse(benchRuleset)
		require.NoError(b, err)
		g := guard.New(guard.Default())
		for b.Loop() {
			if _, err := render.Build(rs, facts, g); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("recompute", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			b.StopTimer()
			_, _, err := st.PutRuleset(ctx, "bench", texts[i%2], []byte(`{}`), "bench")
			require.NoError(b, err)
			b.StartTimer()
			if err := hub.Recompute(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	snap := hub.Latest("bench")
	require.NotNil(b, snap)
	b.Logf("render: %d rules, body %d bytes, gzip %d bytes", len(snap.Render.Rules), len(snap.Body()), len(snap.Gzip()))

	h, err := httpserver.New(httpserver.Deps{Store: st, Logger: log, Now: time.Now, Registry: prometheus.NewRegistry(), Render: hub})
	require.NoError(b, err)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	_, token, err := api.CreateToken(ctx, st, "bench", api.RoleReader, nil, "bench")
	require.NoError(b, err)
	for _, enc := range []string{"gzip", "identity"} {
		b.Run("serve-"+enc, func(b *testing.B) {
			var n int64
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/rulesets/bench/render", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Accept-Encoding", enc)
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.SetBytes(n)
		})
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			body, err := json.Marshal(snap.Render)
			if err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			_, _ = zw.Write(body)
			_ = zw.Close()
		}
	})
}
