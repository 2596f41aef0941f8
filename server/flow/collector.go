package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/store"
)

// Listener is one UDP address a protocol is received on.
type Listener struct {
	Protocol Protocol
	Addr     string // host:port; port 0 picks one (tests)
}

// ParseListeners parses MUNINN_FLOW_LISTEN: a comma list of URIs in
// goflow2's -listen style, netflow://host:port (NetFlow v5, v9, IPFIX) or
// sflow://host:port (sFlow v5), e.g. "netflow://:2055,sflow://:6343".
func ParseListeners(v string) ([]Listener, error) {
	var out []Listener
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		scheme, addr, ok := strings.Cut(f, "://")
		p := Protocol(scheme)
		if !ok || (p != NetFlow && p != SFlow) {
			return nil, fmt.Errorf("%q is not netflow://host:port or sflow://host:port", f)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, Listener{Protocol: p, Addr: addr})
	}
	return out, nil
}

// Config is what a Collector is told.
type Config struct {
	Listen []Listener
	// FlushEvery is how often aggregates are written (default 10 s).
	FlushEvery time.Duration
	// Retention5m and Retention1h keep the 5-minute and 1-hour aggregates
	// (default 2 days and 90 days); older day partitions are dropped.
	Retention5m time.Duration
	Retention1h time.Duration
	// AlertTags are the tags whose contact is an EventFlowBadContact like a
	// malicious classification.
	AlertTags []string
	// LeaseFile is a dnsmasq lease file naming inside hosts ("": none).
	LeaseFile string
	// QueueSize bounds the datagrams waiting to be decoded (default 4096);
	// more are dropped and counted.
	QueueSize int
	// Workers decode datagrams in parallel (default 2).
	Workers int
	// ClickHouse, when set, receives every decoded flow of a registered
	// exporter (raw, before aggregation); Run runs and last flushes it.
	ClickHouse *ClickHouseSink
	// ListenUDP opens a listener's socket (nil: net.ListenUDP); tests open
	// it inside a network namespace.
	ListenUDP func(addr *net.UDPAddr) (*net.UDPConn, error)
}

// Views is where the collector reads the effective view and geo data of an
// address: the one index (*index.Index).
type Views interface {
	Snapshot() *index.Snap
}

type exporterSet map[netip.Addr]store.FlowExporter

// maxCount is where the collector's byte, packet and flow counts stop: the
// store's bigint columns (which stop there too: flow_sat). Exporters send
// 32- and 64-bit counters that are multiplied by sampling rates; a count at
// maxCount means "at least".
const maxCount = math.MaxInt64

// satAdd is a + b, at most maxCount.
func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a && s <= maxCount {
		return s
	}
	return maxCount
}

// satMul is a × b, at most maxCount.
func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 || lo > maxCount {
		return maxCount
	}
	return lo
}

type counts struct{ bytes, packets, flows uint64 }

func (c *counts) add(b, p uint64) {
	c.bytes, c.packets, c.flows = satAdd(c.bytes, b), satAdd(c.packets, p), satAdd(c.flows, 1)
}

// aggAcc is one aggregate's counts and its earliest flow of the batch.
type aggAcc struct {
	counts
	first time.Time
}

type aggKey struct {
	bucket       int64 // unix seconds of the 5-minute bucket
	host, remote netip.Addr
	port         uint16
	proto        uint8
}

type hostAcc struct {
	exporter    string
	mac         uint64
	first, last time.Time
	counts
}

type remoteKey struct {
	addr     netip.Addr
	exporter string
}

type remoteAcc struct {
	first, last time.Time
	counts
	peers map[netip.Addr]struct{}
	ports map[int]struct{}
}

// maxListed bounds the peers and ports kept per outside address and batch.
const maxListed = 32

type state struct {
	aggs    map[aggKey]*aggAcc
	hosts   map[netip.Addr]*hostAcc
	remotes map[remoteKey]*remoteAcc
	records uint64
}

func newState() *state {
	return &state{aggs: map[aggKey]*aggAcc{}, hosts: map[netip.Addr]*hostAcc{}, remotes: map[remoteKey]*remoteAcc{}}
}

