package flow_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
)

// helloQuery is what clickhouse-go's HTTP protocol asks when it opens a
// connection (conn_http.go, queryHello).
const helloQuery = "SELECT displayName(), version(), revision(), timezone()"

// chRow is one row the fake ClickHouse decoded from an insert.
type chRow struct {
	Time                                         time.Time
	Exporter                                     string
	ExporterAddr, Src, Dst                       netip.Addr
	SrcPort, DstPort                             uint16
	Proto                                        uint8
	Bytes, Packets, SamplingRate, SrcMAC, DstMAC uint64
}

// chInsert is one INSERT the fake ClickHouse received.
type chInsert struct {
	Query, Database, User, Password, AsyncInsert string
	// Columns are the Native block's "name Type" pairs in order.
	Columns []string
	Rows    []chRow
}

// fakeClickHouse answers like ClickHouse's HTTP interface as clickhouse-go
// (Protocol HTTP) uses it: the server-information query each new
// connection sends (answered with a Native block, encoded by ch-go at the
// client_protocol_version the request names) and INSERT ... FORMAT Native
// with one Native block posted (revision 0: no block info, no
// serialization flags), decoded by ch-go. With fail set it refuses inserts
// the way ClickHouse refuses an unknown table. Anything else is a test
// failure.
type fakeClickHouse struct {
	t        *testing.T
	inserted chan chInsert

	mu      sync.Mutex
	hellos  int
	inserts []chInsert
	fail    bool
}

func newFakeClickHouse(t *testing.T) *fakeClickHouse {
	return &fakeClickHouse{t: t, inserted: make(chan chInsert, 64)}
}

// serve starts the fake on loopback, over TLS when tls is set.
func (f *fakeClickHouse) serve(tls bool) *httptest.Server {
	srv := httptest.NewUnstartedServer(f)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	f.t.Cleanup(srv.Close)
	return srv
}

func (f *fakeClickHouse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodPost || r.URL.Path != "/" || q.Get("default_format") != "Native" {
		f.refuse(w, "unexpected request %s %s", r.Method, r.URL)
		return
	}
	if q.Get("query") == "" {
		body, _ := io.ReadAll(r.Body)
		if string(body) != helloQuery {
			f.refuse(w, "unexpected query %q", body)
			return
		}
		f.hello(w, q.Get("client_protocol_version"))
		return
	}
	in := chInsert{Query: q.Get("query"), Database: q.Get("database"), AsyncInsert: q.Get("async_insert")}
	var ok bool
	if in.User, in.Password, ok = r.BasicAuth(); !ok {
		in.User, in.Password = r.Header.Get("X-ClickHouse-User"), r.Header.Get("X-ClickHouse-Key")
	}
	if err := in.decode(r.Body); err != nil {
		f.refuse(w, "decode the insert: %v", err)
		return
	}
	if f.record(in) {
		w.Header().Set("X-ClickHouse-Exception-Code", "60")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "Code: 60. DB::Exception: Unknown table expression identifier 'muninn.flows_raw'. (UNKNOWN_TABLE)\n")
	}
}

func (f *fakeClickHouse) refuse(w http.ResponseWriter, format string, args ...any) {
	f.t.Errorf("fake ClickHouse: "+format, args...)
	w.Header().Set("X-ClickHouse-Exception-Code", "62")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, "Code: 62. DB::Exception: "+format+". (SYNTAX_ERROR)\n", args...)
}

// hello answers helloQuery: display name, version, revision (the client's
// own, so it decodes later answers the same way) and time zone.
func (f *fakeClickHouse) hello(w http.ResponseWriter, version string) {
	rev, err := strconv.Atoi(version)
	if err != nil {
		f.refuse(w, "client_protocol_version %q", version)
		return
	}
	f.mu.Lock()
	f.hellos++
	f.mu.Unlock()
	var name, ver, tz proto.ColStr
	name.Append("fake")
	ver.Append("25.8.1.1")
	tz.Append("UTC")
	var buf proto.Buffer
	if err := (proto.Block{Columns: 4, Rows: 1}).EncodeBlock(&buf, rev, []proto.InputColumn{
		{Name: "displayName()", Data: &name},
		{Name: "version()", Data: &ver},
		{Name: "revision()", Data: proto.ColUInt32{uint32(rev)}},
		{Name: "timezone()", Data: &tz},
	}); err != nil {
		f.refuse(w, "encode the hello: %v", err)
		return
	}
	_, _ = w.Write(buf.Buf)
}

