package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkLongPollWaiters parks 1,000 long polls on one ruleset, makes one
// change (an override that adds a blocked address), and reports how long the
// waiters took to get the new version after the change was committed, and the
// heap the parked waiters held.
func BenchmarkLongPollWaiters(b *testing.B) {
	const waiters = 1000
	rb := setupRender(b)
	rb.putRuleset(b, "ruleset lp\n  hook input\n  scope tcp dport 22\n  default allow\n  block tag lp\n", http.StatusCreated)
	rb.ingest(b, `{"ip":"198.51.100.1","tags":["lp"]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: waiters, MaxConnsPerHost: waiters}}
	version := func() int64 {
		var v int64
		require.Eventually(b, func() bool {
			req, _ := http.NewRequest(http.MethodGet, rb.srv.URL+"/api/v1/rulesets/lp/render", nil)
			req.Header.Set("Authorization", "Bearer "+rb.reader)
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var doc struct {
				Version int64 `json:"version"`
			}
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&doc) != nil {
				return false
			}
			v = doc.Version
			return v > 0
		}, 10*time.Second, 20*time.Millisecond)
		return v
	}
	for i := 0; i < b.N; i++ {
		v := version()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		got := make([]time.Time, waiters)
		ready := make(chan struct{}, waiters)
		for w := 0; w < waiters; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet,
					fmt.Sprintf("%s/api/v1/rulesets/lp/render?since=%d&wait=60s", rb.srv.URL, v), nil)
				req.Header.Set("Authorization", "Bearer "+rb.reader)
				ready <- struct{}{}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("waiter %d: HTTP %d", w, resp.StatusCode)
				}
				got[w] = time.Now()
			}(w)
		}
		for w := 0; w < waiters; w++ {
			<-ready
		}
		// The requests are on their way; let them park before reading the heap
		// (a measurement delay, not synchronisation: correctness does not depend on it).
		time.Sleep(500 * time.Millisecond)
		runtime.ReadMemStats(&after)
		changed := time.Now()
		rb.ingest(b, fmt.Sprintf(`{"ip":"198.51.100.%d","tags":["lp"]}`, 2+i%200))
		wg.Wait()
		lat := make([]time.Duration, waiters)
		for w, t := range got {
			lat[w] = t.Sub(changed)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[waiters/2].Milliseconds()), "p50-wake-ms")
		b.ReportMetric(float64(lat[waiters-1].Milliseconds()), "last-wake-ms")
		b.ReportMetric(float64(after.HeapInuse-min(before.HeapInuse, after.HeapInuse))/waiters/1024, "KiB/waiter")
	}
}