// Collector receives, decodes and aggregates flows and writes them to the
// store every FlushEvery.
type Collector struct {
	st      *store.Store
	views   Views
	log     *slog.Logger
	now     func() time.Time
	cfg     Config
	dec     *Decoder
	m       *metrics
	exp     atomic.Pointer[exporterSet]
	mu      sync.Mutex
	cur     *state
	bound   chan []net.Addr
	lease   leaseState
	pruned  time.Time
	seq     *SeqTracker
	flushMu sync.Mutex
	// reload asks Run to read the exporters again: a datagram came from an
	// address no exporter has (perhaps one registered a moment ago).
	// reloadAsked (unix ns) keeps that to once per reloadEvery.
	reload      chan struct{}
	reloadAsked atomic.Int64
}

// reloadEvery is how often datagrams of unknown senders may have Run
// reread the exporters: a newly registered exporter counts within about
// that long (its earlier datagrams are counted as unknown_exporter).
const reloadEvery = time.Second

type leaseState struct {
	mod     time.Time
	size    int64
	applied time.Time // by the collector's clock
}

// leaseReapply is how often the lease file is applied even when it did not
// change and no new host came: leases expire by the clock alone.
const leaseReapply = 5 * time.Minute

// New returns a collector; reg receives its muninn_flow_* metrics.
func New(st *store.Store, views Views, log *slog.Logger, now func() time.Time, reg prometheus.Registerer, cfg Config) (*Collector, error) {
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 10 * time.Second
	}
	if cfg.Retention5m <= 0 {
		cfg.Retention5m = 48 * time.Hour
	}
	if cfg.Retention1h <= 0 {
		cfg.Retention1h = 90 * 24 * time.Hour
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	c := &Collector{st: st, views: views, log: log, now: now, cfg: cfg, cur: newState(), bound: make(chan []net.Addr, 1), seq: NewSeqTracker(),
		reload: make(chan struct{}, 1)}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c.m = m
	c.exp.Store(&exporterSet{})
	if c.dec, err = NewDecoder(c.add); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadExporters reads the registered exporters from the store; datagrams
// from other addresses are dropped and counted from then on.
func (c *Collector) LoadExporters(ctx context.Context) error {
	es, err := c.st.FlowExporters(ctx)
	if err != nil {
		return fmt.Errorf("flow: load exporters: %w", err)
	}
	set := exporterSet{}
	for _, e := range es {
		set[e.Address.Unmap()] = e
	}
	c.exp.Store(&set)
	return nil
}

// Handle decodes one datagram of protocol p from src and aggregates its
// flows; it reports whether the datagram was decoded. Datagrams of
// unregistered exporters and undecodable ones are counted and dropped.
//
// Handle also follows the datagram's sequence number (see SeqTracker):
// datagrams must be handed to it in the order they arrived.
func (c *Collector) Handle(p Protocol, src netip.AddrPort, payload []byte) bool {
	c.track(p, src, payload)
	return c.handle(p, src, payload, c.now())
}

// track counts what the sequence number of a registered exporter's
// datagram says (loss, late, restart) in muninn_flow_sequence_*.
func (c *Collector) track(p Protocol, src netip.AddrPort, payload []byte) {
	e, ok := (*c.exp.Load())[src.Addr().Unmap()]
	if !ok {
		return
	}
	r, ok := c.seq.Track(p, src, payload)
	switch {
	case !ok:
	case r.Lost > 0:
		c.m.seqLost.WithLabelValues(e.Name, string(r.Version)).Add(float64(r.Lost))
	case r.Late:
		c.m.seqLate.WithLabelValues(e.Name, string(r.Version)).Inc()
	case r.Reset:
		c.m.seqResets.WithLabelValues(e.Name, string(r.Version)).Inc()
	}
}

func (c *Collector) handle(p Protocol, src netip.AddrPort, payload []byte, received time.Time) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if _, ok := (*c.exp.Load())[src.Addr()]; !ok {
		c.m.datagrams.WithLabelValues(string(p), "unknown_exporter").Inc()
		c.askReload()
		return false
	}
	if err := c.dec.Decode(p, src, payload, received); err != nil {
		c.m.datagrams.WithLabelValues(string(p), "error").Inc()
		c.log.Debug("Dropped an undecodable flow datagram.", "exporter", src.Addr(), "protocol", p, "error", err)
		return false
	}
	c.m.datagrams.WithLabelValues(string(p), "decoded").Inc()
	return true
}