// record keeps an insert and says whether to refuse it.
func (f *fakeClickHouse) record(in chInsert) (fail bool) {
	f.mu.Lock()
	f.inserts = append(f.inserts, in)
	fail = f.fail
	f.mu.Unlock()
	f.inserted <- in
	return fail
}

// serveNative starts the fake on a loopback TCP port speaking the native
// protocol as clickhouse-go uses it for an INSERT: hello (answered at the
// client's revision), addendum, then per query the Query packet, the empty
// block that ends external tables, our header block (the columns of
// ClickHouseSchema), the client's data blocks up to an empty one, and
// EndOfStream or an exception. It returns the address.
func (f *fakeClickHouse) serveNative() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f.t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	f.t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				if err := f.native(conn); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					f.t.Errorf("fake ClickHouse (native): %v", err)
				}
			})
		}
	})
	return l.Addr().String()
}

func (f *fakeClickHouse) native(conn net.Conn) error {
	r := proto.NewReader(conn)
	var buf proto.Buffer
	send := func() error {
		_, err := conn.Write(buf.Buf)
		buf.Reset()
		return err
	}
	if code, err := r.UVarInt(); err != nil || proto.ClientCode(code) != proto.ClientCodeHello {
		return fmt.Errorf("hello: packet %d (%w)", code, err)
	}
	var hello proto.ClientHello
	if err := hello.Decode(r); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	v := hello.ProtocolVersion
	sh := proto.ServerHello{Name: "fake", Major: 25, Minor: 8, Revision: v, Timezone: "UTC", DisplayName: "fake", Patch: 1}
	sh.EncodeAware(&buf, v)
	if err := send(); err != nil {
		return err
	}
	if proto.FeatureAddendum.In(v) {
		if _, err := r.Str(); err != nil { // quota key
			return fmt.Errorf("addendum: %w", err)
		}
	}
	f.mu.Lock()
	f.hellos++
	f.mu.Unlock()
	// readData reads a Data packet's block, decoded into res.
	readData := func(res proto.Result) (proto.Block, error) {
		var b proto.Block
		if code, err := r.UVarInt(); err != nil || proto.ClientCode(code) != proto.ClientCodeData {
			return b, fmt.Errorf("data: packet %d (%w)", code, err)
		}
		var d proto.ClientData
		if err := d.DecodeAware(r, v); err != nil {
			return b, err
		}
		return b, b.DecodeBlock(r, v, res)
	}
	for {
		code, err := r.UVarInt()
		if err != nil {
			return err
		}
		switch proto.ClientCode(code) {
		case proto.ClientCodePing:
			proto.ServerCodePong.Encode(&buf)
			if err := send(); err != nil {
				return err
			}
			continue
		case proto.ClientCodeQuery:
		default:
			return fmt.Errorf("unexpected packet %d", code)
		}
		var q proto.Query
		if err := q.DecodeAware(r, v); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if b, err := readData(nil); err != nil || !b.End() {
			return fmt.Errorf("external tables: %v %w", b, err)
		}
		in := chInsert{Query: q.Body, Database: hello.Database, User: hello.User, Password: hello.Password}
		for _, st := range q.Settings {
			if st.Key == "async_insert" {
				in.AsyncInsert = st.Value
			}
		}
		// The header: the table's columns, no rows.
		header := make([]proto.InputColumn, 0, 13)
		for _, nt := range schemaColumns(f.t) {
			name, typ, _ := strings.Cut(nt, " ")
			col := &proto.ColAuto{}
			if err := col.Infer(proto.ColumnType(typ)); err != nil {
				return err
			}
			header = append(header, proto.InputColumn{Name: name, Data: col})
		}
		proto.ServerCodeData.Encode(&buf)
		buf.PutString("")
		if err := (proto.Block{Columns: len(header)}).EncodeBlock(&buf, v, header); err != nil {
			return err
		}
		if err := send(); err != nil {
			return err
		}
		for {
			var res proto.Results
			b, err := readData(res.Auto())
			if err != nil {
				return fmt.Errorf("insert: %w", err)
			}
			if b.End() {
				break
			}
			if err := in.add(res, b.Rows); err != nil {
				return err
			}
		}
		if f.record(in) {
			proto.ServerCodeException.Encode(&buf)
			(&proto.Exception{Code: proto.ErrUnknownTable, Name: "DB::Exception",
				Message: "Unknown table expression identifier 'muninn.flows_raw'. (UNKNOWN_TABLE)"}).EncodeAware(&buf, v)
		} else {
			proto.ServerCodeEndOfStream.Encode(&buf)
		}
		if err := send(); err != nil {
			return err
		}
	}
}

