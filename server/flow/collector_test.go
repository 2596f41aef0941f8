package flow_test

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

type testBundle struct {
	st  *store.Store
	ix  *index.Index
	c   *flow.Collector
	reg *prometheus.Registry
	now time.Time
	// later moves the collector's clock on from now (nanoseconds).
	later *atomic.Int64
}

// setup returns a collector over a fresh database whose index knows the
// geo networks of 203.0.113.0/24 (NL, AS64500 "Example Hosting") and
// 198.51.100.0/24 (DE, AS64501 "Example Telecom"), with 203.0.113.66
// classified malicious, 198.51.100.99 tagged c2, and the exporter "gw" at
// 192.0.2.1 (default inside networks) registered.
func setup(t *testing.T, cfg flow.Config) *testBundle { return setupTB(t, cfg) }

func setupB(b *testing.B) *testBundle { return setupTB(b, flow.Config{}) }

func setupTB(t testing.TB, cfg flow.Config) *testBundle {
	t.Helper()
	ctx := context.Background()
	st := storetest.Store(t)
	_, err := st.ReplaceGeoNetworks(ctx, "test-geo", func(yield func(store.GeoNetwork, error) bool) {
		_ = yield(store.GeoNetwork{Network: netip.MustParsePrefix("198.51.100.0/24"), Country: "DE", Continent: "EU", ASN: 64501, ASOrg: "Example Telecom"}, nil) &&
			yield(store.GeoNetwork{Network: netip.MustParsePrefix("203.0.113.0/24"), Country: "NL", Continent: "EU", ASN: 64500, ASOrg: "Example Hosting"}, nil)
	})
	require.NoError(t, err)
	now := time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC)
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("203.0.113.66/32"), Source: "ingest:test", Classification: "malicious", SeenAt: now.Add(-time.Hour)},
		{Prefix: netip.MustParsePrefix("198.51.100.99/32"), Source: "ingest:test", Tags: []string{"c2"}, SeenAt: now.Add(-time.Hour)},
	}, "test"))
	ix := indextest.Start(t, st, slog.New(slog.NewTextHandler(testWriter{t}, nil)), func() time.Time { return now })
	_, err = st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("192.0.2.1"), Name: "gw"}, "test")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	later := new(atomic.Int64)
	c, err := flow.New(st, ix, slog.New(slog.NewTextHandler(testWriter{t}, nil)), func() time.Time { return now.Add(time.Duration(later.Load())) }, reg, cfg)
	require.NoError(t, err)
	require.NoError(t, c.LoadExporters(ctx))
	return &testBundle{st: st, ix: ix, c: c, reg: reg, now: now, later: later}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func TestCollectorNetFlowV5(t *testing.T) {
	t.Parallel()
	b := setup(t, flow.Config{AlertTags: []string{"c2"}})
	ctx := context.Background()
	gw := netip.MustParseAddrPort("192.0.2.1:40000")
	pkt := netflowV5(1, 0,
		v5Record{src: "10.0.0.5", dst: "203.0.113.66", srcPort: 51000, dstPort: 443, proto: 6, packets: 10, bytes: 1500},
		v5Record{src: "203.0.113.66", dst: "10.0.0.5", srcPort: 443, dstPort: 51000, proto: 6, packets: 8, bytes: 9000},
		v5Record{src: "10.0.0.5", dst: "198.51.100.7", srcPort: 40001, dstPort: 53, proto: 17, packets: 1, bytes: 60},
		v5Record{src: "10.0.0.6", dst: "198.51.100.99", srcPort: 40002, dstPort: 8443, proto: 6, packets: 3, bytes: 300},
		v5Record{src: "198.51.100.1", dst: "203.0.113.2", srcPort: 1, dstPort: 2, proto: 6, packets: 1, bytes: 40},
		v5Record{src: "10.0.0.5", dst: "10.0.0.7", srcPort: 1, dstPort: 22, proto: 6, packets: 2, bytes: 100})
	require.True(t, b.c.Handle(flow.NetFlow, gw, pkt))
	// Sampled 1 in 10 (v5 header): bytes and packets are scaled.
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(2, 10,
		v5Record{src: "10.0.0.5", dst: "198.51.100.7", srcPort: 40001, dstPort: 53, proto: 17, packets: 1, bytes: 60})))
	require.False(t, b.c.Handle(flow.NetFlow, netip.MustParseAddrPort("192.0.2.99:40000"), pkt), "unregistered exporter")
	require.False(t, b.c.Handle(flow.NetFlow, gw, pkt[:100]), "truncated")
	require.False(t, b.c.Handle(flow.SFlow, gw, pkt), "not sFlow")
	require.NoError(t, b.c.Flush(ctx))

	require.Equal(t, 2.0, testutil.ToFloat64(b.c.Metric("datagrams", "netflow", "decoded")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("datagrams", "netflow", "error")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("datagrams", "sflow", "error")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("datagrams", "netflow", "unknown_exporter")))
	require.Equal(t, 5.0, testutil.ToFloat64(b.c.Metric("records", "aggregated")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("records", "transit")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("records", "internal")))

	pr, err := b.st.FlowProfileGet(ctx, netip.MustParsePrefix("10.0.0.5/32"), b.now.Add(-time.Hour), b.now.Add(-7*24*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, int64(1500+9000+60+600), pr.Bytes)
	require.Equal(t, int64(10+8+1+10), pr.Packets)
	require.Equal(t, []store.FlowCount{{Key: "NL", Bytes: 10500, Packets: 18, Flows: 2}, {Key: "DE", Bytes: 660, Packets: 11, Flows: 2}}, pr.Countries)
	require.Equal(t, []store.FlowCount{{Key: "Example Hosting", Bytes: 10500, Packets: 18, Flows: 2}, {Key: "Example Telecom", Bytes: 660, Packets: 11, Flows: 2}}, pr.Orgs)
	require.Equal(t, []store.FlowCount{{Key: "443/6", Bytes: 10500, Packets: 18, Flows: 2}, {Key: "53/17", Bytes: 660, Packets: 11, Flows: 2}}, pr.Ports)
	require.Empty(t, pr.Contacts, "the store gives no contacts: flow.Profile asks the index")

	evs, err := b.st.ListEvents(ctx, store.EventFilter{})
	require.NoError(t, err)
	got := map[string][]string{}
	for _, e := range evs {
		got[e.Kind] = append(got[e.Kind], e.Subject)
	}
	require.ElementsMatch(t, []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, got[store.EventFlowNewHost])
	require.ElementsMatch(t, []string{"10.0.0.5", "10.0.0.6"}, got[store.EventFlowBadContact])
	require.Empty(t, got[store.EventFlowNewDestination])

	// Every outside address is a sighting in the one index.
	require.NoError(t, b.ix.CatchUp(ctx))
	// (setup's ingest was the first sighting of the two listed addresses).
	for a, n := range map[string]int64{"203.0.113.66": 2, "198.51.100.7": 1, "198.51.100.99": 2} {
		v, ok := b.ix.Snapshot().Lookup(netip.MustParseAddr(a))
		require.True(t, ok, a)
		require.Equal(t, n, v.Sightings, a)
	}
	_, ok := b.ix.Snapshot().Lookup(netip.MustParseAddr("203.0.113.2"))
	require.False(t, ok, "transit traffic is no sighting")
	rs, err := b.st.FlowRemotes(ctx, netip.MustParseAddr("198.51.100.7"))
	require.NoError(t, err)
	require.Equal(t, []store.FlowRemote{{Address: netip.MustParseAddr("198.51.100.7"), Exporter: "gw", FirstSeen: b.now, LastSeen: b.now,
		Bytes: 660, Packets: 11, Flows: 2, Peers: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, Ports: []int{53}}}, rs)

	// The profile's contacts are the pairs whose view is bad now: the
	// malicious address, and the c2-tagged one only for the alert tag.
	require.NoError(t, b.ix.CatchUp(ctx))
	hour := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	malicious := store.FlowContactRow{Host: netip.MustParseAddr("10.0.0.5"), Remote: netip.MustParseAddr("203.0.113.66"),
		LastHour: hour, Classification: "malicious", Tags: []string{}, Bytes: 10500}
	tagged := store.FlowContactRow{Host: netip.MustParseAddr("10.0.0.6"), Remote: netip.MustParseAddr("198.51.100.99"),
		LastHour: hour, Classification: "unknown", Tags: []string{"c2"}, Bytes: 300}
	lan := netip.MustParsePrefix("10.0.0.0/24")
	pr, err = flow.Profile(ctx, b.st, b.ix.Snapshot(), lan, time.Hour, b.now, []string{"c2"})
	require.NoError(t, err)
	require.Equal(t, []store.FlowContactRow{malicious, tagged}, pr.Contacts)
	pr, err = flow.Profile(ctx, b.st, b.ix.Snapshot(), lan, time.Hour, b.now, nil)
	require.NoError(t, err)
	require.Equal(t, []store.FlowContactRow{malicious}, pr.Contacts)
	// An address classified after the traffic shows on it (no event: the
	// event is raised when traffic is written).
	require.NoError(t, b.st.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Source: "ingest:test",
		Classification: "suspicious", SeenAt: b.now}}, "test"))
	require.NoError(t, b.ix.CatchUp(ctx))
	pr, err = flow.Profile(ctx, b.st, b.ix.Snapshot(), netip.MustParsePrefix("10.0.0.5/32"), time.Hour, b.now, nil)
	require.NoError(t, err)
	require.Equal(t, []store.FlowContactRow{{Host: netip.MustParseAddr("10.0.0.5"), Remote: netip.MustParseAddr("198.51.100.7"),
		LastHour: hour, Classification: "suspicious", Tags: []string{}, Bytes: 660}, malicious}, pr.Contacts, "same hour: by address")
	cs, err := flow.Contacts(ctx, b.st, b.ix.Snapshot(), netip.Prefix{}, hour, []string{"c2"}, 2)
	require.NoError(t, err)
	require.Len(t, cs, 2, "the limit stops the scan")

	// The same contact again within the hour is no second event; a second
	// flush with a new country for a known host is.
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(3, 0,
		v5Record{src: "10.0.0.5", dst: "203.0.113.66", srcPort: 51001, dstPort: 443, proto: 6, packets: 1, bytes: 40})))
	require.NoError(t, b.c.Flush(ctx))
	evs2, err := b.st.ListEvents(ctx, store.EventFilter{})
	require.NoError(t, err)
	require.Len(t, evs2, len(evs))
}

