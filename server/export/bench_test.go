package export_test

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/muninn/muninn/server/export"
	"github.com/muninn/muninn/server/resolve"
)

// benchPrefixes returns n distinct IPv4 /32s and /24s.
func benchPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		a := netip.AddrFrom4([4]byte{byte(11 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)})
		bits := 32
		if i%4 == 0 {
			bits = 24
		}
		out[i] = netip.PrefixFrom(a, bits).Masked()
	}
	return out
}

// BenchmarkMMDB builds the MMDB of 100,000 records (what a cache miss of
// GET /export/muninn.mmdb costs, before writing the file).
func BenchmarkMMDB(b *testing.B) {
	ps := benchPrefixes(100_000)
	recs := make([]export.Record, len(ps))
	for i, p := range ps {
		recs[i] = export.Record{Prefix: p, Score: 100, View: resolve.View{Classification: "malicious", Sources: []string{"feed"},
			Tags: []resolve.TagFact{{Name: "scanner"}}, FirstSeen: time.Unix(1e9, 0), LastSeen: time.Unix(1e9, 0)}}
	}
	b.ReportAllocs()
	for b.Loop() {
		tree, err := export.MMDB(recs, time.Unix(0, 0))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tree.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePrefixesNginx formats a 100,000-prefix deny list for nginx
// (what a format cache miss costs).
func BenchmarkWritePrefixesNginx(b *testing.B) {
	l := export.List{Name: "edge", V4: benchPrefixes(100_000)}
	b.ReportAllocs()
	for b.Loop() {
		if err := export.WritePrefixes(io.Discard, export.Nginx, l); err != nil {
			b.Fatal(err)
		}
	}
}
