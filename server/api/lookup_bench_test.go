package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/muninn/muninn/server/store/storetest"
)

// BenchmarkGetIP measures GET /ips/{address} over HTTP with 1M stored
// prefixes (100k with -short), answered from the index: the requests run
// in parallel and the benchmark reports the p50 and p99 latency (DESIGN §8:
// p99 ≤ 5 ms at 5k req/s).
func BenchmarkGetIP(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	tb := setupWith(b, nil) // no response validation: measure the server
	storetest.Seed(b, tb.store, n)
	if err := tb.ix.Reload(context.Background()); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// Seed stores /24s from 10.0.0.0 with host addresses inside them.
	addrs := make([]string, 4096)
	for i := range addrs {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8 % 40), byte(i), byte(i * 7)})
		addrs[i] = tb.srv.URL + "/api/v1/ips/" + a.String()
	}
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		i := 0
		for pb.Next() {
			i++
			req, _ := http.NewRequest(http.MethodGet, addrs[i%len(addrs)], nil)
			req.Header.Set("Authorization", "Bearer "+tb.reader)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
				b.Error(fmt.Errorf("status %d", resp.StatusCode))
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