// askReload has Run reread the exporters, at most once per reloadEvery.
func (c *Collector) askReload() {
	now, last := time.Now().UnixNano(), c.reloadAsked.Load()
	if now-last < int64(reloadEvery) || !c.reloadAsked.CompareAndSwap(last, now) {
		return
	}
	select {
	case c.reload <- struct{}{}:
	default:
	}
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// servicePort is the port a conversation is filed under: the lower of the
// two (the service's port in nearly every conversation), 0 for protocols
// without ports.
func servicePort(f Flow) uint16 {
	if f.Proto != 6 && f.Proto != 17 && f.Proto != 132 {
		return 0
	}
	return min(f.SrcPort, f.DstPort)
}

// add aggregates one decoded flow (the decoder's emit).
func (c *Collector) add(f Flow) {
	e, ok := (*c.exp.Load())[f.Exporter]
	if !ok {
		return
	}
	rate := uint64(e.SamplingRate)
	if rate == 0 {
		rate = f.SamplingRate
	}
	if c.cfg.ClickHouse != nil {
		c.cfg.ClickHouse.Add(f, e.Name, rate)
	}
	rate = max(rate, 1)
	bytes, packets := satMul(f.Bytes, rate), satMul(f.Packets, rate)
	srcIn, dstIn := contains(e.Inside, f.Src), contains(e.Inside, f.Dst)
	var host, remote netip.Addr
	var mac uint64
	switch {
	case srcIn && !dstIn:
		host, remote, mac = f.Src, f.Dst, f.SrcMAC
	case dstIn && !srcIn:
		host, remote, mac = f.Dst, f.Src, f.DstMAC
	case srcIn && dstIn:
		c.m.records.WithLabelValues("internal").Inc()
		c.mu.Lock()
		c.seeHost(f.Src, e.Name, f.SrcMAC, f.Received, bytes, packets)
		c.seeHost(f.Dst, e.Name, f.DstMAC, f.Received, bytes, packets)
		c.mu.Unlock()
		return
	default:
		c.m.records.WithLabelValues("transit").Inc()
		return
	}
	c.m.records.WithLabelValues("aggregated").Inc()
	port := servicePort(f)
	k := aggKey{bucket: f.Received.Truncate(5 * time.Minute).Unix(), host: host, remote: remote, port: port, proto: f.Proto}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.cur
	s.records++
	a := s.aggs[k]
	if a == nil {
		a = &aggAcc{first: f.Received}
		s.aggs[k] = a
	}
	a.add(bytes, packets)
	if f.Received.Before(a.first) {
		a.first = f.Received
	}
	c.seeHost(host, e.Name, mac, f.Received, bytes, packets)
	rk := remoteKey{addr: remote, exporter: e.Name}
	r := s.remotes[rk]
	if r == nil {
		r = &remoteAcc{first: f.Received, peers: map[netip.Addr]struct{}{}, ports: map[int]struct{}{}}
		s.remotes[rk] = r
	}
	r.last = f.Received
	r.add(bytes, packets)
	if len(r.peers) < maxListed {
		r.peers[host] = struct{}{}
	}
	if len(r.ports) < maxListed && port != 0 {
		r.ports[int(port)] = struct{}{}
	}
}

// seeHost records traffic of an inside host; c.mu is held.
func (c *Collector) seeHost(a netip.Addr, exporter string, mac uint64, at time.Time, bytes, packets uint64) {
	h := c.cur.hosts[a]
	if h == nil {
		h = &hostAcc{exporter: exporter, first: at}
		c.cur.hosts[a] = h
	}
	h.last = at
	if mac != 0 {
		h.mac = mac
	}
	h.add(bytes, packets)
}

func formatMAC(m uint64) string {
	if m == 0 {
		return ""
	}
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", byte(m>>40), byte(m>>32), byte(m>>24), byte(m>>16), byte(m>>8), byte(m))
}

// Flush writes what was aggregated since the last flush: a sighting of
// every outside address (source flow:<exporter>, through store.Ingest), then
// the aggregates, hosts, outside-address details and contacts with their
// events (store.FlowApply). Country and AS organisation come from the index's
// geo data, classifications and tags from its effective view. A failed
// batch is counted (muninn_flow_records_lost_total) and not retried.
func (c *Collector) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	s := c.cur
	c.cur = newState()
	c.mu.Unlock()
	if len(s.hosts) == 0 && len(s.aggs) == 0 {
		return c.maintain(ctx, false)
	}
	start := time.Now()
	err := c.write(ctx, s)
	c.m.flushSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.flushes.WithLabelValues("error").Inc()
		c.m.lost.Add(float64(s.records))
		return err
	}
	c.m.flushes.WithLabelValues("ok").Inc()
	return c.maintain(ctx, true)
}

type remoteInfo struct {
	geo            index.GeoNet
	classification string
	tags           []string // every live tag
	alert          bool     // Contact's alert: malicious, or an alert tag
}

