package flow_test

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
)

// v9Header is a NetFlow v9 export packet header with no flowsets.
func v9Header(seq, uptime, sourceID uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], 9)
	binary.BigEndian.PutUint32(b[4:], uptime)
	binary.BigEndian.PutUint32(b[8:], 1796040000)
	binary.BigEndian.PutUint32(b[12:], seq)
	binary.BigEndian.PutUint32(b[16:], sourceID)
	return b
}

// sflowHeader is an sFlow v5 datagram header (IPv4 agent) with no samples.
func sflowHeader(agent string, subAgent, seq, uptime uint32) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint32(b[0:], 5)
	binary.BigEndian.PutUint32(b[4:], 1)
	a := netip.MustParseAddr(agent).As4()
	copy(b[8:], a[:])
	binary.BigEndian.PutUint32(b[12:], subAgent)
	binary.BigEndian.PutUint32(b[16:], seq)
	binary.BigEndian.PutUint32(b[20:], uptime)
	return b
}

// ipfixMessage is an IPFIX message of sets (each set's ID and body).
func ipfixMessage(seq, domain uint32, sets ...[]byte) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint16(b[0:], 10)
	binary.BigEndian.PutUint32(b[4:], 1796040000)
	binary.BigEndian.PutUint32(b[8:], seq)
	binary.BigEndian.PutUint32(b[12:], domain)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func ipfixSet(id uint16, body ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
	return append(b, body...)
}

// Template 256: sourceIPv4Address (8, 4 bytes), destinationIPv4Address (12,
// 4), packetDeltaCount (2, 8): 16-byte records. Template 257: interfaceName
// (82, variable) then sourceTransportPort (7, 2) and an enterprise field
// (0x8000|1, 1 byte, PEN 32473).
var ipfixTemplates = ipfixSet(2,
	1, 0, 0, 3, 0, 8, 0, 4, 0, 12, 0, 4, 0, 2, 0, 8,
	1, 1, 0, 3, 0, 82, 0xff, 0xff, 0, 7, 0, 2, 0x80, 1, 0, 1, 0, 0, 0x7e, 0xd9)

func ipfixData256(records int) []byte {
	return ipfixSet(256, make([]byte, 16*records)...)
}

func TestSeqTrackerNetFlowV5(t *testing.T) {
	t.Parallel()
	tr := flow.NewSeqTracker()
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	rec := v5Record{src: "10.0.0.5", dst: "203.0.113.9", proto: 6, packets: 1, bytes: 40}
	track := func(b []byte) flow.SeqResult {
		t.Helper()
		r, ok := tr.Track(flow.NetFlow, src, b)
		require.True(t, ok)
		return r
	}
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, track(netflowV5(100, 0, rec, rec)), "first: no history")
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, track(netflowV5(102, 0, rec)), "in order: 100 + 2 records")
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5, Lost: 7}, track(netflowV5(110, 0, rec, rec, rec)), "103..109 missing")
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5, Late: true}, track(netflowV5(105, 0, rec)), "a late one")
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, track(netflowV5(113, 0, rec)), "the late one moved nothing")
	// Another engine is another stream.
	other := netflowV5(5000, 0, rec)
	other[21] = 1
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, track(other))
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, track(netflowV5(114, 0, rec)))
	// A restart: uptime back from 1000 s to 2 s, the sequence back to 0.
	a := netflowV5(115, 0, rec)
	binary.BigEndian.PutUint32(a[4:], 1_000_000)
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, track(a))
	restart := netflowV5(0, 0, rec)
	binary.BigEndian.PutUint32(restart[4:], 2000)
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5, Reset: true}, track(restart))
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5, Lost: 1}, track(netflowV5(2, 0, rec)))
	// Wrapping past 2^32 is no gap.
	w := flow.NewSeqTracker()
	_, _ = w.Track(flow.NetFlow, src, netflowV5(0xffffffff, 0, rec, rec))
	r, _ := w.Track(flow.NetFlow, src, netflowV5(1, 0, rec))
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, r)
	_, ok := tr.Track(flow.NetFlow, src, []byte{0, 5, 0})
	require.False(t, ok, "a short header")
}