// decode reads the one Native block of an insert into in.
func (in *chInsert) decode(body io.Reader) error {
	r := proto.NewReader(body)
	var res proto.Results
	var b proto.Block
	if err := b.DecodeRawBlock(r, 0, res.Auto()); err != nil {
		return err
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one block (%v)", err)
	}
	return in.add(res, b.Rows)
}

// add appends the rows of a decoded block to in; the first block names
// the columns.
func (in *chInsert) add(res proto.Results, rows int) error {
	if in.Columns == nil {
		for _, c := range res {
			in.Columns = append(in.Columns, c.Name+" "+string(c.Data.Type()))
		}
	}
	first := len(in.Rows)
	in.Rows = append(in.Rows, make([]chRow, rows)...)
	for _, c := range res {
		for i := range rows {
			row := &in.Rows[first+i]
			var err error
			switch c.Name {
			case "time_received":
				row.Time, err = cell[time.Time](c.Data, i)
				row.Time = row.Time.UTC()
			case "exporter":
				row.Exporter, err = cell[string](c.Data, i)
			case "exporter_address":
				row.ExporterAddr, err = addrCell(c.Data, i)
			case "src_addr":
				row.Src, err = addrCell(c.Data, i)
			case "dst_addr":
				row.Dst, err = addrCell(c.Data, i)
			case "src_port":
				row.SrcPort, err = cell[uint16](c.Data, i)
			case "dst_port":
				row.DstPort, err = cell[uint16](c.Data, i)
			case "proto":
				row.Proto, err = cell[uint8](c.Data, i)
			case "bytes":
				row.Bytes, err = cell[uint64](c.Data, i)
			case "packets":
				row.Packets, err = cell[uint64](c.Data, i)
			case "sampling_rate":
				row.SamplingRate, err = cell[uint64](c.Data, i)
			case "src_mac":
				row.SrcMAC, err = cell[uint64](c.Data, i)
			case "dst_mac":
				row.DstMAC, err = cell[uint64](c.Data, i)
			default:
				err = errors.New("not in the schema")
			}
			if err != nil {
				return fmt.Errorf("column %s: %w", c.Name, err)
			}
		}
	}
	return nil
}

// cell is row i of a decoded column whose values are T.
func cell[T any](c proto.ColResult, i int) (T, error) {
	col, ok := c.(interface{ Row(int) T })
	if !ok {
		var zero T
		return zero, fmt.Errorf("%T has no %T rows", c, zero)
	}
	return col.Row(i), nil
}

func addrCell(c proto.ColResult, i int) (netip.Addr, error) {
	v, err := cell[proto.IPv6](c, i)
	return v.ToIP(), err
}

func (f *fakeClickHouse) got() ([]chInsert, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]chInsert(nil), f.inserts...), f.hellos
}

func (f *fakeClickHouse) setFail(fail bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

// next waits for the next insert.
func (f *fakeClickHouse) next(t *testing.T) chInsert {
	t.Helper()
	select {
	case in := <-f.inserted:
		return in
	case <-time.After(10 * time.Second):
		t.Fatal("no insert reached the fake ClickHouse")
		return chInsert{}
	}
}

// schemaColumns are the "name Type" lines of flow.ClickHouseSchema.
func schemaColumns(t *testing.T) []string {
	t.Helper()
	var cols []string
	for _, m := range regexp.MustCompile(`(?m)^    (\w+) +(.+?),?$`).FindAllStringSubmatch(flow.ClickHouseSchema, -1) {
		cols = append(cols, m[1]+" "+m[2])
	}
	require.Len(t, cols, 13)
	return cols
}

// insertQuery is the INSERT the sink sends for table, as clickhouse-go
// puts it on the wire.
func insertQuery(table string) string {
	return "INSERT INTO " + table + " (time_received, exporter, exporter_address, src_addr, dst_addr, src_port, dst_port, proto, " +
		"bytes, packets, sampling_rate, src_mac, dst_mac) FORMAT Native"
}

func newSink(t *testing.T, cfg flow.ClickHouseConfig) *flow.ClickHouseSink {
	t.Helper()
	sink, err := flow.NewClickHouseSink(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sink.Close()) })
	return sink
}

