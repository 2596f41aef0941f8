package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
)

// ClickHouseSchema is the table the ClickHouse sink inserts into (the
// README prints it): one row a decoded flow record of a registered
// exporter, as the exporter sent it (bytes and packets not multiplied by
// the sampling rate; sampling_rate is the exporter's override when one is
// registered, else what the datagram said, 0 for none). Addresses are IPv6,
// IPv4 ones mapped (::ffff:a.b.c.d); MACs are the 48-bit value, 0 when not
// sent. Rename the database or table with MUNINN_FLOW_CLICKHOUSE_TABLE.
const ClickHouseSchema = `CREATE TABLE muninn.flows_raw (
    time_received    DateTime64(3, 'UTC'),
    exporter         LowCardinality(String),
    exporter_address IPv6,
    src_addr         IPv6,
    dst_addr         IPv6,
    src_port         UInt16,
    dst_port         UInt16,
    proto            UInt8,
    bytes            UInt64,
    packets          UInt64,
    sampling_rate    UInt64,
    src_mac          UInt64,
    dst_mac          UInt64
) ENGINE = MergeTree
PARTITION BY toDate(time_received)
ORDER BY (exporter, time_received)
TTL toDateTime(time_received) + INTERVAL 30 DAY`

// clickHouseColumns are ClickHouseSchema's columns in its order. The
// INSERT names them; over HTTP they also stand in for the DESCRIBE TABLE
// clickhouse-go would otherwise send before every batch (over the native
// protocol the server answers the INSERT with the table's own types).
var clickHouseColumns = []clickhouse.ColumnNameAndType{
	{Name: "time_received", Type: "DateTime64(3, 'UTC')"},
	{Name: "exporter", Type: "LowCardinality(String)"},
	{Name: "exporter_address", Type: "IPv6"},
	{Name: "src_addr", Type: "IPv6"},
	{Name: "dst_addr", Type: "IPv6"},
	{Name: "src_port", Type: "UInt16"},
	{Name: "dst_port", Type: "UInt16"},
	{Name: "proto", Type: "UInt8"},
	{Name: "bytes", Type: "UInt64"},
	{Name: "packets", Type: "UInt64"},
	{Name: "sampling_rate", Type: "UInt64"},
	{Name: "src_mac", Type: "UInt64"},
	{Name: "dst_mac", Type: "UInt64"},
}

// clickHouseCompressions are the compress= methods clickhouse-go knows
// (besides true and false).
var clickHouseCompressions = []string{"none", "lz4", "lz4hc", "zstd", "gzip", "deflate", "br"}

// clickHouseURLForms is what the URL errors ask for.
const clickHouseURLForms = "clickhouse://user:pass@host:9000/db or http(s)://user:pass@host:8123/db"

// ClickHouseConfig configures the optional raw-flow sink.
type ClickHouseConfig struct {
	// URL is a clickhouse-go DSN: clickhouse://user:pass@host:9000/db (or
	// tcp://) for the native protocol, http://user:pass@host:8123/db or
	// https://... for the HTTP interface. The path is the database of an
	// unqualified Table; query parameters are clickhouse-go options
	// (secure, skip_verify, compress, dial_timeout, ...) or ClickHouse
	// settings sent with every insert (async_insert=1).
	URL string
	// Table is [database.]table (default muninn.flows_raw).
	Table string
	// BatchRows is the rows of one INSERT (default 10000); a partial batch
	// is sent every FlushEvery (default 5 s).
	BatchRows  int
	FlushEvery time.Duration
	// MaxPending is how many full batches may wait for ClickHouse (default
	// 8); rows arriving beyond that are dropped and counted.
	MaxPending int
	// Timeout bounds one insert, connecting included (default 30 s).
	Timeout time.Duration
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// Check reports what NewClickHouseSink would refuse in cfg (the URL's
// scheme, host and options, the table name) without connecting or
// registering anything: commands check their configuration before they
// open the database.
func (cfg ClickHouseConfig) Check() error {
	_, err := cfg.options()
	return err
}

// options checks cfg's table name and returns its URL's clickhouse-go
// options (clickHouseOptions).
func (cfg ClickHouseConfig) options() (*clickhouse.Options, error) {
	if cfg.Table != "" && !tableName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("flow: ClickHouse table %q is not [database.]table of letters, digits and _", cfg.Table)
	}
	return clickHouseOptions(cfg.URL)
}

