package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// Flow event kinds (migration 0016's events table), produced by FlowApply.
const (
	// EventFlowNewHost: an inside host was seen for the first time
	// (subject_type "host", subject its address).
	EventFlowNewHost = "flow.new_host"
	// EventFlowBadContact: an inside host contacted an address whose view was
	// malicious or carried an alert tag; one per host, address and hour
	// (subject_type "host"; details remote, classification, tags, bytes).
	EventFlowBadContact = "flow.bad_contact"
	// EventFlowNewDestination: an inside host that was already known sent
	// traffic to a country or AS organisation it never used before
	// (subject_type "host"; details kind "country" or "org", value).
	EventFlowNewDestination = "flow.new_destination"
)

// DefaultInside are the networks an exporter's inside hosts live in unless
// it says otherwise: RFC 1918 and IPv6 unique local addresses.
var DefaultInside = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
}

// FlowExporter is a registered flow exporter (migration 0024): datagrams
// from Address are decoded; others are dropped and counted. SamplingRate 0
// means the rate the exporter sends (1 when it sends none). Inside are the
// networks of its inside hosts.
// The JSON form is the exporter as the audit log keeps it.
type FlowExporter struct {
	ID           int64          `json:"id"`
	Address      netip.Addr     `json:"address"`
	Name         string         `json:"name"`
	SamplingRate int            `json:"sampling_rate"`
	Inside       []netip.Prefix `json:"inside"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
}

const flowExporterCols = `id, address, name, sampling_rate, inside, created_at, updated_at`

func scanFlowExporter(row pgx.Row) (FlowExporter, error) {
	var e FlowExporter
	var addr netip.Prefix
	err := row.Scan(&e.ID, &addr, &e.Name, &e.SamplingRate, &e.Inside, &e.CreatedAt, &e.UpdatedAt)
	e.Address, e.CreatedAt, e.UpdatedAt = addr.Addr(), e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e, err
}

// FlowExporters returns every registered exporter by name.
func (s *Store) FlowExporters(ctx context.Context) ([]FlowExporter, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+flowExporterCols+` FROM flow_exporters ORDER BY name`)
	if err != nil {
		return nil, mapErr("flow exporters", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowExporter, error) { return scanFlowExporter(r) })
	if err != nil {
		return nil, mapErr("flow exporters", err)
	}
	return out, nil
}

// FlowExporterGet returns the exporter named name; ErrNotFound when none.
func (s *Store) FlowExporterGet(ctx context.Context, name string) (FlowExporter, error) {
	e, err := scanFlowExporter(s.pool.QueryRow(ctx, `SELECT `+flowExporterCols+` FROM flow_exporters WHERE name = $1`, name))
	if err != nil {
		return FlowExporter{}, mapErr("flow exporter", err)
	}
	return e, nil
}

// FlowExporterPut creates or replaces the exporter named e.Name (nil Inside
// means DefaultInside), audited as actor ("flow_exporter.put", object
// "flow_exporter/<name>", the exporter before (none when created) and
// after). ErrConflict when another exporter has e.Address.
func (s *Store) FlowExporterPut(ctx context.Context, e FlowExporter, actor string) (FlowExporter, error) {
	inside := e.Inside
	if inside == nil {
		inside = DefaultInside
	}
	var out FlowExporter
	err := s.inTx(ctx, "put flow exporter", func(tx pgx.Tx) error {
		old, err := scanFlowExporter(tx.QueryRow(ctx, `SELECT `+flowExporterCols+` FROM flow_exporters WHERE name = $1 FOR UPDATE`, e.Name))
		var before any
		switch {
		case err == nil:
			before = old
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		row := tx.QueryRow(ctx, `INSERT INTO flow_exporters (address, name, sampling_rate, inside)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET address = excluded.address, sampling_rate = excluded.sampling_rate,
			  inside = excluded.inside, updated_at = now()
			RETURNING `+flowExporterCols, e.Address.Unmap(), e.Name, e.SamplingRate, inside)
		if out, err = scanFlowExporter(row); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "flow_exporter.put", "flow_exporter/"+e.Name, before, out)
	})
	if err != nil {
		return FlowExporter{}, err
	}
	return out, nil
}

// FlowExporterDelete removes the exporter named name, audited as actor
// ("flow_exporter.delete", object "flow_exporter/<name>", the exporter
// before); ErrNotFound when none.
func (s *Store) FlowExporterDelete(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete flow exporter", func(tx pgx.Tx) error {
		old, err := scanFlowExporter(tx.QueryRow(ctx, `DELETE FROM flow_exporters WHERE name = $1 RETURNING `+flowExporterCols, name))
		if err != nil {
			return mapErr("delete flow exporter", err)
		}
		return audit(ctx, tx, actor, "flow_exporter.delete", "flow_exporter/"+name, old, nil)
	})
}

// FlowAggregate is the traffic between an inside host and an outside
// address on one port and protocol in one 5-minute bucket. Bytes and Packets
// are already multiplied by the sampling rate.
type FlowAggregate struct {
	Bucket time.Time
	// First is the earliest flow of the batch in the bucket (a new
	// destination's event time); the zero time means Bucket.
	First   time.Time
	Host    netip.Addr
	Remote  netip.Addr
	Port    int
	Proto   uint8
	Country string
	Org     string
	ASN     uint32
	Bytes   uint64
	Packets uint64
	Flows   uint64
}

// FlowHostSeen is what one batch saw of an inside host.
type FlowHostSeen struct {
	Address   netip.Addr
	Exporter  string
	MAC       string // "" when the exporter sent none
	FirstSeen time.Time
	LastSeen  time.Time
	Bytes     uint64
	Packets   uint64
	Flows     uint64
}

// FlowRemoteSeen is what one batch saw of an outside address through one
// exporter: totals, and up to 32 inside peers and ports.
type FlowRemoteSeen struct {
	Address   netip.Addr
	Exporter  string
	FirstSeen time.Time
	LastSeen  time.Time
	Bytes     uint64
	Packets   uint64
	Flows     uint64
	Peers     []netip.Addr
	Ports     []int
}

// FlowContact is an inside host's traffic in one hour with an outside
// address whose view, when the collector wrote it, called for an alert
// (flow.Contact: malicious, or an alert tag). The first one stored of each
// host, address and hour becomes an EventFlowBadContact; the rest only add
// bytes. Profiles do not read these: they ask the index (flow.Contacts).
type FlowContact struct {
	Host   netip.Addr
	Remote netip.Addr
	Hour   time.Time
	// First is the batch's earliest flow of the contact in Hour: the
	// event's time. The zero time means Hour.
	First          time.Time
	Classification string
	Tags           []string
	Bytes          uint64
}

// FlowBatch is what the collector stores at once.
type FlowBatch struct {
	Aggregates []FlowAggregate
	Hosts      []FlowHostSeen
	Remotes    []FlowRemoteSeen
	Contacts   []FlowContact
}

// FlowApplied says what a FlowApply caused: the events it appended.
type FlowApplied struct {
	Events []Event
}

const (
	flowBatchTemp = `CREATE TEMP TABLE IF NOT EXISTS flow_batch (
		bucket timestamptz NOT NULL, first timestamptz NOT NULL, host inet NOT NULL, remote inet NOT NULL, port integer NOT NULL, proto smallint NOT NULL,
		country text NOT NULL, org text NOT NULL, asn bigint NOT NULL, bytes bigint NOT NULL, packets bigint NOT NULL,
		flows bigint NOT NULL) ON COMMIT DELETE ROWS`
	flowEnsureParts = `SELECT flow_partition_ensure(d) FROM (
		SELECT DISTINCT date_trunc('day', bucket, 'UTC') d FROM flow_batch) days`
	// Rows are merged in key order so concurrent batches lock alike.
	flowAgg5m = `INSERT INTO flow_agg_5m AS a SELECT bucket, host, remote, port, proto, max(country), max(org), max(asn),
		  flow_sat(sum(bytes)), flow_sat(sum(packets)), flow_sat(sum(flows))
		FROM flow_batch GROUP BY bucket, host, remote, port, proto ORDER BY bucket, host, remote, port, proto
		ON CONFLICT (bucket, host, remote, port, proto) DO UPDATE SET
		  bytes = flow_sat(a.bytes::numeric + excluded.bytes), packets = flow_sat(a.packets::numeric + excluded.packets), flows = flow_sat(a.flows::numeric + excluded.flows),
		  country = excluded.country, org = excluded.org, asn = excluded.asn`
	flowAgg1h = `INSERT INTO flow_agg_1h AS a SELECT date_trunc('hour', bucket, 'UTC'), host, remote, port, proto,
		  max(country), max(org), max(asn), flow_sat(sum(bytes)), flow_sat(sum(packets)), flow_sat(sum(flows))
		FROM flow_batch GROUP BY 1, host, remote, port, proto ORDER BY 1, host, remote, port, proto
		ON CONFLICT (bucket, host, remote, port, proto) DO UPDATE SET
		  bytes = flow_sat(a.bytes::numeric + excluded.bytes), packets = flow_sat(a.packets::numeric + excluded.packets), flows = flow_sat(a.flows::numeric + excluded.flows),
		  country = excluded.country, org = excluded.org, asn = excluded.asn`
	// xmax = 0 marks a row this statement inserted rather than updated.
	flowHostsUpsert = `INSERT INTO flow_hosts AS h (address, first_seen, last_seen, exporter, mac, bytes, packets, flows)
		SELECT * FROM unnest($1::inet[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])
		ORDER BY 1
		ON CONFLICT (address) DO UPDATE SET
		  first_seen = least(h.first_seen, excluded.first_seen), last_seen = greatest(h.last_seen, excluded.last_seen),
		  exporter = excluded.exporter, mac = CASE WHEN excluded.mac <> '' THEN excluded.mac ELSE h.mac END,
		  bytes = flow_sat(h.bytes::numeric + excluded.bytes), packets = flow_sat(h.packets::numeric + excluded.packets), flows = flow_sat(h.flows::numeric + excluded.flows)
		RETURNING address, first_seen, exporter, mac, (xmax = 0) AS inserted`
	flowRemotesUpsert = `INSERT INTO flow_remotes AS r (address, exporter, first_seen, last_seen, bytes, packets, flows, peers, ports)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (address, exporter) DO UPDATE SET
		  first_seen = least(r.first_seen, excluded.first_seen), last_seen = greatest(r.last_seen, excluded.last_seen),
		  bytes = flow_sat(r.bytes::numeric + excluded.bytes), packets = flow_sat(r.packets::numeric + excluded.packets), flows = flow_sat(r.flows::numeric + excluded.flows),
		  peers = (SELECT coalesce(array_agg(p), '{}') FROM (SELECT DISTINCT p FROM unnest(excluded.peers || r.peers) p ORDER BY p LIMIT 32) x),
		  ports = (SELECT coalesce(array_agg(p), '{}') FROM (SELECT DISTINCT p FROM unnest(excluded.ports || r.ports) p ORDER BY p LIMIT 32) x)`
	flowContactInsert = `INSERT INTO flow_contacts AS c (host, remote, hour, classification, tags, bytes)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (host, remote, hour) DO UPDATE SET bytes = flow_sat(c.bytes::numeric + excluded.bytes)
		RETURNING (xmax = 0)`
	flowDestinations = `INSERT INTO flow_host_destinations (host, kind, value, first_seen)
		SELECT host, kind, value, min(first) FROM (
		  SELECT host, 'country' kind, country value, first FROM flow_batch WHERE country <> ''
		  UNION ALL
		  SELECT host, 'org', org, first FROM flow_batch WHERE org <> '') d
		GROUP BY host, kind, value ORDER BY host, kind, value
		ON CONFLICT DO NOTHING
		RETURNING host, kind, value, first_seen`
)

var flowBatchColumns = []string{"bucket", "first", "host", "remote", "port", "proto", "country", "org", "asn", "bytes", "packets", "flows"}

// FlowApply stores a batch in one transaction: the aggregates (5 min and
// 1 h, creating day partitions as needed), inside hosts, outside addresses,
// contacts, and the events they cause (EventFlowNewHost,
// EventFlowBadContact, EventFlowNewDestination), which it also returns.
func (s *Store) FlowApply(ctx context.Context, b FlowBatch) (FlowApplied, error) {
	var out FlowApplied
	err := s.inTx(ctx, "flow apply", func(tx pgx.Tx) error {
		out = FlowApplied{}
		newHosts := map[netip.Addr]bool{}
		if len(b.Hosts) > 0 {
			n := len(b.Hosts)
			addrs, firsts, lasts := make([]netip.Addr, n), make([]time.Time, n), make([]time.Time, n)
			exps, macs := make([]string, n), make([]string, n)
			bytes, pkts, flows := make([]int64, n), make([]int64, n), make([]int64, n)
			for i, h := range b.Hosts {
				addrs[i], firsts[i], lasts[i], exps[i], macs[i] = h.Address, h.FirstSeen, h.LastSeen, h.Exporter, h.MAC
				bytes[i], pkts[i], flows[i] = int64(h.Bytes), int64(h.Packets), int64(h.Flows)
			}
			rows, err := tx.Query(ctx, flowHostsUpsert, addrs, firsts, lasts, exps, macs, bytes, pkts, flows)
			if err != nil {
				return fmt.Errorf("upsert hosts: %w", err)
			}
			for rows.Next() {
				var addr netip.Prefix
				var first time.Time
				var exp, mac string
				var inserted bool
				if err := rows.Scan(&addr, &first, &exp, &mac, &inserted); err != nil {
					rows.Close()
					return fmt.Errorf("upsert hosts: %w", err)
				}
				if inserted {
					newHosts[addr.Addr()] = true
					details := map[string]any{"exporter": exp}
					if mac != "" {
						details["mac"] = mac
					}
					out.Events = append(out.Events, Event{At: first, Kind: EventFlowNewHost, SubjectType: "host",
						Subject: addr.Addr().String(), Details: details})
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("upsert hosts: %w", err)
			}
		}
		if len(b.Aggregates) > 0 {
			if _, err := tx.Exec(ctx, flowBatchTemp); err != nil {
				return fmt.Errorf("create batch table: %w", err)
			}
			src := pgx.CopyFromSlice(len(b.Aggregates), func(i int) ([]any, error) {
				a := b.Aggregates[i]
				first := a.First
				if first.IsZero() {
					first = a.Bucket
				}
				return []any{a.Bucket, first, a.Host, a.Remote, a.Port, int16(a.Proto), a.Country, a.Org, int64(a.ASN),
					int64(a.Bytes), int64(a.Packets), int64(a.Flows)}, nil
			})
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"flow_batch"}, flowBatchColumns, src); err != nil {
				return fmt.Errorf("copy aggregates: %w", err)
			}
			for _, q := range []string{flowEnsureParts, flowAgg5m, flowAgg1h} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return fmt.Errorf("merge aggregates: %w", err)
				}
			}
			rows, err := tx.Query(ctx, flowDestinations)
			if err != nil {
				return fmt.Errorf("destinations: %w", err)
			}
			for rows.Next() {
				var host netip.Prefix
				var kind, value string
				var first time.Time
				if err := rows.Scan(&host, &kind, &value, &first); err != nil {
					rows.Close()
					return fmt.Errorf("destinations: %w", err)
				}
				// A host's first traffic is its baseline, not news.
				if newHosts[host.Addr()] {
					continue
				}
				out.Events = append(out.Events, Event{At: first, Kind: EventFlowNewDestination, SubjectType: "host",
					Subject: host.Addr().String(), Details: map[string]any{"kind": kind, "value": value}})
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("destinations: %w", err)
			}
		}
		if len(b.Remotes) > 0 {
			bt := &pgx.Batch{}
			for _, r := range b.Remotes {
				peers, ports := r.Peers, r.Ports
				if peers == nil {
					peers = []netip.Addr{}
				}
				if ports == nil {
					ports = []int{}
				}
				bt.Queue(flowRemotesUpsert, r.Address, r.Exporter, r.FirstSeen, r.LastSeen,
					int64(r.Bytes), int64(r.Packets), int64(r.Flows), peers, ports)
			}
			if err := tx.SendBatch(ctx, bt).Close(); err != nil {
				return fmt.Errorf("upsert remotes: %w", err)
			}
		}
		for _, c := range b.Contacts {
			tags := c.Tags
			if tags == nil {
				tags = []string{}
			}
			var inserted bool
			if err := tx.QueryRow(ctx, flowContactInsert, c.Host, c.Remote, c.Hour, c.Classification, tags, int64(c.Bytes)).Scan(&inserted); err != nil {
				return fmt.Errorf("contacts: %w", err)
			}
			if inserted {
				at := c.First
				if at.IsZero() {
					at = c.Hour
				}
				out.Events = append(out.Events, Event{At: at, Kind: EventFlowBadContact, SubjectType: "host",
					Subject: c.Host.String(), Details: map[string]any{"remote": c.Remote.String(),
						"classification": c.Classification, "tags": tags, "bytes": c.Bytes}})
			}
		}
		return appendEvents(ctx, tx, out.Events)
	})
	if err != nil {
		return FlowApplied{}, err
	}
	return out, nil
}

// FlowPrune drops the 5-minute aggregate partitions that ended before
// now-keep5m, the 1-hour ones before now-keep1h, and the contacts older than
// keep1h. It returns how many partitions it dropped.
func (s *Store) FlowPrune(ctx context.Context, now time.Time, keep5m, keep1h time.Duration) (int, error) {
	var total int
	err := s.inTx(ctx, "flow prune", func(tx pgx.Tx) error {
		for _, p := range []struct {
			table string
			keep  time.Duration
		}{{"flow_agg_5m", keep5m}, {"flow_agg_1h", keep1h}} {
			var n int
			if err := tx.QueryRow(ctx, `SELECT flow_partitions_prune($1, $2)`, p.table, now.Add(-p.keep)).Scan(&n); err != nil {
				return err
			}
			total += n
		}
		_, err := tx.Exec(ctx, `DELETE FROM flow_contacts WHERE hour < $1`, now.Add(-keep1h))
		return err
	})
	return total, err
}

// FlowLease is what a DHCP lease file says of an inside address: its name
// ("" when the client sent none) and its MAC ("" when the file has none).
type FlowLease struct {
	Address netip.Addr
	Name    string
	MAC     string
}

// FlowLeasesApply applies a whole lease file to the known inside hosts:
// a host it lists gets the lease's name as lease_name (and its MAC when the
// host has none); every other host's lease_name is cleared, so a removed or
// expired lease stops naming its host. An address listed twice takes its
// last lease. Labels, and MACs once set, are left alone.
func (s *Store) FlowLeasesApply(ctx context.Context, leases []FlowLease) error {
	last := make(map[netip.Addr]int, len(leases))
	for i, l := range leases {
		last[l.Address.Unmap()] = i
	}
	var addrs []netip.Addr
	var names, macs []string
	for i, l := range leases {
		if a := l.Address.Unmap(); last[a] == i {
			addrs, names, macs = append(addrs, a), append(names, l.Name), append(macs, l.MAC)
		}
	}
	if addrs == nil {
		addrs, names, macs = []netip.Addr{}, []string{}, []string{}
	}
	return s.inTx(ctx, "flow leases", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE flow_hosts h SET lease_name = l.name,
			  mac = CASE WHEN h.mac = '' THEN l.mac ELSE h.mac END
			FROM unnest($1::inet[], $2::text[], $3::text[]) l(address, name, mac)
			WHERE h.address = l.address AND (h.lease_name <> l.name OR (h.mac = '' AND l.mac <> ''))`, addrs, names, macs); err != nil {
			return err
		}
		// NOT EXISTS rather than <> ALL: an anti-join, not a scan of the
		// array for every host.
		_, err := tx.Exec(ctx, `UPDATE flow_hosts h SET lease_name = ''
			WHERE h.lease_name <> '' AND NOT EXISTS (SELECT 1 FROM unnest($1::inet[]) l(address) WHERE l.address = h.address)`, addrs)
		return err
	})
}