func TestParseListeners(t *testing.T) {
	t.Parallel()
	ls, err := flow.ParseListeners("netflow://:2055, sflow://127.0.0.1:6343")
	require.NoError(t, err)
	require.Equal(t, []flow.Listener{{Protocol: flow.NetFlow, Addr: ":2055"}, {Protocol: flow.SFlow, Addr: "127.0.0.1:6343"}}, ls)
	for _, bad := range []string{"ipfix://:2055", "netflow://2055", ":2055"} {
		_, err := flow.ParseListeners(bad)
		require.Error(t, err, bad)
	}
}

// An sFlow datagram's flows belong to the exporter that sent it, whatever
// agent address it names: a switch whose agent address is not its sending
// address keeps its flows, and no datagram speaks for another exporter.
func TestSFlowBelongsToTheSender(t *testing.T) {
	t.Parallel()
	b := setup(t, flow.Config{})
	ctx := context.Background()
	_, err := b.st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("192.0.2.2"), Name: "core", SamplingRate: 1000}, "test")
	require.NoError(t, err)
	require.NoError(t, b.c.LoadExporters(ctx))
	gw, stranger := netip.MustParseAddrPort("192.0.2.1:6343"), netip.MustParseAddrPort("192.0.2.99:6343")
	require.True(t, b.c.Handle(flow.SFlow, gw, sflowDatagram("10.99.0.1", 1,
		sflowSample{src: "10.0.0.5", dst: "203.0.113.66", srcPort: 51000, dstPort: 443, frameLen: 118, rate: 10})))
	// A stranger naming core's agent address is no one's.
	require.False(t, b.c.Handle(flow.SFlow, stranger, sflowDatagram("192.0.2.2", 1,
		sflowSample{src: "10.0.0.6", dst: "203.0.113.66", srcPort: 51000, dstPort: 443, frameLen: 118, rate: 10})))
	require.NoError(t, b.c.Flush(ctx))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("records", "aggregated")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.c.Metric("datagrams", "sflow", "unknown_exporter")))
	h, err := b.st.FlowHostGet(ctx, netip.MustParseAddr("10.0.0.5"))
	require.NoError(t, err)
	require.Equal(t, "gw", h.Exporter)
	require.Equal(t, int64(1180), h.Bytes, "118-byte frames sampled 1 in 10, gw's own rate")
	require.Equal(t, int64(10), h.Packets)
	_, err = b.st.FlowHostGet(ctx, netip.MustParseAddr("10.0.0.6"))
	require.ErrorIs(t, err, store.ErrNotFound)
}