// ClickHouseSink batches raw flows and inserts them with clickhouse-go:
// one batch (PrepareBatch, one column Append each, Send) an INSERT INTO
// <table> (<the columns of ClickHouseSchema>), in Native format over
// either protocol. Every row ends counted in
// muninn_flow_clickhouse_rows_total by result (inserted, error: the insert
// failed and is not retried, dropped: too many batches waiting).
type ClickHouseSink struct {
	cfg    ClickHouseConfig
	conn   driver.Conn
	insert string
	log    *slog.Logger
	rows   *prometheus.CounterVec

	mu      sync.Mutex
	cur     *flowColumns
	batches chan *flowColumns
	// sendMu keeps one insert at a time: Run and a caller's Flush may both
	// be sending.
	sendMu sync.Mutex
}

// flowColumns is one batch, column by column in clickHouseColumns' order:
// the slices batch.Column(i).Append takes.
type flowColumns struct {
	time                   []time.Time
	exporter               []string
	exporterAddr, src, dst []netip.Addr
	srcPort, dstPort       []uint16
	proto                  []uint8
	bytes, packets, rate   []uint64
	srcMAC, dstMAC         []uint64
}

func (c *flowColumns) columns() []any {
	return []any{c.time, c.exporter, c.exporterAddr, c.src, c.dst, c.srcPort, c.dstPort, c.proto,
		c.bytes, c.packets, c.rate, c.srcMAC, c.dstMAC}
}

// clickHouseOptions parses raw into clickhouse-go options. Errors never
// repeat raw: it may hold a password.
func clickHouseOptions(raw string) (*clickhouse.Options, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !urlScheme.MatchString(scheme) {
		return nil, fmt.Errorf("flow: ClickHouse URL has no scheme (want %s)", clickHouseURLForms)
	}
	switch strings.ToLower(scheme) {
	case "clickhouse", "tcp", "http":
	case "https":
		// clickhouse-go refuses https:// without secure=true; the scheme
		// already says it.
		_, query, hasQuery := strings.Cut(rest, "?")
		if v, err := url.ParseQuery(query); err != nil || !v.Has("secure") {
			sep := "?"
			if hasQuery {
				sep = "&"
			}
			raw += sep + "secure=true"
		}
	default:
		return nil, fmt.Errorf("flow: ClickHouse URL scheme %q is not clickhouse, tcp, http or https (want %s)", scheme, clickHouseURLForms)
	}
	// clickhouse-go ignores a compress value it does not know (sending
	// uncompressed): say so instead.
	if _, query, _ := strings.Cut(rest, "?"); query != "" {
		if v, err := url.ParseQuery(query); err == nil && v.Has("compress") {
			c := strings.ToLower(v.Get("compress"))
			if _, err := strconv.ParseBool(c); err != nil && !slices.Contains(clickHouseCompressions, c) {
				return nil, fmt.Errorf("flow: ClickHouse URL: compress=%q is not true, false or one of %s", v.Get("compress"), strings.Join(clickHouseCompressions, ", "))
			}
		}
	}
	opts, err := clickhouse.ParseDSN(raw)
	if err != nil {
		// ParseDSN redacts the password from its errors.
		return nil, fmt.Errorf("flow: ClickHouse URL: %w (want %s)", err, clickHouseURLForms)
	}
	return opts, nil
}

// NewClickHouseSink checks cfg and returns a sink; reg receives
// muninn_flow_clickhouse_rows_total. It does not connect: the first insert
// does, so a ClickHouse that is down costs rows (counted as errors), not
// the start of muninn. Close releases the connections.
func NewClickHouseSink(cfg ClickHouseConfig, log *slog.Logger, reg prometheus.Registerer) (*ClickHouseSink, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	if cfg.Table == "" {
		cfg.Table = "muninn.flows_raw"
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 10000
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 5 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	names := make([]string, len(clickHouseColumns))
	for i, c := range clickHouseColumns {
		names[i] = c.Name
	}
	s := &ClickHouseSink{cfg: cfg, log: log, cur: &flowColumns{}, batches: make(chan *flowColumns, cfg.MaxPending),
		insert: "INSERT INTO " + cfg.Table + " (" + strings.Join(names, ", ") + ")"}
	s.rows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_clickhouse_rows_total",
		Help: "Raw flow rows for ClickHouse, by result: inserted, error (the insert failed; not retried), dropped (too many batches waiting)."},
		[]string{"result"})
	if err := reg.Register(s.rows); err != nil {
		return nil, fmt.Errorf("flow: metrics: %w", err)
	}
	opts.DialTimeout = cfg.Timeout
	opts.Logger = log
	if s.conn, err = clickhouse.Open(opts); err != nil {
		return nil, fmt.Errorf("flow: ClickHouse: %w", err)
	}
	return s, nil
}