// FlowHost is a tracked inside host.
type FlowHost struct {
	Address   netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
	Exporter  string
	MAC       string
	LeaseName string
	Label     string
	Bytes     int64
	Packets   int64
	Flows     int64
}

const flowHostCols = `address, first_seen, last_seen, exporter, mac, lease_name, label, bytes, packets, flows`

func scanFlowHost(row pgx.Row) (FlowHost, error) {
	var h FlowHost
	var addr netip.Prefix
	err := row.Scan(&addr, &h.FirstSeen, &h.LastSeen, &h.Exporter, &h.MAC, &h.LeaseName, &h.Label, &h.Bytes, &h.Packets, &h.Flows)
	h.Address, h.FirstSeen, h.LastSeen = addr.Addr(), h.FirstSeen.UTC(), h.LastSeen.UTC()
	return h, err
}

// FlowHostGet returns the inside host addr; ErrNotFound when never seen.
func (s *Store) FlowHostGet(ctx context.Context, addr netip.Addr) (FlowHost, error) {
	h, err := scanFlowHost(s.pool.QueryRow(ctx, `SELECT `+flowHostCols+` FROM flow_hosts WHERE address = $1`, addr.Unmap()))
	if err != nil {
		return FlowHost{}, mapErr("flow host", err)
	}
	return h, nil
}

