package worker_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/geo"
)

// BenchmarkSyncGeo loads the real geo databases (`make geodata`) into
// geo_networks; it is skipped unless MUNINN_GEO_DIR points at them.
//
//	MUNINN_GEO_DIR=./data/geo go test ./worker/ -run '^$' -bench SyncGeo -benchtime 2x
func BenchmarkSyncGeo(b *testing.B) {
	dir := os.Getenv("MUNINN_GEO_DIR")
	if dir == "" {
		b.Skip("MUNINN_GEO_DIR is not set")
	}
	db, err := geo.Open(geo.Paths{Country: filepath.Join(dir, "geo-whois-asn-country.mmdb"),
		ASNCSV: []string{filepath.Join(dir, "asn-ipv4.csv"), filepath.Join(dir, "asn-ipv6.csv")}})
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })
	tb := setup(b)
	var n int64
	for b.Loop() {
		n, err = worker.SyncGeo(tb.ctx, tb.st, db)
		require.NoError(b, err)
	}
	b.ReportMetric(float64(n), "networks")
}
