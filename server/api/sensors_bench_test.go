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
// POST /events and reports lines/s.
func BenchmarkEventsEndpoint(b *testing.B) {
	tb := setupWith(b, nil, func(d *httpserver.Deps) { d.MaxIngestBytes = 100 << 20 })
	const lines = 20000
	at := time.Now().Add(-time.Minute).UTC()
	bodies := make([]string, b.N)
	for i := range b.N {
		var sb strings.Builder
		for j := range lines {
			addr := fmt.Sprintf("198.51.%d.%d", (i*lines+j)/20/250%250, (i*lines+j)/20%250+1)
			sb.WriteString(sshFailure(at.Add(time.Duration(j)*time.Millisecond), addr, j))
		}
		bodies[i] = sb.String()
	}
	b.ResetTimer()
	for i := range b.N {
		status, raw := tb.do(b, tb.writer, http.MethodPost, "/api/v1/events?format=sshd", "text/plain", strings.NewReader(bodies[i]))
		require.Equal(b, http.StatusOK, status, "%s", raw)
	}
	b.ReportMetric(float64(b.N*lines)/b.Elapsed().Seconds(), "lines/s")
}