// v4Flow is a flow between documentation addresses numbered n.
func v4Flow(n int, received time.Time) flow.Flow {
	return flow.Flow{Exporter: netip.MustParseAddr("192.0.2.1"), Src: netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}),
		Dst: netip.MustParseAddr("203.0.113.9"), SrcPort: uint16(40000 + n), DstPort: 443, Proto: 6, Bytes: uint64(100 * n),
		Packets: uint64(n), Received: received}
}

func v4Row(n int, received time.Time, rate uint64) chRow {
	return chRow{Time: received, Exporter: "gw", ExporterAddr: netip.MustParseAddr("::ffff:192.0.2.1"),
		Src: netip.AddrFrom16(netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}).As16()), Dst: netip.MustParseAddr("::ffff:203.0.113.9"),
		SrcPort: uint16(40000 + n), DstPort: 443, Proto: 6, Bytes: uint64(100 * n), Packets: uint64(n), SamplingRate: rate}
}

// TestClickHouseSink follows flows from the collector to ClickHouse over
// HTTP: full batches wait for Flush, the partial one goes with it, every
// column has the exporter's values, and a refused insert counts its rows as
// errors with ClickHouse's message.
func TestClickHouseSink(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	srv := fake.serve(false)
	sink := newSink(t, flow.ClickHouseConfig{URL: "http://ingest:s3cret@" + srv.Listener.Addr().String() + "/flows?async_insert=1", BatchRows: 2})
	b := setup(t, flow.Config{ClickHouse: sink})
	gw := netip.MustParseAddrPort("192.0.2.1:40000")
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(1, 0,
		v5Record{src: "198.51.100.5", dst: "203.0.113.66", srcPort: 51000, dstPort: 443, proto: 6, packets: 10, bytes: 1500},
		v5Record{src: "198.51.100.1", dst: "203.0.113.2", srcPort: 1, dstPort: 2, proto: 6, packets: 1, bytes: 40})))
	require.True(t, b.c.Handle(flow.NetFlow, gw, netflowV5(3, 10,
		v5Record{src: "198.51.100.5", dst: "198.51.100.7", srcPort: 40001, dstPort: 53, proto: 17, packets: 1, bytes: 60})))
	require.False(t, b.c.Handle(flow.NetFlow, netip.MustParseAddrPort("192.0.2.99:1"), netflowV5(1, 0,
		v5Record{src: "198.51.100.5", dst: "203.0.113.66", proto: 6, packets: 1, bytes: 1})), "unregistered: no row")
	// The full batch of two is queued, the third row waits for Flush.
	got, hellos := fake.got()
	require.Empty(t, got)
	require.Zero(t, hellos, "NewClickHouseSink does not connect")
	require.NoError(t, sink.Flush(context.Background()))

	gwRow := func(src, dst string, srcPort, dstPort uint16, proto uint8, bytes, packets, rate uint64) chRow {
		return chRow{Time: b.now, Exporter: "gw", ExporterAddr: netip.MustParseAddr("::ffff:192.0.2.1"),
			Src: netip.MustParseAddr("::ffff:" + src), Dst: netip.MustParseAddr("::ffff:" + dst),
			SrcPort: srcPort, DstPort: dstPort, Proto: proto, Bytes: bytes, Packets: packets, SamplingRate: rate}
	}
	in := func(rows ...chRow) chInsert {
		return chInsert{Query: insertQuery("muninn.flows_raw"), Database: "flows", User: "ingest", Password: "s3cret", AsyncInsert: "1",
			Columns: schemaColumns(t), Rows: rows}
	}
	got, hellos = fake.got()
	require.Equal(t, []chInsert{
		in(gwRow("198.51.100.5", "203.0.113.66", 51000, 443, 6, 1500, 10, 0), gwRow("198.51.100.1", "203.0.113.2", 1, 2, 6, 40, 1, 0)),
		in(gwRow("198.51.100.5", "198.51.100.7", 40001, 53, 17, 60, 1, 10)),
	}, got)
	require.Equal(t, 1, hellos, "one connection, reused")
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("inserted")))

	// ClickHouse refusing: the rows are counted as errors with its message.
	fake.setFail(true)
	sink.Add(flow.Flow{Exporter: netip.MustParseAddr("2001:db8::1"), Src: netip.MustParseAddr("2001:db8::5"), Dst: netip.MustParseAddr("2001:db8:1::9"),
		SrcPort: 33434, DstPort: 33435, Proto: 58, Bytes: 64, Packets: 1, SrcMAC: 0x02000000000a, DstMAC: 0x0200000000ff, Received: b.now.Add(1500 * time.Millisecond)},
		"v6-gw", 100)
	err := sink.Flush(context.Background())
	require.EqualError(t, err, "flow: ClickHouse insert of 1 rows: batch sendStreamQuery: [HTTP 404] code: 60, message: Unknown table expression identifier 'muninn.flows_raw'. (UNKNOWN_TABLE)")
	var ex *clickhouse.Exception
	require.ErrorAs(t, err, &ex)
	require.Equal(t, int32(60), ex.Code)
	got, _ = fake.got()
	require.Len(t, got, 3)
	require.Equal(t, in(chRow{Time: b.now.Add(1500 * time.Millisecond), Exporter: "v6-gw", ExporterAddr: netip.MustParseAddr("2001:db8::1"),
		Src: netip.MustParseAddr("2001:db8::5"), Dst: netip.MustParseAddr("2001:db8:1::9"), SrcPort: 33434, DstPort: 33435, Proto: 58,
		Bytes: 64, Packets: 1, SamplingRate: 100, SrcMAC: 0x02000000000a, DstMAC: 0x0200000000ff}), got[2])
	require.Equal(t, 1.0, testutil.ToFloat64(sink.Rows("error")))
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("inserted")))
	require.NoError(t, sink.Flush(context.Background()), "nothing left: no request")
	got, _ = fake.got()
	require.Len(t, got, 3)
}