func (c *Collector) write(ctx context.Context, s *state) error {
	snap := c.views.Snapshot()
	infos := map[netip.Addr]*remoteInfo{}
	info := func(a netip.Addr) *remoteInfo {
		if ri, ok := infos[a]; ok {
			return ri
		}
		ri := &remoteInfo{}
		if snap != nil {
			ri.geo, _ = snap.Geo(a)
			if v, ok := snap.Lookup(a); ok {
				ri.classification, ri.tags = v.Classification, v.TagNames()
				_, ri.alert = Contact(v, c.cfg.AlertTags)
			}
		}
		infos[a] = ri
		return ri
	}
	var b store.FlowBatch
	type contactKey struct {
		host, remote netip.Addr
		hour         int64
	}
	type contactAcc struct {
		bytes uint64
		first time.Time
	}
	contacts := map[contactKey]*contactAcc{}
	for k, a := range s.aggs {
		ri := info(k.remote)
		b.Aggregates = append(b.Aggregates, store.FlowAggregate{Bucket: time.Unix(k.bucket, 0).UTC(), First: a.first, Host: k.host, Remote: k.remote,
			Port: int(k.port), Proto: k.proto, Country: ri.geo.Country, Org: ri.geo.Org, ASN: ri.geo.ASN,
			Bytes: a.bytes, Packets: a.packets, Flows: a.flows})
		if ri.alert {
			ck := contactKey{k.host, k.remote, k.bucket - k.bucket%3600}
			ca := contacts[ck]
			if ca == nil {
				ca = &contactAcc{first: a.first}
				contacts[ck] = ca
			}
			ca.bytes = satAdd(ca.bytes, a.bytes)
			if a.first.Before(ca.first) {
				ca.first = a.first
			}
		}
	}
	for k, ca := range contacts {
		ri := infos[k.remote]
		b.Contacts = append(b.Contacts, store.FlowContact{Host: k.host, Remote: k.remote, Hour: time.Unix(k.hour, 0).UTC(), First: ca.first,
			Classification: ri.classification, Tags: ri.tags, Bytes: ca.bytes})
	}
	slices.SortFunc(b.Contacts, func(x, y store.FlowContact) int {
		if c := x.Host.Compare(y.Host); c != 0 {
			return c
		}
		if c := x.Remote.Compare(y.Remote); c != 0 {
			return c
		}
		return x.Hour.Compare(y.Hour)
	})
	for a, h := range s.hosts {
		b.Hosts = append(b.Hosts, store.FlowHostSeen{Address: a, Exporter: h.exporter, MAC: formatMAC(h.mac),
			FirstSeen: h.first, LastSeen: h.last, Bytes: h.bytes, Packets: h.packets, Flows: h.flows})
	}
	byExporter := map[string][]store.Observation{}
	for k, r := range s.remotes {
		fr := store.FlowRemoteSeen{Address: k.addr, Exporter: k.exporter, FirstSeen: r.first, LastSeen: r.last,
			Bytes: r.bytes, Packets: r.packets, Flows: r.flows}
		for p := range r.peers {
			fr.Peers = append(fr.Peers, p)
		}
		slices.SortFunc(fr.Peers, netip.Addr.Compare)
		for p := range r.ports {
			fr.Ports = append(fr.Ports, p)
		}
		slices.Sort(fr.Ports)
		b.Remotes = append(b.Remotes, fr)
		byExporter[k.exporter] = append(byExporter[k.exporter], store.Observation{
			Prefix: netip.PrefixFrom(k.addr, k.addr.BitLen()), Source: "flow:" + k.exporter, SeenAt: r.last})
	}
	slices.SortFunc(b.Remotes, func(x, y store.FlowRemoteSeen) int {
		if c := x.Address.Compare(y.Address); c != 0 {
			return c
		}
		return strings.Compare(x.Exporter, y.Exporter)
	})
	for exp, obs := range byExporter {
		if err := c.st.Ingest(ctx, obs, "flow:"+exp); err != nil {
			return fmt.Errorf("flow: sightings of %s: %w", exp, err)
		}
	}
	applied, err := c.st.FlowApply(ctx, b)
	if err != nil {
		return fmt.Errorf("flow: apply: %w", err)
	}
	for _, ev := range applied.Events {
		c.m.events.WithLabelValues(ev.Kind).Inc()
	}
	return nil
}