// flowHostLabelAudit is a host's label as the audit log keeps it.
type flowHostLabelAudit struct {
	Label string `json:"label"`
}

// FlowHostLabel sets the manual label of inside host addr ("" clears it),
// audited as actor ("flow_host.label", object "flow_host/<address>",
// {"label": ...} before and after); ErrNotFound when never seen.
func (s *Store) FlowHostLabel(ctx context.Context, addr netip.Addr, label, actor string) (FlowHost, error) {
	addr = addr.Unmap()
	var h FlowHost
	err := s.inTx(ctx, "flow host label", func(tx pgx.Tx) error {
		var old string
		if err := tx.QueryRow(ctx, `SELECT label FROM flow_hosts WHERE address = $1 FOR UPDATE`, addr).Scan(&old); err != nil {
			return mapErr("flow host label", err)
		}
		var err error
		if h, err = scanFlowHost(tx.QueryRow(ctx, `UPDATE flow_hosts SET label = $2 WHERE address = $1 RETURNING `+flowHostCols, addr, label)); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "flow_host.label", "flow_host/"+addr.String(), flowHostLabelAudit{old}, flowHostLabelAudit{label})
	})
	if err != nil {
		return FlowHost{}, err
	}
	return h, nil
}

// FlowHosts returns the inside hosts within p (every host when p is the
// zero Prefix), most bytes first, at most limit.
func (s *Store) FlowHosts(ctx context.Context, within netip.Prefix, limit int) ([]FlowHost, error) {
	var w any
	if within.IsValid() {
		w = within
	}
	rows, err := s.pool.Query(ctx, `SELECT `+flowHostCols+` FROM flow_hosts WHERE ($1::cidr IS NULL OR address <<= $1)
		ORDER BY bytes DESC, address LIMIT $2`, w, limit)
	if err != nil {
		return nil, mapErr("flow hosts", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowHost, error) { return scanFlowHost(r) })
	if err != nil {
		return nil, mapErr("flow hosts", err)
	}
	return out, nil
}

