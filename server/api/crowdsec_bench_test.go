package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// benchSource is a render.Source over n generated entries whose tags the
// benchmark flips one at a time (it stands in for the index).
type benchSource struct {
	mu      sync.Mutex
	entries []policy.Entry // sorted by address then bits
	gen     uint64
	log     map[uint64]netip.Prefix // the prefix each generation changed
}

// benchEntry is the i-th entry: mostly scattered IPv4 /32s, every 20th a
// /24, every 50th an IPv6 /64; blocked (tag bad) or not.
func benchEntry(i int, bad bool) policy.Entry {
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
	tag := "good"
	if bad {
		tag = "bad"
	}
	return policy.Entry{Prefix: p, Tags: []string{tag}, Classification: "unknown", Sources: []string{"feed:bench"}}
}

func cmpPrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func newBenchSource(n int) *benchSource {
	s := &benchSource{gen: 1, log: map[uint64]netip.Prefix{}}
	for i := range n {
		s.entries = append(s.entries, benchEntry(i, true))
	}
	slices.SortFunc(s.entries, func(a, b policy.Entry) int { return cmpPrefix(a.Prefix, b.Prefix) })
	return s
}

// flip toggles the tag of entry k (in sorted order).
func (s *benchSource) flip(k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[k]
	tag := "bad"
	if e.Tags[0] == "bad" {
		tag = "good"
	}
	// A new slice: published snapshots stay as they were.
	s.entries = slices.Clone(s.entries)
	s.entries[k].Tags = []string{tag}
	s.gen++
	s.log[s.gen] = e.Prefix
}

func (s *benchSource) Snapshot(context.Context, bool) (render.FactSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &benchSnap{entries: s.entries, gen: s.gen, log: s.log}, nil
}

func (s *benchSource) Changed() <-chan struct{} { return nil }

type benchSnap struct {
	entries []policy.Entry
	gen     uint64
	log     map[uint64]netip.Prefix
}

func (s *benchSnap) Gen() uint64 { return s.gen }
func (s *benchSnap) Seq() int64  { return int64(s.gen) }
func (s *benchSnap) Facts(bool) *policy.Facts {
	return &policy.Facts{Entries: s.entries}
}

func (s *benchSnap) SpanFacts(span netip.Prefix, _ bool) *policy.Facts {
	f := &policy.Facts{}
	for _, e := range s.entries { // containing entries: few, scanned by address
		if e.Prefix.Bits() < span.Bits() && e.Prefix.Contains(span.Addr()) {
			f.Entries = append(f.Entries, e)
		}
	}
	i, _ := slices.BinarySearchFunc(s.entries, span, func(e policy.Entry, p netip.Prefix) int { return cmpPrefix(e.Prefix, p) })
	for ; i < len(s.entries) && span.Contains(s.entries[i].Prefix.Addr()); i++ {
		f.Entries = append(f.Entries, s.entries[i])
	}
	return f
}

func (s *benchSnap) ChangedSince(gen uint64) ([]netip.Prefix, bool, bool) {
	var out []netip.Prefix
	for g := gen + 1; g <= s.gen; g++ {
		p, ok := s.log[g]
		if !ok {
			return nil, false, false
		}
		out = append(out, p)
	}
	return out, false, true
}

// BenchmarkCrowdSecDeltaPull100k and …1M measure one CrowdSec stream pull
// after one ban changed, with 100k and 1M decisions: the handler (key check,
// cursor, decision delta, encoding, the bouncer row updated) over HTTP on
// loopback. The decision set of each render is computed before the pull, as
// the hub's decision worker does; BenchmarkCrowdSecDecisions measures that.
func BenchmarkCrowdSecDeltaPull100k(b *testing.B) { benchDeltaPull(b, 100_000) }

// BenchmarkCrowdSecDeltaPull1M is BenchmarkCrowdSecDeltaPull100k at 1M.
func BenchmarkCrowdSecDeltaPull1M(b *testing.B) { benchDeltaPull(b, 1_000_000) }

func benchDeltaPull(b *testing.B, n int) {
	ctx := b.Context()
	st := storetest.Store(b)
	log := slog.New(slog.DiscardHandler)
	_, _, err := st.PutRuleset(ctx, "bench", "ruleset bench\n  block tag bad\n", []byte(`{}`), "bench")
	require.NoError(b, err)
	key := api.NewSecret(api.BouncerKeyPrefix)
	_, err = st.CreateBouncer(ctx, "cs", []string{"bench"}, store.HashSecret(key), "bench")
	require.NoError(b, err)
	src := newBenchSource(n)
	hub := render.NewHub(st, log, time.Now, render.Options{Source: src})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(runCtx) }()
	b.Cleanup(func() { cancel(); <-done })
	require.True(b, hub.WaitReady(ctx))
	srv := api.New(st, api.NewAuthenticator(st, time.Now), log, time.Now, api.Options{Render: hub})
	r := chi.NewRouter()
	r.Route("/crowdsec/v1", srv.CrowdSecRoutes)
	ts := httptest.NewServer(r)
	b.Cleanup(ts.Close)
	pull := func(query string) int {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/crowdsec/v1/decisions/stream"+query, nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var buf [32 << 10]byte
		total := 0
		for {
			k, err := resp.Body.Read(buf[:])
			total += k
			if err != nil {
				break
			}
		}
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return total
	}
	start := time.Now()
	startup := pull("?startup=true")
	b.Logf("%d decisions: startup list %d bytes in %s (first, uncached)", len(hub.Decisions(ctx, "bench").List), startup, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	pull("?startup=true")
	b.Logf("startup list again (cached): %s", time.Since(start).Round(time.Microsecond))
	k := 0
	var bytes int
	for b.Loop() {
		b.StopTimer()
		src.flip(k * 7919 % n)
		k++
		require.NoError(b, hub.Recompute(ctx))
		hub.Decisions(ctx, "bench")
		b.StartTimer()
		bytes = pull("")
	}
	b.ReportMetric(float64(bytes), "resp-bytes")
}

// BenchmarkCrowdSecDecisions measures the decision set of one render (what
// the hub's worker computes per new render version once a CrowdSec bouncer
// asked), at 100k and 1M stored prefixes.
func BenchmarkCrowdSecDecisions(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := b.Context()
			st := storetest.Store(b)
			_, _, err := st.PutRuleset(ctx, "bench", "ruleset bench\n  block tag bad\n", []byte(`{}`), "bench")
			require.NoError(b, err)
			src := newBenchSource(n)
			hub := render.NewHub(st, slog.New(slog.DiscardHandler), time.Now, render.Options{Source: src})
			require.NoError(b, hub.Recompute(ctx))
			k := 0
			for b.Loop() {
				b.StopTimer()
				src.flip(k * 7919 % n)
				k++
				require.NoError(b, hub.Recompute(ctx))
				b.StartTimer()
				hub.Decisions(ctx, "bench")
			}
		})
	}
}