func TestSeqTrackerV9AndSFlow(t *testing.T) {
	t.Parallel()
	tr := flow.NewSeqTracker()
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	type step struct {
		p    flow.Protocol
		b    []byte
		want flow.SeqResult
	}
	v9 := flow.SeqResult{Version: flow.VersionNetFlowV9}
	sf := flow.SeqResult{Version: flow.VersionSFlowV5}
	lost := func(r flow.SeqResult, n uint64) flow.SeqResult { r.Lost = n; return r }
	for i, s := range []step{
		{flow.NetFlow, v9Header(7, 50000, 1), v9},
		{flow.NetFlow, v9Header(8, 50001, 1), v9},
		{flow.NetFlow, v9Header(12, 50002, 1), lost(v9, 3)}, // 9, 10, 11
		{flow.NetFlow, v9Header(1, 9000, 2), v9},            // source ID 2: its own stream
		{flow.NetFlow, v9Header(11, 50002, 1), flow.SeqResult{Version: flow.VersionNetFlowV9, Late: true}},
		{flow.NetFlow, v9Header(13, 50003, 1), v9},
		{flow.NetFlow, v9Header(1, 3, 1), flow.SeqResult{Version: flow.VersionNetFlowV9, Reset: true}}, // restarted
		{flow.NetFlow, v9Header(2, 4, 1), v9},
		{flow.SFlow, sflowHeader("192.0.2.1", 0, 40, 70000), sf},
		{flow.SFlow, sflowHeader("192.0.2.1", 1, 900, 70000), sf}, // another sub-agent
		{flow.SFlow, sflowHeader("192.0.2.1", 0, 41, 70001), sf},
		{flow.SFlow, sflowHeader("192.0.2.1", 1, 905, 70002), lost(sf, 4)},
		{flow.SFlow, sflowHeader("192.0.2.1", 0, 50, 70002), lost(sf, 8)},
		{flow.SFlow, sflowHeader("192.0.2.1", 0, 50, 70002), flow.SeqResult{Version: flow.VersionSFlowV5, Late: true}}, // duplicated
		{flow.SFlow, sflowHeader("198.51.100.1", 0, 3, 10), sf},                                                        // another agent
	} {
		r, ok := tr.Track(s.p, src, s.b)
		require.True(t, ok, i)
		require.Equal(t, s.want, r, i)
	}
}

func TestSeqTrackerIPFIX(t *testing.T) {
	t.Parallel()
	tr := flow.NewSeqTracker()
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	ip := flow.SeqResult{Version: flow.VersionIPFIX}
	// Template 257's records: "eth0" (1+4 bytes), then one whose name takes
	// the three-byte length (255, 0, 300), each followed by 3 fixed bytes,
	// then 2 bytes of padding.
	var data257 []byte
	data257 = append(data257, 4, 'e', 't', 'h', '0', 0, 1, 9)
	data257 = append(data257, 255, 1, 44)
	data257 = append(data257, make([]byte, 300)...)
	data257 = append(data257, 0, 2, 9, 0, 0)
	steps := []struct {
		b    []byte
		want flow.SeqResult
	}{
		// 3 + 2 records: the next message is expected at 105.
		{ipfixMessage(100, 1, ipfixTemplates, ipfixData256(3), ipfixSet(257, data257...)), ip},
		{ipfixMessage(105, 1, ipfixData256(1)), ip},
		{ipfixMessage(109, 1, ipfixData256(2)), flow.SeqResult{Version: flow.VersionIPFIX, Lost: 3}},
		{ipfixMessage(50, 2, ipfixData256(2)), ip}, // domain 2 has no template: unknown length
		{ipfixMessage(90, 2, ipfixData256(1)), ip}, // so it resynchronises here, no loss
		{ipfixMessage(107, 1, ipfixData256(1)), flow.SeqResult{Version: flow.VersionIPFIX, Late: true}},
		{ipfixMessage(111, 1), ip},                                           // a message without data records
		{ipfixMessage(111, 1, ipfixSet(2, 1, 0, 0, 0), ipfixData256(1)), ip}, // withdrawn: unknown again
		{ipfixMessage(500, 1, ipfixData256(1)), ip},
	}
	for i, s := range steps {
		r, ok := tr.Track(flow.NetFlow, src, s.b)
		require.True(t, ok, i)
		require.Equal(t, s.want, r, i)
	}
}

