package flow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"time"

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

// ClickHouseConfig configures the optional raw-flow sink.
type ClickHouseConfig struct {
	// URL is ClickHouse's HTTP interface, e.g. http://user:pass@host:8123/
	// (user and password go as HTTP Basic auth; query parameters such as
	// async_insert=1 are kept on every insert).
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
	// Client sends the inserts (default: a client with a 30 s timeout).
	Client *http.Client
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// ClickHouseSink batches raw flows and inserts them over ClickHouse's HTTP
// interface: POST <URL>?query=INSERT INTO <table> FORMAT JSONEachRow with
// one JSON object a line, the columns of ClickHouseSchema in its order.
// Every row ends counted in muninn_flow_clickhouse_rows_total by result
// (inserted, error: the insert failed and is not retried, dropped: too many
// batches waiting).
type ClickHouseSink struct {
	cfg      ClickHouseConfig
	endpoint string
	user     *url.Userinfo
	log      *slog.Logger
	rows     *prometheus.CounterVec

	mu      sync.Mutex
	cur     []byte
	curRows int
	batches chan batch
	postMu  sync.Mutex
}

type batch struct {
	body []byte
	rows int
}

// NewClickHouseSink checks cfg and returns a sink; reg receives
// muninn_flow_clickhouse_rows_total.
func NewClickHouseSink(cfg ClickHouseConfig, log *slog.Logger, reg prometheus.Registerer) (*ClickHouseSink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("flow: ClickHouse URL %q is not http(s)://host:port/", cfg.URL)
	}
	if cfg.Table == "" {
		cfg.Table = "muninn.flows_raw"
	}
	if !tableName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("flow: ClickHouse table %q is not [database.]table of letters, digits and _", cfg.Table)
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
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	s := &ClickHouseSink{cfg: cfg, user: u.User, log: log, batches: make(chan batch, cfg.MaxPending)}
	u.User = nil
	q := u.Query()
	q.Set("query", "INSERT INTO "+cfg.Table+" FORMAT JSONEachRow")
	u.RawQuery = q.Encode()
	if u.Path == "" {
		u.Path = "/"
	}
	s.endpoint = u.String()
	s.rows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_clickhouse_rows_total",
		Help: "Raw flow rows for ClickHouse, by result: inserted, error (the insert failed; not retried), dropped (too many batches waiting)."},
		[]string{"result"})
	if err := reg.Register(s.rows); err != nil {
		return nil, fmt.Errorf("flow: metrics: %w", err)
	}
	return s, nil
}

// Rows returns the muninn_flow_clickhouse_rows_total counter of result.
func (s *ClickHouseSink) Rows(result string) prometheus.Counter {
	return s.rows.WithLabelValues(result)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	b = append(b, '"')
	b = netip.AddrFrom16(a.As16()).AppendTo(b)
	return append(b, '"')
}

// Add queues one flow of the exporter named exporter with the sampling
// rate in effect (rate 0: unsampled). Safe for concurrent use.
func (s *ClickHouseSink) Add(f Flow, exporter string, rate uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.cur
	b = append(b, `{"time_received":"`...)
	b = f.Received.UTC().AppendFormat(b, "2006-01-02 15:04:05.000")
	b = append(b, `","exporter":`...)
	b = strconv.AppendQuote(b, exporter)
	b = append(b, `,"exporter_address":`...)
	b = appendAddr(b, f.Exporter)
	b = append(b, `,"src_addr":`...)
	b = appendAddr(b, f.Src)
	b = append(b, `,"dst_addr":`...)
	b = appendAddr(b, f.Dst)
	for _, kv := range [...]struct {
		k string
		v uint64
	}{{"src_port", uint64(f.SrcPort)}, {"dst_port", uint64(f.DstPort)}, {"proto", uint64(f.Proto)}, {"bytes", f.Bytes},
		{"packets", f.Packets}, {"sampling_rate", rate}, {"src_mac", f.SrcMAC}, {"dst_mac", f.DstMAC}} {
		b = append(b, `,"`...)
		b = append(b, kv.k...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, kv.v, 10)
	}
	b = append(b, "}\n"...)
	s.cur = b
	s.curRows++
	if s.curRows >= s.cfg.BatchRows {
		s.queueLocked()
	}
}

// queueLocked hands the current batch to the writer; s.mu is held.
func (s *ClickHouseSink) queueLocked() {
	if s.curRows == 0 {
		return
	}
	bt := batch{body: s.cur, rows: s.curRows}
	s.cur, s.curRows = nil, 0
	select {
	case s.batches <- bt:
	default:
		s.rows.WithLabelValues("dropped").Add(float64(bt.rows))
	}
}

// Flush sends every waiting batch and the partial one, in the order they
// were filled; the first failed insert's error is returned (every batch is
// tried once).
func (s *ClickHouseSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	s.queueLocked()
	s.mu.Unlock()
	var errs []error
	for {
		select {
		case bt := <-s.batches:
			if err := s.post(ctx, bt); err != nil {
				errs = append(errs, err)
			}
		default:
			return errors.Join(errs...)
		}
	}
}

// Run inserts full batches as they fill and the partial one every
// FlushEvery until ctx ends, then flushes what is left (10 s at most).
func (s *ClickHouseSink) Run(ctx context.Context) {
	tick := time.NewTicker(s.cfg.FlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Flush(fctx); err != nil {
				s.log.Warn("Could not insert raw flows into ClickHouse.", "error", err)
			}
			return
		case bt := <-s.batches:
			if err := s.post(ctx, bt); err != nil {
				s.log.Warn("Could not insert raw flows into ClickHouse.", "error", err)
			}
		case <-tick.C:
			if err := s.Flush(ctx); err != nil {
				s.log.Warn("Could not insert raw flows into ClickHouse.", "error", err)
			}
		}
	}
}

func (s *ClickHouseSink) post(ctx context.Context, bt batch) (err error) {
	s.postMu.Lock()
	defer s.postMu.Unlock()
	defer func() {
		if err != nil {
			s.rows.WithLabelValues("error").Add(float64(bt.rows))
		} else {
			s.rows.WithLabelValues("inserted").Add(float64(bt.rows))
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(bt.body))
	if err != nil {
		return fmt.Errorf("flow: ClickHouse insert: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.user != nil {
		pw, _ := s.user.Password()
		req.SetBasicAuth(s.user.Username(), pw)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("flow: ClickHouse insert of %d rows: %w", bt.rows, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		// ClickHouse answers an error with its text ("Code: 60. DB::Exception: ...").
		return fmt.Errorf("flow: ClickHouse insert of %d rows: %s: %s", bt.rows, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
