package flow_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
)

// insert is one request the fake ClickHouse received.
type insert struct {
	method, path, query, user, password, contentType, body string
}

// fakeClickHouse answers like ClickHouse's HTTP interface: 200 and an empty
// body for an insert, or status with ClickHouse's error text when fail is set.
type fakeClickHouse struct {
	mu      sync.Mutex
	inserts []insert
	fail    int
}

func (f *fakeClickHouse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u, p, _ := r.BasicAuth()
	f.mu.Lock()
	f.inserts = append(f.inserts, insert{r.Method, r.URL.Path, r.URL.Query().Get("query") + "|" + r.URL.Query().Get("async_insert"), u, p, r.Header.Get("Content-Type"), string(b)})
	fail := f.fail
	f.mu.Unlock()
	if fail != 0 {
		w.Header().Set("X-ClickHouse-Exception-Code", "60")
		w.WriteHeader(fail)
		_, _ = io.WriteString(w, "Code: 60. DB::Exception: Unknown table expression identifier 'muninn.flows_raw'. (UNKNOWN_TABLE)\n")
	}
}

func (f *fakeClickHouse) got() []insert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]insert(nil), f.inserts...)
}

func TestClickHouseSink(t *testing.T) {
	t.Parallel()
	fake := &fakeClickHouse{}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	sink, err := flow.NewClickHouseSink(flow.ClickHouseConfig{URL: "http://ingest:s3cret@" + srv.Listener.Addr().String() + "/?async_insert=1", BatchRows: 2},
		slog.New(slog.NewTextHandler(testWriter{t}, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	b := setup(t, flow.Config{ClickHouse: sink})
	gw := netip.MustParseAddrPort("192.0.2.1:40000")
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(1, 0,
		v5Record{src: "10.0.0.5", dst: "203.0.113.66", srcPort: 51000, dstPort: 443, proto: 6, packets: 10, bytes: 1500},
		v5Record{src: "198.51.100.1", dst: "203.0.113.2", srcPort: 1, dstPort: 2, proto: 6, packets: 1, bytes: 40})))
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(3, 10,
		v5Record{src: "10.0.0.5", dst: "198.51.100.7", srcPort: 40001, dstPort: 53, proto: 17, packets: 1, bytes: 60})))
	require.False(t, b.c.Handle(flow.NetFlow, netip.MustParseAddrPort("192.0.2.99:1"), netflowV5(1, 0,
		v5Record{src: "10.0.0.5", dst: "203.0.113.66", proto: 6, packets: 1, bytes: 1})), "unregistered: no row")
	// The full batch of two is queued, the third row waits for Flush.
	require.Empty(t, fake.got())
	require.NoError(t, sink.Flush(context.Background()))
	q := "INSERT INTO muninn.flows_raw FORMAT JSONEachRow|1"
	require.Equal(t, []insert{
		{"POST", "/", q, "ingest", "s3cret", "application/x-ndjson",
			`{"time_received":"2026-11-30 12:01:00.000","exporter":"gw","exporter_address":"::ffff:192.0.2.1","src_addr":"::ffff:10.0.0.5","dst_addr":"::ffff:203.0.113.66","src_port":51000,"dst_port":443,"proto":6,"bytes":1500,"packets":10,"sampling_rate":0,"src_mac":0,"dst_mac":0}` + "\n" +
				`{"time_received":"2026-11-30 12:01:00.000","exporter":"gw","exporter_address":"::ffff:192.0.2.1","src_addr":"::ffff:198.51.100.1","dst_addr":"::ffff:203.0.113.2","src_port":1,"dst_port":2,"proto":6,"bytes":40,"packets":1,"sampling_rate":0,"src_mac":0,"dst_mac":0}` + "\n"},
		{"POST", "/", q, "ingest", "s3cret", "application/x-ndjson",
			`{"time_received":"2026-11-30 12:01:00.000","exporter":"gw","exporter_address":"::ffff:192.0.2.1","src_addr":"::ffff:10.0.0.5","dst_addr":"::ffff:198.51.100.7","src_port":40001,"dst_port":53,"proto":17,"bytes":60,"packets":1,"sampling_rate":10,"src_mac":0,"dst_mac":0}` + "\n"},
	}, fake.got())
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("inserted")))

	// ClickHouse refusing: the rows are counted as errors with its message.
	fake.mu.Lock()
	fake.fail = http.StatusNotFound
	fake.mu.Unlock()
	sink.Add(flow.Flow{Exporter: netip.MustParseAddr("2001:db8::1"), Src: netip.MustParseAddr("2001:db8::5"), Dst: netip.MustParseAddr("2001:db8:1::9"),
		Proto: 58, Bytes: 64, Packets: 1, SrcMAC: 0x02000000000a, Received: b.now}, "v6-gw", 0)
	err = sink.Flush(context.Background())
	require.EqualError(t, err, "flow: ClickHouse insert of 1 rows: 404 Not Found: Code: 60. DB::Exception: Unknown table expression identifier 'muninn.flows_raw'. (UNKNOWN_TABLE)")
	require.Equal(t, `{"time_received":"2026-11-30 12:01:00.000","exporter":"v6-gw","exporter_address":"2001:db8::1","src_addr":"2001:db8::5","dst_addr":"2001:db8:1::9","src_port":0,"dst_port":0,"proto":58,"bytes":64,"packets":1,"sampling_rate":0,"src_mac":2199023255562,"dst_mac":0}`+"\n",
		fake.got()[2].body)
	require.Equal(t, 1.0, testutil.ToFloat64(sink.Rows("error")))
	require.NoError(t, sink.Flush(context.Background()), "nothing left: no request")
	require.Len(t, fake.got(), 3)
}

func TestClickHouseSinkDropsBeyondPending(t *testing.T) {
	t.Parallel()
	fake := &fakeClickHouse{}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	sink, err := flow.NewClickHouseSink(flow.ClickHouseConfig{URL: srv.URL, Table: "flows.raw", BatchRows: 1, MaxPending: 2},
		slog.New(slog.NewTextHandler(testWriter{t}, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	f := flow.Flow{Exporter: netip.MustParseAddr("192.0.2.1"), Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("203.0.113.1")}
	for range 5 {
		sink.Add(f, "gw", 0)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("dropped")))
	require.NoError(t, sink.Flush(context.Background()))
	require.Equal(t, 2.0, testutil.ToFloat64(sink.Rows("inserted")))
	got := fake.got()
	require.Len(t, got, 2)
	require.Equal(t, "INSERT INTO flows.raw FORMAT JSONEachRow|", got[0].query)
	require.Empty(t, got[0].user)
}

func TestClickHouseConfigErrors(t *testing.T) {
	t.Parallel()
	for cfg, want := range map[flow.ClickHouseConfig]string{
		{URL: "tcp://h:9000"}: `flow: ClickHouse URL "tcp://h:9000" is not http(s)://host:port/`,
		{URL: "http:///"}:     `flow: ClickHouse URL "http:///" is not http(s)://host:port/`,
		{URL: "http://h:8123", Table: "x; DROP TABLE y"}: `flow: ClickHouse table "x; DROP TABLE y" is not [database.]table of letters, digits and _`,
	} {
		_, err := flow.NewClickHouseSink(cfg, slog.Default(), prometheus.NewRegistry())
		require.EqualError(t, err, want)
	}
}

// TestClickHouseSchemaInREADME: the table the README tells operators to
// create is the one the sink inserts into.
func TestClickHouseSchemaInREADME(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(b), "```sql\n"+flow.ClickHouseSchema+"\n```")
}
