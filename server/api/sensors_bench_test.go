package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/httpserver"
)

// BenchmarkEventsEndpoint posts bodies of 20,000 sshd lines (1,000
// addresses, 20 failures each: every address fires ssh-bruteforce) through
// POST /events and reports lines/s. In "burst" an address's 20 lines come
// within 20 ms (a brute force or scan: they fold into one stored row); in
// "spread" they are a second apart (nothing folds: 20,000 rows a body).
func BenchmarkEventsEndpoint(b *testing.B) {
	for _, c := range []struct {
		name string
		gap  time.Duration
	}{{"burst", time.Millisecond}, {"spread", time.Second}} {
		b.Run(c.name, func(b *testing.B) {
			tb := setupWith(b, nil, func(d *httpserver.Deps) { d.MaxIngestBytes = 100 << 20 })
			const lines, perAddr = 20000, 20
			at := time.Now().Add(-time.Hour).UTC()
			bodies := make([]string, b.N)
			for i := range b.N {
				var sb strings.Builder
				for j := range lines {
					n := i*lines + j
					addr := fmt.Sprintf("198.51.%d.%d", n/perAddr/250%250, n/perAddr%250+1)
					sb.WriteString(sshFailure(at.Add(time.Duration(j%perAddr)*c.gap+time.Duration(j)*time.Microsecond), addr, j))
				}
				bodies[i] = sb.String()
			}
			b.ResetTimer()
			for i := range b.N {
				status, raw := tb.do(b, tb.writer, http.MethodPost, "/api/v1/events?format=sshd", "text/plain", strings.NewReader(bodies[i]))
				require.Equal(b, http.StatusOK, status, "%s", raw)
			}
			b.ReportMetric(float64(b.N*lines)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
