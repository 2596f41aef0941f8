package httpserver_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// BenchmarkLookupHandler is the server's own cost of one GET /ips/{ip}:
// the whole handler chain serve runs (access log at info into a discarding
// text handler, request id, metrics, auth, contract, the index lookup and
// the encoder), without the HTTP connection. Its B/op and allocs/op are the
// allocation figures of issue 10's lookup target: each byte allocated per
// request brings the next GC cycle of the index's heap closer.
func BenchmarkLookupHandler(b *testing.B) {
	st := storetest.Store(b)
	log := slog.New(httpserver.LogHandler(slog.NewTextHandler(io.Discard, nil)))
	ix := indextest.Start(b, st, log, nil)
	ctx := context.Background()
	_, token, err := api.CreateToken(ctx, st, "bench", api.RoleReader, nil, "bench")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	obs := []store.Observation{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Source: "ingest:feed", Tags: []string{"scanner"}, Classification: "suspicious", SeenAt: now},
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Source: "ingest:sensor", Tags: []string{"ssh-bruteforce"}, SeenAt: now},
	}
	if err := st.Ingest(ctx, obs, "bench"); err != nil {
		b.Fatal(err)
	}
	if err := ix.Reload(ctx); err != nil {
		b.Fatal(err)
	}
	h, err := httpserver.New(httpserver.Deps{Store: st, Index: ix, Logger: log, Now: time.Now, Registry: prometheus.NewRegistry(), MaxIngestBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/v1/ips/198.51.100.7", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.RemoteAddr = "192.0.2.50:40000"
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.status != http.StatusOK {
		b.Fatalf("status %d", w.status)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		w.status = 0
		h.ServeHTTP(w, req)
	}
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(s int) { w.status = s }

// SetReadDeadline and SetWriteDeadline accept the deadlines serve sets
// through http.ResponseController, as a real connection does.
func (w *discardWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *discardWriter) SetWriteDeadline(time.Time) error { return nil }