// TestCollectorSequenceMetrics: gaps of a registered exporter are counted
// in muninn_flow_sequence_*; an unregistered exporter's are not.
func TestCollectorSequenceMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, flow.Config{})
	gw := netip.MustParseAddrPort("192.0.2.1:40000")
	rec := v5Record{src: "10.0.0.5", dst: "203.0.113.9", proto: 6, packets: 1, bytes: 40}
	for _, d := range [][]byte{netflowV5(1, 0, rec), netflowV5(2, 0, rec, rec), netflowV5(9, 0, rec), netflowV5(5, 0, rec), netflowV5(10, 0, rec)} {
		require.True(t, b.c.Handle(flow.NetFlow, gw, d))
	}
	for _, d := range [][]byte{sflowHeader("192.0.2.1", 0, 1, 100), sflowHeader("192.0.2.1", 0, 3, 101), sflowHeader("192.0.2.1", 0, 7, 102)} {
		b.c.Handle(flow.SFlow, gw, d)
	}
	b.c.Handle(flow.NetFlow, gw, v9Header(1, 60000, 0))
	b.c.Handle(flow.NetFlow, gw, v9Header(1, 5, 0))
	stranger := netip.MustParseAddrPort("192.0.2.99:40000")
	b.c.Handle(flow.NetFlow, stranger, netflowV5(1, 0, rec))
	b.c.Handle(flow.NetFlow, stranger, netflowV5(50, 0, rec))
	require.NoError(t, b.c.Flush(context.Background()))
	require.Equal(t, 5.0, testutil.ToFloat64(b.c.Metric("sequence_lost", "gw", "netflow_v5")), "4..8")
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("sequence_late", "gw", "netflow_v5")))
	require.Equal(t, 4.0, testutil.ToFloat64(b.c.Metric("sequence_lost", "gw", "sflow_v5")), "2, 4, 5, 6")
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("sequence_resets", "gw", "netflow_v9")))
	n, err := testutil.GatherAndCount(b.reg, "muninn_flow_sequence_lost_total")
	require.NoError(t, err)
	require.Equal(t, 2, n, "only gw's two streams")
}

// A datagram whose framing does not hold together is not believed: its
// sequence number moves nothing. (A v5 header announcing a record it did
// not carry, 500,001 ahead, counted 500,000 lost and made the next good
// datagram a restart.)
func TestSeqTrackerIgnoresMalformedDatagrams(t *testing.T) {
	t.Parallel()
	tr := flow.NewSeqTracker()
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	rec := v5Record{src: "10.0.0.5", dst: "203.0.113.9", proto: 6, packets: 1, bytes: 40}
	r, ok := tr.Track(flow.NetFlow, src, netflowV5(100, 0, rec))
	require.True(t, ok)
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, r)
	for name, b := range map[string][]byte{
		"v5 record announced, not carried":    netflowV5(500101, 0, rec)[:24],
		"v5 with a byte too many":             append(netflowV5(500101, 0, rec), 0),
		"v9 flowset longer than the datagram": append(v9Header(500101, 1, 0), 1, 0, 0, 200, 0, 0),
		"v9 flowset shorter than its header":  append(v9Header(500101, 1, 0), 1, 0, 0, 2),
		"IPFIX length not the datagram's": func() []byte {
			b := ipfixMessage(500101, 1, ipfixData256(1))
			return append(b, 0, 0, 0, 0)
		}(),
		"IPFIX set beyond the message": func() []byte {
			b := ipfixMessage(500101, 1, ipfixData256(1))
			binary.BigEndian.PutUint16(b[18:], 400)
			return b
		}(),
		"sFlow sample count without samples": func() []byte {
			b := sflowHeader("192.0.2.1", 0, 500101, 70000)
			binary.BigEndian.PutUint32(b[24:], 2)
			return b
		}(),
		"sFlow sample longer than the datagram": func() []byte {
			b := sflowDatagram("192.0.2.1", 500101, sflowSample{src: "10.0.0.5", dst: "203.0.113.9", frameLen: 60, rate: 1})
			binary.BigEndian.PutUint32(b[32:], 4000)
			return b
		}(),
		"sFlow trailing bytes": append(sflowHeader("192.0.2.1", 0, 500101, 70000), 0, 0, 0, 0),
	} {
		p := flow.NetFlow
		if strings.HasPrefix(name, "sFlow") {
			p = flow.SFlow
		}
		_, ok := tr.Track(p, src, b)
		require.False(t, ok, name)
	}
	r, ok = tr.Track(flow.NetFlow, src, netflowV5(101, 0, rec))
	require.True(t, ok)
	require.Equal(t, flow.SeqResult{Version: flow.VersionNetFlowV5}, r, "the stream goes on as if the garbage never came")
	r, ok = tr.Track(flow.SFlow, src, sflowDatagram("192.0.2.1", 7, sflowSample{src: "10.0.0.5", dst: "203.0.113.9", frameLen: 60, rate: 1}))
	require.True(t, ok, "a well-formed sFlow datagram with a sample")
	require.Equal(t, flow.SeqResult{Version: flow.VersionSFlowV5}, r)
}