// Counts stop at the largest bigint instead of wrapping negative or
// failing the write: one absurd sample (4 GiB frames sampled 1 in 2^32)
// neither corrupts its host's totals nor loses the rest of the flush.
func TestFlowCountsSaturate(t *testing.T) {
	t.Parallel()
	b := setup(t, flow.Config{})
	ctx := context.Background()
	gw := netip.MustParseAddrPort("192.0.2.1:6343")
	huge := sflowSample{src: "10.0.0.7", dst: "198.51.100.15", srcPort: 1, dstPort: 2, frameLen: math.MaxUint32, rate: math.MaxUint32}
	for seq := range uint32(2) {
		require.True(t, b.c.Handle(flow.SFlow, gw, sflowDatagram("192.0.2.1", seq+1, huge,
			sflowSample{src: "10.0.0.8", dst: "198.51.100.15", srcPort: 51000, dstPort: 443, frameLen: 100, rate: 1})))
		require.NoError(t, b.c.Flush(ctx))
	}
	require.Equal(t, 2.0, testutil.ToFloat64(b.c.Metric("flushes", "ok")))
	require.Equal(t, 0.0, testutil.ToFloat64(b.c.Metric("lost")))
	h, err := b.st.FlowHostGet(ctx, netip.MustParseAddr("10.0.0.7"))
	require.NoError(t, err)
	require.Equal(t, int64(math.MaxInt64), h.Bytes, "at the limit, not negative")
	require.Equal(t, int64(2*math.MaxUint32), h.Packets, "one packet sampled 1 in 2^32-1, twice")
	h, err = b.st.FlowHostGet(ctx, netip.MustParseAddr("10.0.0.8"))
	require.NoError(t, err)
	require.Equal(t, int64(200), h.Bytes, "the other host of the same flushes")
	pr, err := flow.Profile(ctx, b.st, b.ix.Snapshot(), netip.MustParsePrefix("10.0.0.0/24"), time.Hour, b.now, nil)
	require.NoError(t, err)
	require.Equal(t, int64(math.MaxInt64), pr.Bytes)
	rs, err := b.st.FlowRemotes(ctx, netip.MustParseAddr("198.51.100.15"))
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, uint64(math.MaxInt64), rs[0].Bytes)
}