// FlowCount is one row of a top list: a key with its totals.
type FlowCount struct {
	Key     string
	Bytes   int64
	Packets int64
	Flows   int64
}

// FlowPoint is the bytes of one hour.
type FlowPoint struct {
	At    time.Time
	Bytes int64
}

// FlowContactRow is an inside host's traffic with an outside address whose
// effective view is bad (see flow.Contact): the bytes since the profile's
// start and the last hour with traffic. The store only gives the pairs
// (FlowPeersEach); what an address is comes from the index.
type FlowContactRow struct {
	Host           netip.Addr
	Remote         netip.Addr
	LastHour       time.Time
	Classification string
	Tags           []string
	Bytes          int64
}

// FlowNewDestination is an outside address the hosts first talked with
// since the profile's week start.
type FlowNewDestination struct {
	Remote    netip.Addr
	Country   string
	Org       string
	FirstSeen time.Time
	Bytes     int64
}

// FlowProfile is where the inside hosts within a prefix talk, from the
// 1-hour aggregates since Since.
type FlowProfile struct {
	Within          netip.Prefix
	Since           time.Time
	Bytes           int64
	Packets         int64
	Flows           int64
	Countries       []FlowCount
	Orgs            []FlowCount
	Ports           []FlowCount // key "port/proto", e.g. "443/6"
	Series          []FlowPoint // one point per hour with traffic, oldest first
	NewDestinations []FlowNewDestination
	// Contacts is filled by flow.Profile from the index, never by the store.
	Contacts []FlowContactRow
}

