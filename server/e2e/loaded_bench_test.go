//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/store"
)

// BenchmarkPropagationLoaded is BenchmarkPropagation on a loaded server (DESIGN §8:
// manual tag → element in nftables with 100k and 1M stored prefixes while 1k
// observations/s of other ingest continue, p50 ≤ 300 ms, p99 ≤ 1 s). Before the bouncer
// starts, the store holds N prefixes of which every other one carries the blocked tag,
// so the bouncer's kernel sets hold N/2 elements; during the measurement a goroutine
// ingests 1,000 unrelated observations a second in batches of 100 through the store.
//
//	sudo go test -run '^$' -bench PropagationLoaded -benchtime 1x -timeout 30m ./server/e2e/
func BenchmarkPropagationLoaded(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run("prefixes="+strconv.Itoa(n), func(b *testing.B) { benchPropagationLoaded(b, n) })
	}
}

func benchPropagationLoaded(b *testing.B, n int) {
	requireRoot(b)
	log := testLogger(b)
	srv := startServer(b, log)
	ctx := context.Background()
	start := time.Now()
	loadPrefixes(b, srv.st, n)
	b.Logf("stored %d prefixes in %s", n, time.Since(start).Round(time.Millisecond))
	h := newNetwork(b, 1).hosts[0]
	srv.putRuleset(b, webRuleset)
	// The render of everything loaded (the index applies the load's last
	// changes and the hub compiles them after Ingest has returned): what
	// is measured starts from a settled server.
	settled := srv.settleRender(b, "web")
	key := srv.createBouncer(b, "bench", "web")
	start = time.Now()
	bc := startBouncer(b, h, bouncer.NewClient(srv.url, key, nil), b.TempDir(), log)
	// The first full render and apply of N/2 elements is not what is measured;
	// at 1M it may take longer than the lab's usual 10 s.
	eventually(b, 5*time.Minute, func() bool { return bc.syncer.State().Applied()["web"] >= settled.Version },
		"the bouncer never applied ruleset web")
	b.Logf("bouncer applied the first render in %s", time.Since(start).Round(time.Millisecond))

	// Unrelated ingest at 1,000 observations/s for as long as the measurement runs.
	bgCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-bgCtx.Done():
				return
			case <-tick.C:
			}
			obs := make([]store.Observation, 100)
			for j := range obs {
				obs[j] = store.Observation{Prefix: otherPrefix(i*100 + j), Source: "ingest:background", Tags: []string{"seen"}, SeenAt: time.Now()}
			}
			if err := srv.st.Ingest(bgCtx, obs, "bench"); err != nil && bgCtx.Err() == nil {
				b.Errorf("background ingest: %v", err)
				return
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()

	var took []time.Duration
	next := 0
	for b.Loop() {
		for range propagationTries {
			addr := benchAddr(next)
			next++
			// The background ingest tags nothing the ruleset blocks, so the next
			// render version is the one with addr; the bouncer reports a version
			// applied once its netlink transaction has committed. (Reading a
			// hash set of 500k elements back over netlink on every poll would
			// cost more than what is measured.)
			before := srv.hub.Latest("web").Render.Version
			t0 := time.Now()
			srv.tag(b, addr.String(), badTag)
			eventually(b, 30*time.Second, func() bool { return bc.syncer.State().Applied()["web"] > before },
				"%s never reached the kernel", addr)
			took = append(took, time.Since(t0))
		}
	}
	// The last tagged address is in the kernel's hash set (one read back).
	require.True(b, hashSetHas(b, h, "web", 1, benchAddr(next-1)), "%s is not in the kernel", benchAddr(next-1))
	slices.Sort(took)
	p := func(q float64) time.Duration {
		i := int(q*float64(len(took))+0.999999) - 1
		return took[max(i, 0)]
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(p(0.50).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	b.Logf("propagation over %d tags with %d stored prefixes and 1k obs/s of ingest: p50 %s, p99 %s, max %s",
		len(took), n, p(0.50), p(0.99), took[len(took)-1])
}

// loadPrefixes stores n IPv6 prefixes in 2001:db8:4000::/34 through the store's ingest
// path: /128s, with every 10th a /64; every other one carries the blocked tag.
func loadPrefixes(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	const batch = 50_000
	now := time.Now()
	obs := make([]store.Observation, 0, batch)
	for i := range n {
		o := store.Observation{Prefix: loadedPrefix(i), Source: "feed:bench", Tags: []string{"bench"}, SeenAt: now}
		if i%2 == 0 {
			o.Tags = append(o.Tags, badTag)
		}
		obs = append(obs, o)
		if len(obs) == batch || i == n-1 {
			require.NoError(tb, st.Ingest(context.Background(), obs, "bench"))
			obs = obs[:0]
		}
	}
}

// loadedPrefix is the i-th preloaded prefix: 2001:db8:4000::/34 plus i spread over the
// 64-bit network part (one address or /64 per network), so neighbours never merge
// into wider CIDRs.
func loadedPrefix(i int) netip.Prefix {
	a := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:%x::1", 0x4000+i>>16, i&0xffff))
	if i%10 == 0 {
		return netip.PrefixFrom(a, 64).Masked()
	}
	return netip.PrefixFrom(a, 128)
}

// otherPrefix is the i-th address of the background ingest, in 2001:db8:f000::/36.
func otherPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8:f000::%x:%x", i>>16, i&0xffff)), 128)
}
