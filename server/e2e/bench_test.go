//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/muninn/muninn/bouncer"
)

// propagationTries is how many tags one run of BenchmarkPropagation times.
const propagationTries = 50

// BenchmarkPropagation times a manual tag from the API to the kernel (DESIGN §8:
// p50 ≤ 1 s, p99 ≤ 2 s): PUT /api/v1/ips/{ip}/override adding a blocked tag, then
// netlink reads of the bouncer's hash set until the address is there. The server runs
// as `muninn serve` does (default render debounce) and the bouncer with its default
// long-poll wait. Each b.Loop iteration makes propagationTries tags, one at a time.
//
//	sudo go test -run '^$' -bench Propagation -benchtime 1x ./server/e2e/
func BenchmarkPropagation(b *testing.B) {
	requireRoot(b)
	log := testLogger(b)
	srv := startServer(b, log)
	h := newNetwork(b, 1).hosts[0]
	srv.putRuleset(b, webRuleset)
	key := srv.createBouncer(b, "bench", "web")
	bc := startBouncer(b, h, bouncer.NewClient(srv.url, key, nil), b.TempDir(), log)
	bc.waitApplied(b, "web")

	var took []time.Duration
	next := 0
	for b.Loop() {
		for range propagationTries {
			addr := benchAddr(next)
			next++
			start := time.Now()
			srv.tag(b, addr.String(), badTag)
			eventually(b, 10*time.Second, func() bool { return hashSetHas(b, h, "web", 1, addr) },
				"%s never reached the kernel", addr)
			took = append(took, time.Since(start))
		}
	}
	slices.Sort(took)
	p := func(q float64) time.Duration {
		i := int(q*float64(len(took))+0.999999) - 1
		return took[max(i, 0)]
	}
	b.ReportMetric(0, "ns/op") // one op is many tags; the percentiles are the result
	b.ReportMetric(float64(p(0.50).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	b.ReportMetric(float64(len(took)), "tags")
	b.Logf("propagation over %d tags: p50 %s, p99 %s, max %s", len(took), p(0.50), p(0.99), took[len(took)-1])
}

// benchAddr is the address of the i-th tag: odd addresses of 198.51.100.0/24, then of
// 2001:db8:1000::/36. Neighbours would merge into a /31 (render aggregates), which the
// bouncer puts in the interval set, not the hash set this benchmark reads.
func benchAddr(i int) netip.Addr {
	if i < 127 {
		return netip.AddrFrom4([4]byte{198, 51, 100, byte(2*i + 1)})
	}
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:1000::%x", 2*i+1))
}