const (
	flowProfileTop = `SELECT k, flow_sat(sum(bytes)), flow_sat(sum(packets)), flow_sat(sum(flows)) FROM (
		  SELECT CASE $3::text WHEN 'country' THEN country WHEN 'org' THEN org ELSE port || '/' || proto END k, bytes, packets, flows
		  FROM flow_agg_1h WHERE host <<= $1 AND bucket >= $2) t
		WHERE k <> '' GROUP BY k ORDER BY 2 DESC, 1 LIMIT $4`
	flowProfileSeries = `SELECT bucket, flow_sat(sum(bytes)) FROM flow_agg_1h WHERE host <<= $1 AND bucket >= $2 GROUP BY bucket ORDER BY bucket`
	flowProfileNew    = `SELECT remote, max(country), max(org), min(bucket), flow_sat(sum(bytes)) FROM flow_agg_1h
		WHERE host <<= $1 GROUP BY remote HAVING min(bucket) >= $2 ORDER BY min(bucket) DESC, remote LIMIT $3`
)

// FlowProfileGet builds the profile of the inside hosts within p (a single
// host is a /32 or /128) since since, with top lists of at most limit rows;
// new destinations are those first seen at or after weekStart.
func (s *Store) FlowProfileGet(ctx context.Context, within netip.Prefix, since, weekStart time.Time, limit int) (FlowProfile, error) {
	pr := FlowProfile{Within: within, Since: since}
	top := func(kind string) ([]FlowCount, error) {
		rows, err := s.pool.Query(ctx, flowProfileTop, within, since, kind, limit)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowCount, error) {
			var c FlowCount
			err := r.Scan(&c.Key, &c.Bytes, &c.Packets, &c.Flows)
			return c, err
		})
	}
	var err error
	if pr.Countries, err = top("country"); err != nil {
		return pr, mapErr("flow profile", err)
	}
	if pr.Orgs, err = top("org"); err != nil {
		return pr, mapErr("flow profile", err)
	}
	if pr.Ports, err = top("port"); err != nil {
		return pr, mapErr("flow profile", err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(flow_sat(sum(bytes)), 0), coalesce(flow_sat(sum(packets)), 0), coalesce(flow_sat(sum(flows)), 0)
		FROM flow_agg_1h WHERE host <<= $1 AND bucket >= $2`, within, since).Scan(&pr.Bytes, &pr.Packets, &pr.Flows); err != nil {
		return pr, mapErr("flow profile", err)
	}
	rows, err := s.pool.Query(ctx, flowProfileSeries, within, since)
	if err != nil {
		return pr, mapErr("flow profile", err)
	}
	if pr.Series, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowPoint, error) {
		var p FlowPoint
		err := r.Scan(&p.At, &p.Bytes)
		p.At = p.At.UTC()
		return p, err
	}); err != nil {
		return pr, mapErr("flow profile", err)
	}
	rows, err = s.pool.Query(ctx, flowProfileNew, within, weekStart, limit)
	if err != nil {
		return pr, mapErr("flow profile", err)
	}
	if pr.NewDestinations, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowNewDestination, error) {
		var d FlowNewDestination
		var remote netip.Prefix
		err := r.Scan(&remote, &d.Country, &d.Org, &d.FirstSeen, &d.Bytes)
		d.Remote, d.FirstSeen = remote.Addr(), d.FirstSeen.UTC()
		return d, err
	}); err != nil {
		return pr, mapErr("flow profile", err)
	}
	return pr, nil
}

// FlowTopTalkers returns the inside hosts with the most bytes in the 1-hour
// aggregates since since, at most limit.
func (s *Store) FlowTopTalkers(ctx context.Context, since time.Time, limit int) ([]FlowCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT host(host), flow_sat(sum(bytes)), flow_sat(sum(packets)), flow_sat(sum(flows)) FROM flow_agg_1h
		WHERE bucket >= $1 GROUP BY host ORDER BY 2 DESC, 1 LIMIT $2`, since, limit)
	if err != nil {
		return nil, mapErr("flow top talkers", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowCount, error) {
		var c FlowCount
		err := r.Scan(&c.Key, &c.Bytes, &c.Packets, &c.Flows)
		return c, err
	})
	if err != nil {
		return nil, mapErr("flow top talkers", err)
	}
	return out, nil
}