// TestClickHouseSinkBatchRows: Flush sends BatchRows rows an insert, in
// the order they were added, the rest in a last partial insert.
func TestClickHouseSinkBatchRows(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	srv := fake.serve(false)
	sink := newSink(t, flow.ClickHouseConfig{URL: srv.URL, Table: "flows_raw", BatchRows: 3})
	now := time.Date(2026, 11, 30, 12, 1, 2, 345_000_000, time.UTC)
	var want [][]chRow
	for n := 1; n <= 7; n++ {
		sink.Add(v4Flow(n, now), "gw", 0)
		if (n-1)%3 == 0 {
			want = append(want, nil)
		}
		want[len(want)-1] = append(want[len(want)-1], v4Row(n, now, 0))
	}
	require.NoError(t, sink.Flush(context.Background()))
	got, _ := fake.got()
	require.Len(t, got, 3)
	for i, in := range got {
		require.Equal(t, chInsert{Query: insertQuery("flows_raw"), User: "default", Columns: schemaColumns(t), Rows: want[i]}, in)
	}
	require.Equal(t, 7.0, testutil.ToFloat64(sink.Rows("inserted")))
}

// TestClickHouseSinkRun: Run sends a full batch as soon as it fills (the
// FlushEvery of an hour never ticks) and flushes the rest when it stops.
func TestClickHouseSinkRun(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	srv := fake.serve(false)
	sink := newSink(t, flow.ClickHouseConfig{URL: srv.URL, BatchRows: 2, FlushEvery: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sink.Run(ctx); close(done) }()
	now := time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC)
	for n := 1; n <= 3; n++ {
		sink.Add(v4Flow(n, now), "gw", 0)
	}
	require.Equal(t, []chRow{v4Row(1, now, 0), v4Row(2, now, 0)}, fake.next(t).Rows)
	cancel()
	<-done
	require.Equal(t, []chRow{v4Row(3, now, 0)}, fake.next(t).Rows)
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("inserted")))
}

