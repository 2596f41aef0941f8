package flow_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
)

// BenchmarkDecodeAggregate decodes NetFlow v5 datagrams of 30 flows each
// (1,000 inside hosts talking with 5,000 outside addresses) and aggregates
// them, reporting flows/s; with flush=true a flush to PostgreSQL follows
// every 100,020 flows (without, only once at the end, outside the timing) (go test -run '^$' -bench DecodeAggregate ./server/flow/).
func BenchmarkDecodeAggregate(b *testing.B) {
	for _, flush := range []bool{false, true} {
		b.Run(fmt.Sprintf("flush=%v", flush), func(b *testing.B) { benchDecodeAggregate(b, flush) })
	}
}

func benchDecodeAggregate(b *testing.B, flush bool) {
	bb := setupB(b)
	gw := netip.MustParseAddrPort("192.0.2.1:40000")
	var pkts [][]byte
	for i := 0; i < 200; i++ {
		recs := make([]v5Record, 30)
		for j := range recs {
			n := i*30 + j
			recs[j] = v5Record{src: fmt.Sprintf("10.0.%d.%d", n%1000/250, n%250+1), dst: fmt.Sprintf("203.0.113.%d", n%250+1),
				srcPort: uint16(40000 + n%1000), dstPort: 443, proto: 6, packets: 3, bytes: 400}
			if n%5000 >= 250 {
				recs[j].dst = fmt.Sprintf("198.51.%d.%d", 100+n%5000/250, n%250+1)
			}
		}
		pkts = append(pkts, netflowV5(uint32(i), 0, recs...))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	flows := 0
	for i := 0; b.Loop(); i++ {
		if !bb.c.Handle(flow.NetFlow, gw, pkts[i%len(pkts)]) {
			b.Fatal("not decoded")
		}
		flows += 30
		if flush && flows%100_020 == 0 {
			require.NoError(b, bb.c.Flush(ctx))
		}
	}
	b.ReportMetric(float64(flows)/b.Elapsed().Seconds(), "flows/s")
	b.StopTimer()
	require.NoError(b, bb.c.Flush(ctx))
}