// Rows returns the muninn_flow_clickhouse_rows_total counter of result.
func (s *ClickHouseSink) Rows(result string) prometheus.Counter {
	return s.rows.WithLabelValues(result)
}

// Add queues one flow of the exporter named exporter with the sampling
// rate in effect (rate 0: unsampled). Safe for concurrent use.
func (s *ClickHouseSink) Add(f Flow, exporter string, rate uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cur
	c.time = append(c.time, f.Received)
	c.exporter = append(c.exporter, exporter)
	// clickhouse-go writes an IPv4 address to an IPv6 column mapped
	// (::ffff:a.b.c.d, its As16); the tests hold it to that.
	c.exporterAddr = append(c.exporterAddr, f.Exporter)
	c.src = append(c.src, f.Src)
	c.dst = append(c.dst, f.Dst)
	c.srcPort = append(c.srcPort, f.SrcPort)
	c.dstPort = append(c.dstPort, f.DstPort)
	c.proto = append(c.proto, f.Proto)
	c.bytes = append(c.bytes, f.Bytes)
	c.packets = append(c.packets, f.Packets)
	c.rate = append(c.rate, rate)
	c.srcMAC = append(c.srcMAC, f.SrcMAC)
	c.dstMAC = append(c.dstMAC, f.DstMAC)
	if len(c.time) >= s.cfg.BatchRows {
		s.queueLocked()
	}
}

// queueLocked hands the current batch to the writer; s.mu is held.
func (s *ClickHouseSink) queueLocked() {
	n := len(s.cur.time)
	if n == 0 {
		return
	}
	select {
	case s.batches <- s.cur:
	default:
		s.rows.WithLabelValues("dropped").Add(float64(n))
	}
	s.cur = &flowColumns{}
}

// Flush sends every waiting batch and the partial one, in the order they
// were filled; the failed inserts' errors are returned joined (every batch
// is tried once).
func (s *ClickHouseSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	s.queueLocked()
	s.mu.Unlock()
	var errs []error
	for {
		select {
		case c := <-s.batches:
			if err := s.send(ctx, c); err != nil {
				errs = append(errs, err)
			}
		default:
			return errors.Join(errs...)
		}
	}
}

// Run inserts full batches as they fill and the partial one every
// FlushEvery until ctx ends, then flushes what is left (10 s at most).
// An insert under way when ctx ends is finished, not cut (Timeout bounds
// it): its rows are as good as the ones the last flush sends.
func (s *ClickHouseSink) Run(ctx context.Context) {
	tick := time.NewTicker(s.cfg.FlushEvery)
	defer tick.Stop()
	sctx := context.WithoutCancel(ctx)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Flush(fctx); err != nil {
				s.log.Warn("Could not insert raw flows into ClickHouse.", "error", err)
			}
			return
		case c := <-s.batches:
			if err := s.send(sctx, c); err != nil {
				s.log.Warn("Could not insert raw flows into ClickHouse.", "error", err)
			}
		case <-tick.C:
			if err := s.Flush(sctx); err != nil {
				s.log.Warn("Could not insert raw flows into ClickHouse.", "error", err)
			}
		}
	}
}

// Close closes the connections to ClickHouse. Call it once Run has
// returned; inserts after it fail.
func (s *ClickHouseSink) Close() error {
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("flow: ClickHouse close: %w", err)
	}
	return nil
}

// send inserts one batch and counts its rows.
func (s *ClickHouseSink) send(ctx context.Context, c *flowColumns) (err error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	n := len(c.time)
	defer func() {
		if err != nil {
			s.rows.WithLabelValues("error").Add(float64(n))
		} else {
			s.rows.WithLabelValues("inserted").Add(float64(n))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithColumnNamesAndTypes(clickHouseColumns))
	b, err := s.conn.PrepareBatch(ctx, s.insert)
	if err != nil {
		return fmt.Errorf("flow: ClickHouse insert of %d rows: %w", n, err)
	}
	for i, col := range c.columns() {
		if err := b.Column(i).Append(col); err != nil {
			_ = b.Abort() // releases the connection; the error is the append's
			return fmt.Errorf("flow: ClickHouse insert of %d rows: column %s: %w", n, clickHouseColumns[i].Name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("flow: ClickHouse insert of %d rows: %w", n, err)
	}
	return nil
}