// TestClickHouseSinkRunFlushesPartialBatch: a batch that does not fill
// goes every FlushEvery.
func TestClickHouseSinkRunFlushesPartialBatch(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	srv := fake.serve(false)
	sink := newSink(t, flow.ClickHouseConfig{URL: srv.URL, BatchRows: 1000, FlushEvery: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sink.Run(ctx); close(done) }()
	now := time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC)
	sink.Add(v4Flow(1, now), "gw", 1000)
	require.Equal(t, []chRow{v4Row(1, now, 1000)}, fake.next(t).Rows)
	sink.Add(v4Flow(2, now), "gw", 1000)
	require.Equal(t, []chRow{v4Row(2, now, 1000)}, fake.next(t).Rows)
	require.Eventually(t, func() bool { return testutil.ToFloat64(sink.Rows("inserted")) == 2 }, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	require.Equal(t, 2.0, testutil.ToFloat64(sink.Rows("inserted")))
}

// TestClickHouseSinkDropsBeyondPending: full batches beyond MaxPending are
// dropped and counted, the waiting ones still go.
func TestClickHouseSinkDropsBeyondPending(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	srv := fake.serve(false)
	sink := newSink(t, flow.ClickHouseConfig{URL: srv.URL, Table: "flows.raw", BatchRows: 1, MaxPending: 2})
	now := time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC)
	for n := 1; n <= 5; n++ {
		sink.Add(v4Flow(n, now), "gw", 0)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("dropped")))
	require.NoError(t, sink.Flush(context.Background()))
	require.Equal(t, 2.0, testutil.ToFloat64(sink.Rows("inserted")))
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("dropped")))
	got, _ := fake.got()
	require.Equal(t, []chInsert{
		{Query: insertQuery("flows.raw"), User: "default", Columns: schemaColumns(t), Rows: []chRow{v4Row(1, now, 0)}},
		{Query: insertQuery("flows.raw"), User: "default", Columns: schemaColumns(t), Rows: []chRow{v4Row(2, now, 0)}},
	}, got)
}

// TestClickHouseSinkNative: the same inserts over the native protocol
// (clickhouse://), credentials and database in the hello, settings with
// the query, a refused insert counted with ClickHouse's exception.
func TestClickHouseSinkNative(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	addr := fake.serveNative()
	sink := newSink(t, flow.ClickHouseConfig{URL: "clickhouse://ingest:s3cret@" + addr + "/flows?async_insert=1", BatchRows: 2})
	now := time.Date(2026, 11, 30, 12, 1, 2, 345_000_000, time.UTC)
	for n := 1; n <= 3; n++ {
		sink.Add(v4Flow(n, now), "gw", 10)
	}
	require.NoError(t, sink.Flush(context.Background()))
	in := func(rows ...chRow) chInsert {
		return chInsert{Query: insertQuery("muninn.flows_raw"), Database: "flows", User: "ingest", Password: "s3cret", AsyncInsert: "1",
			Columns: schemaColumns(t), Rows: rows}
	}
	got, hellos := fake.got()
	require.Equal(t, []chInsert{in(v4Row(1, now, 10), v4Row(2, now, 10)), in(v4Row(3, now, 10))}, got)
	require.Equal(t, 1, hellos, "one connection, reused")
	require.Equal(t, 3.0, testutil.ToFloat64(sink.Rows("inserted")))

	fake.setFail(true)
	sink.Add(flow.Flow{Exporter: netip.MustParseAddr("2001:db8::1"), Src: netip.MustParseAddr("2001:db8::5"), Dst: netip.MustParseAddr("2001:db8:1::9"),
		Proto: 58, Bytes: 64, Packets: 1, SrcMAC: 0x02000000000a, Received: now}, "v6-gw", 0)
	err := sink.Flush(context.Background())
	require.EqualError(t, err, "flow: ClickHouse insert of 1 rows: code: 60, message: Unknown table expression identifier 'muninn.flows_raw'. (UNKNOWN_TABLE)")
	got, _ = fake.got()
	require.Len(t, got, 3)
	require.Equal(t, in(chRow{Time: now, Exporter: "v6-gw", ExporterAddr: netip.MustParseAddr("2001:db8::1"), Src: netip.MustParseAddr("2001:db8::5"),
		Dst: netip.MustParseAddr("2001:db8:1::9"), Proto: 58, Bytes: 64, Packets: 1, SrcMAC: 0x02000000000a}), got[2])
	require.Equal(t, 1.0, testutil.ToFloat64(sink.Rows("error")))
}