// A contact whose address turns malicious within the hour raises its
// event then; the event carries the time of the first flow, not the hour.
func TestBadContactEventWhenTheAddressTurnsBad(t *testing.T) {
	t.Parallel()
	b := setup(t, flow.Config{})
	ctx := context.Background()
	gw := netip.MustParseAddrPort("192.0.2.1:40000")
	require.NoError(t, b.st.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("198.51.100.77/32"), Source: "ingest:test",
		Classification: "suspicious", SeenAt: b.now}}, "test"))
	require.NoError(t, b.ix.CatchUp(ctx))
	rec := v5Record{src: "10.0.0.5", dst: "198.51.100.77", srcPort: 51000, dstPort: 443, proto: 6, packets: 2, bytes: 300}
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(1, 0, rec)))
	require.NoError(t, b.c.Flush(ctx))
	contacts := func() []store.Event {
		evs, err := b.st.ListEvents(ctx, store.EventFilter{Kind: store.EventFlowBadContact})
		require.NoError(t, err)
		return evs
	}
	require.Empty(t, contacts(), "suspicious is listed, not alerted")
	require.NoError(t, b.st.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("198.51.100.77/32"), Source: "ingest:test",
		Classification: "malicious", SeenAt: b.now}}, "test"))
	require.NoError(t, b.ix.CatchUp(ctx))
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(2, 0, rec)))
	require.NoError(t, b.c.Flush(ctx))
	evs := contacts()
	require.Len(t, evs, 1)
	require.Equal(t, b.now, evs[0].At.UTC(), "the first flow's time (12:01), not the hour")
	require.Equal(t, "198.51.100.77", evs[0].Details["remote"])
	require.Equal(t, "malicious", evs[0].Details["classification"])
}

// A registered exporter counts within about a second of its registration,
// without waiting for the next flush: a datagram from an unknown sender
// has the collector reread the exporters.
func TestNewExporterCountsWithoutAFlush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Store(t)
	ix := indextest.Start(t, st, slog.New(slog.NewTextHandler(testWriter{t}, nil)), nil)
	c, err := flow.New(st, ix, slog.New(slog.NewTextHandler(testWriter{t}, nil)), time.Now, prometheus.NewRegistry(),
		flow.Config{Listen: []flow.Listener{{Protocol: flow.NetFlow, Addr: "127.0.0.1:0"}}, FlushEvery: time.Hour})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	addrs := <-c.Bound()
	conn, err := net.Dial("udp", addrs[0].String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("127.0.0.1"), Name: "lo"}, "test")
	require.NoError(t, err)
	rec := v5Record{src: "10.0.0.5", dst: "203.0.113.9", srcPort: 1, dstPort: 2, proto: 6, packets: 1, bytes: 40}
	decoded := c.Metric("datagrams", "netflow", "decoded")
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint32(1); testutil.ToFloat64(decoded) == 0; seq++ {
		require.True(t, time.Now().Before(deadline), "the new exporter's datagrams were not decoded within 20 s (the flush is an hour away)")
		_, err := conn.Write(netflowV5(seq, 0, rec))
		require.NoError(t, err)
		<-tick.C // a datagram every 20 ms, as an exporter sends them
	}
	require.GreaterOrEqual(t, testutil.ToFloat64(c.Metric("datagrams", "netflow", "unknown_exporter")), 1.0)
}