// FlowRemote is the stored detail of an outside address seen in flows
// through one exporter.
type FlowRemote = FlowRemoteSeen

// FlowRemotes returns what every exporter saw of the outside address addr.
func (s *Store) FlowRemotes(ctx context.Context, addr netip.Addr) ([]FlowRemote, error) {
	rows, err := s.pool.Query(ctx, `SELECT address, exporter, first_seen, last_seen, bytes, packets, flows, peers, ports
		FROM flow_remotes WHERE address = $1 ORDER BY exporter`, addr.Unmap())
	if err != nil {
		return nil, mapErr("flow remotes", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FlowRemote, error) {
		var f FlowRemote
		var a netip.Prefix
		var b, p, fl int64
		var peers []netip.Prefix
		err := r.Scan(&a, &f.Exporter, &f.FirstSeen, &f.LastSeen, &b, &p, &fl, &peers, &f.Ports)
		f.Address, f.Bytes, f.Packets, f.Flows = a.Addr(), uint64(b), uint64(p), uint64(fl)
		f.FirstSeen, f.LastSeen = f.FirstSeen.UTC(), f.LastSeen.UTC()
		for _, q := range peers {
			f.Peers = append(f.Peers, q.Addr())
		}
		return f, err
	})
	if err != nil {
		return nil, mapErr("flow remotes", err)
	}
	return out, nil
}