// TestClickHouseSinkHTTPS: an https:// URL speaks TLS (no secure=true
// needed) and sends the credentials as ClickHouse's headers.
func TestClickHouseSinkHTTPS(t *testing.T) {
	t.Parallel()
	fake := newFakeClickHouse(t)
	srv := fake.serve(true)
	sink := newSink(t, flow.ClickHouseConfig{URL: "https://ingest:s3cret@" + srv.Listener.Addr().String() + "/?skip_verify=true"})
	now := time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC)
	sink.Add(v4Flow(1, now), "gw", 0)
	require.NoError(t, sink.Flush(context.Background()))
	got, _ := fake.got()
	require.Equal(t, []chInsert{{Query: insertQuery("muninn.flows_raw"), User: "ingest", Password: "s3cret", Columns: schemaColumns(t),
		Rows: []chRow{v4Row(1, now, 0)}}}, got)
}

// TestClickHouseSinkUnreachable: rows of an insert that cannot connect are
// counted as errors.
func TestClickHouseSinkUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	sink := newSink(t, flow.ClickHouseConfig{URL: "http://" + addr + "/"})
	now := time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC)
	sink.Add(v4Flow(1, now), "gw", 0)
	sink.Add(v4Flow(2, now), "gw", 0)
	err = sink.Flush(context.Background())
	require.ErrorContains(t, err, "flow: ClickHouse insert of 2 rows: ")
	require.ErrorContains(t, err, "connection refused")
	require.Equal(t, 2.0, testutil.ToFloat64(sink.Rows("error")))
	require.Zero(t, testutil.ToFloat64(sink.Rows("inserted")))
}

func TestClickHouseConfigErrors(t *testing.T) {
	t.Parallel()
	const forms = " (want clickhouse://user:pass@host:9000/db or http(s)://user:pass@host:8123/db)"
	for cfg, want := range map[flow.ClickHouseConfig]string{
		{URL: "ftp://ingest:hunter2@h:21"}: `flow: ClickHouse URL scheme "ftp" is not clickhouse, tcp, http or https` + forms,
		{URL: "ingest:hunter2@h:9000"}:     `flow: ClickHouse URL has no scheme` + forms,
		{URL: ""}:                          `flow: ClickHouse URL has no scheme` + forms,
		{URL: "http:///"}:                  `flow: ClickHouse URL: parse dsn address failed` + forms,
		{URL: "http://ingest:hunter2@h:8123/?secure=true"}:          `flow: ClickHouse URL: clickhouse [dsn parse]: http with TLS specify` + forms,
		{URL: "clickhouse://h:9000/?dial_timeout=soon"}:             `flow: ClickHouse URL: clickhouse [dsn parse]: dial timeout: time: invalid duration "soon"` + forms,
		{URL: "http://h:8123", Table: "x; DROP TABLE y"}:            `flow: ClickHouse table "x; DROP TABLE y" is not [database.]table of letters, digits and _`,
		{URL: "http://h:8123", Table: "a.b.c"}:                      `flow: ClickHouse table "a.b.c" is not [database.]table of letters, digits and _`,
		{URL: "clickhouse://ingest:hunter2@h:9000/?compress=bogus"}: `flow: ClickHouse URL: compress="bogus" is not true, false or one of none, lz4, lz4hc, zstd, gzip, deflate, br`,
	} {
		require.EqualError(t, cfg.Check(), want, "Check refuses what NewClickHouseSink refuses")
		_, err := flow.NewClickHouseSink(cfg, slog.Default(), prometheus.NewRegistry())
		require.EqualError(t, err, want)
		require.NotContains(t, err.Error(), "hunter2")
	}
	for _, u := range []string{"clickhouse://ingest:s3cret@192.0.2.10:9000/flows", "tcp://192.0.2.10:9000", "http://192.0.2.10:8123/",
		"https://192.0.2.10:8443/flows", "https://192.0.2.10:8443/?secure=true&async_insert=1", "clickhouse://192.0.2.10:9440,192.0.2.11:9440/?secure=true",
		"clickhouse://192.0.2.10:9000/?compress=zstd", "http://192.0.2.10:8123/?compress=true"} {
		sink, err := flow.NewClickHouseSink(flow.ClickHouseConfig{URL: u}, slog.Default(), prometheus.NewRegistry())
		require.NoError(t, err, u)
		require.NoError(t, sink.Close())
	}
}

// TestClickHouseSchemaInREADME: the table the README tells operators to
// create is the one the sink inserts into.
func TestClickHouseSchemaInREADME(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(b), "```sql\n"+flow.ClickHouseSchema+"\n```")
	require.True(t, strings.HasPrefix(flow.ClickHouseSchema, "CREATE TABLE muninn.flows_raw ("))
}
