package flow_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
)

func TestDecodeNetFlowV5(t *testing.T) {
	t.Parallel()
	var got []flow.Flow
	d, err := flow.NewDecoder(func(f flow.Flow) { got = append(got, f) })
	require.NoError(t, err)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	pkt := netflowV5(7, 0,
		v5Record{src: "10.0.0.5", dst: "203.0.113.9", srcPort: 51000, dstPort: 443, proto: 6, packets: 10, bytes: 1500},
		v5Record{src: "203.0.113.9", dst: "10.0.0.5", srcPort: 443, dstPort: 51000, proto: 6, packets: 8, bytes: 9000})
	require.NoError(t, d.Decode(flow.NetFlow, src, pkt, at))
	require.Equal(t, []flow.Flow{
		{Exporter: src.Addr(), Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("203.0.113.9"), SrcPort: 51000, DstPort: 443,
			Proto: 6, Packets: 10, Bytes: 1500, Received: at},
		{Exporter: src.Addr(), Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("10.0.0.5"), SrcPort: 443, DstPort: 51000,
			Proto: 6, Packets: 8, Bytes: 9000, Received: at},
	}, got)

	// Truncated and garbage datagrams are errors, never panics.
	for _, bad := range [][]byte{nil, {0}, pkt[:30], {0, 9, 0, 1}, {0, 10, 0, 200, 1, 2}, {0, 0, 0, 5, 1, 2, 3}} {
		require.Error(t, d.Decode(flow.NetFlow, src, bad, at), "%x", bad)
		require.Error(t, d.Decode(flow.SFlow, src, bad, at), "%x", bad)
	}
	require.Len(t, got, 2)
}