// FlowPeer is an outside address an inside host exchanged traffic with: the
// bytes since the query's start and the last hour bucket with traffic.
type FlowPeer struct {
	Host     netip.Addr
	Remote   netip.Addr
	Bytes    int64
	LastHour time.Time
}

// FlowPeersEach calls fn with the (host, outside address) pairs of the
// inside hosts within p (every host when p is the zero Prefix) with traffic
// in the 1-hour aggregates since since, most recent first (then by host and
// address), until fn returns false or an error. It carries no rule: what an
// address is comes from the index (flow.Profile asks it for every pair).
func (s *Store) FlowPeersEach(ctx context.Context, within netip.Prefix, since time.Time, fn func(FlowPeer) (bool, error)) error {
	var w any
	if within.IsValid() {
		w = within
	}
	rows, err := s.pool.Query(ctx, `SELECT host, remote, flow_sat(sum(bytes)), max(bucket) FROM flow_agg_1h
		WHERE ($1::cidr IS NULL OR host <<= $1) AND bucket >= $2
		GROUP BY host, remote ORDER BY max(bucket) DESC, host, remote`, w, since)
	if err != nil {
		return mapErr("flow peers", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p FlowPeer
		var host, remote netip.Prefix
		if err := rows.Scan(&host, &remote, &p.Bytes, &p.LastHour); err != nil {
			return mapErr("flow peers", err)
		}
		p.Host, p.Remote, p.LastHour = host.Addr(), remote.Addr(), p.LastHour.UTC()
		more, err := fn(p)
		if err != nil || !more {
			return err
		}
	}
	return mapErr("flow peers", rows.Err())
}