// maintain applies the lease file when it changed (or new hosts may need
// its names) and drops expired partitions once an hour.
func (c *Collector) maintain(ctx context.Context, wrote bool) error {
	var errs []error
	if c.cfg.LeaseFile != "" {
		fi, err := os.Stat(c.cfg.LeaseFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("flow: lease file: %w", err))
		case wrote || !fi.ModTime().Equal(c.lease.mod) || fi.Size() != c.lease.size || c.now().Sub(c.lease.applied) >= leaseReapply:
			b, err := os.ReadFile(c.cfg.LeaseFile)
			if err == nil {
				err = c.st.FlowLeasesApply(ctx, ParseLeases(b, c.now()))
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("flow: lease file: %w", err))
			} else {
				c.lease = leaseState{mod: fi.ModTime(), size: fi.Size(), applied: c.now()}
			}
		}
	}
	if now := c.now(); now.Sub(c.pruned) >= time.Hour {
		n, err := c.st.FlowPrune(ctx, now, c.cfg.Retention5m, c.cfg.Retention1h)
		if err != nil {
			errs = append(errs, fmt.Errorf("flow: prune: %w", err))
		} else {
			c.pruned = now
			if n > 0 {
				c.log.Info("Dropped expired flow aggregate partitions.", "partitions", n)
			}
		}
	}
	return errors.Join(errs...)
}

// Bound returns the addresses the listeners are bound to, once Run has
// opened them (tests listen on port 0).
func (c *Collector) Bound() <-chan []net.Addr { return c.bound }

type datagram struct {
	p        Protocol
	src      netip.AddrPort
	payload  []byte
	received time.Time
}

// Run opens the listeners, decodes what arrives and flushes every
// FlushEvery until ctx ends; then it closes the sockets, drains the queue
// and flushes once more.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.LoadExporters(ctx); err != nil {
		return err
	}
	var conns []*net.UDPConn
	var addrs []net.Addr
	for _, l := range c.cfg.Listen {
		ua, err := net.ResolveUDPAddr("udp", l.Addr)
		if err != nil {
			return fmt.Errorf("flow: listen %s: %w", l.Addr, err)
		}
		listen := c.cfg.ListenUDP
		if listen == nil {
			listen = func(a *net.UDPAddr) (*net.UDPConn, error) { return net.ListenUDP("udp", a) }
		}
		conn, err := listen(ua)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return fmt.Errorf("flow: listen %s: %w", l.Addr, err)
		}
		_ = conn.SetReadBuffer(4 << 20)
		conns = append(conns, conn)
		addrs = append(addrs, conn.LocalAddr())
	}
	c.bound <- addrs
	queue := make(chan datagram, c.cfg.QueueSize)
	var readers, workers sync.WaitGroup
	for i, conn := range conns {
		p := c.cfg.Listen[i].Protocol
		readers.Go(func() { c.read(conn, p, queue) })
	}
	for range c.cfg.Workers {
		workers.Go(func() {
			for d := range queue {
				c.handle(d.p, d.src, d.payload, d.received)
			}
		})
	}
	sinkDone := make(chan struct{})
	sctx, stopSink := context.WithCancel(context.Background())
	if c.cfg.ClickHouse != nil {
		go func() { c.cfg.ClickHouse.Run(sctx); close(sinkDone) }()
	} else {
		close(sinkDone)
	}
	c.log.Info("Receiving flows.", "listeners", addrs)
	tick := time.NewTicker(c.cfg.FlushEvery)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-c.reload:
			if err := c.LoadExporters(ctx); err != nil {
				c.log.Warn("Could not reload the flow exporters.", "error", err)
			}
		case <-tick.C:
			if err := c.LoadExporters(ctx); err != nil {
				c.log.Warn("Could not reload the flow exporters.", "error", err)
			}
			if err := c.Flush(ctx); err != nil {
				c.log.Warn("Could not store flows.", "error", err)
			}
		}
	}
	for _, conn := range conns {
		_ = conn.Close()
	}
	readers.Wait()
	close(queue)
	workers.Wait()
	stopSink() // the sink flushes what the workers gave it
	<-sinkDone
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Flush(fctx)
}

func (c *Collector) read(conn *net.UDPConn, p Protocol, queue chan<- datagram) {
	buf := make([]byte, 65536)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.track(p, src, buf[:n])
		d := datagram{p: p, src: src, payload: slices.Clone(buf[:n]), received: c.now()}
		select {
		case queue <- d:
		default:
			c.m.dropped.WithLabelValues(string(p)).Inc()
		}
	}
}
