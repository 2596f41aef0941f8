package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// SensorEvent is one parsed log event (migration 0022): Addr did Kind on
// Host at At, as Line of Format says. Private marks an address that is
// counted but, unless a detection includes private addresses, never tagged
// (private, loopback, the host's own). A DNS answer carries DNS and is kept
// as passive DNS, not as a sighting.
type SensorEvent struct {
	Addr    netip.Addr
	Kind    string
	Host    string
	Format  string
	At      time.Time
	Line    string
	Private bool
	DNS     *PassiveDNS
}

// PassiveDNS is one name an address answered for: when first and last seen,
// the latest client that asked (invalid when unknown) and how often.
type PassiveDNS struct {
	Name      string
	Client    netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
	Seen      int64
}

// Detection is a rule (migration 0022): Threshold events of Kinds from one
// address within Window, or one event of InstantKinds, tag the address with
// Tag (source "sensor:<Name>") for TTL × n², at most MaxTTL, where n counts
// the firings since the address was last quiet for Quiet.
type Detection struct {
	Name           string
	Kinds          []string
	InstantKinds   []string
	Threshold      int
	Window         time.Duration
	Tag            string
	TTL            time.Duration
	MaxTTL         time.Duration
	Quiet          time.Duration
	IncludePrivate bool
	Enabled        bool
}

// Firing is one detection that fired for an address: its n-th firing since
// the last quiet period, with the tag's TTL.
type Firing struct {
	Detection string
	Addr      netip.Addr
	Tag       string
	Fires     int
	TTL       time.Duration
	ExpiresAt time.Time
}

// EscalatedTTL is a repeat offender's TTL: base × n², at most max (the
// ipt_geofence rule; n ≥ 1).
func EscalatedTTL(base, max time.Duration, n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 1<<15 {
		return max
	}
	d := base * time.Duration(n*n)
	if d > max || d/time.Duration(n*n) != base {
		return max
	}
	return d
}

const detectionCols = `name, kinds, instant_kinds, threshold, extract(epoch FROM win)::bigint, tag,
	extract(epoch FROM ttl)::bigint, extract(epoch FROM max_ttl)::bigint, extract(epoch FROM quiet)::bigint, include_private, enabled`

func scanDetection(r pgx.CollectableRow) (Detection, error) {
	var d Detection
	var win, ttl, maxTTL, quiet int64
	err := r.Scan(&d.Name, &d.Kinds, &d.InstantKinds, &d.Threshold, &win, &d.Tag, &ttl, &maxTTL, &quiet, &d.IncludePrivate, &d.Enabled)
	d.Window, d.TTL, d.MaxTTL, d.Quiet = time.Duration(win)*time.Second, time.Duration(ttl)*time.Second,
		time.Duration(maxTTL)*time.Second, time.Duration(quiet)*time.Second
	return d, err
}

// Detections returns every detection rule by name.
func (s *Store) Detections(ctx context.Context) ([]Detection, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+detectionCols+` FROM detections ORDER BY name`)
	if err != nil {
		return nil, mapErr("list detections", err)
	}
	ds, err := pgx.CollectRows(rows, scanDetection)
	return ds, mapErr("list detections", err)
}

// Detection returns the rule name (ErrNotFound when there is none).
func (s *Store) Detection(ctx context.Context, name string) (Detection, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+detectionCols+` FROM detections WHERE name = $1`, name)
	if err != nil {
		return Detection{}, mapErr("detection", err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDetection)
	return d, mapErr("detection", err)
}

// PutDetection creates or replaces the rule d.Name.
func (s *Store) PutDetection(ctx context.Context, d Detection) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO detections (name, kinds, instant_kinds, threshold, win, tag, ttl, max_ttl, quiet, include_private, enabled)
		VALUES ($1, $2, $3, $4, make_interval(secs => $5), $6, make_interval(secs => $7), make_interval(secs => $8), make_interval(secs => $9), $10, $11)
		ON CONFLICT (name) DO UPDATE SET kinds = excluded.kinds, instant_kinds = excluded.instant_kinds, threshold = excluded.threshold,
		  win = excluded.win, tag = excluded.tag, ttl = excluded.ttl, max_ttl = excluded.max_ttl, quiet = excluded.quiet,
		  include_private = excluded.include_private, enabled = excluded.enabled`,
		d.Name, nonNil(d.Kinds), nonNil(d.InstantKinds), d.Threshold, d.Window.Seconds(), d.Tag, d.TTL.Seconds(), d.MaxTTL.Seconds(), d.Quiet.Seconds(),
		d.IncludePrivate, d.Enabled)
	return mapErr("put detection", err)
}

// DeleteDetection deletes the rule name (ErrNotFound when there is none).
func (s *Store) DeleteDetection(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM detections WHERE name = $1`, name)
	if err != nil {
		return mapErr("delete detection", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: delete detection: %w", ErrNotFound)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

var sensorEventCols = []string{"addr", "kind", "host", "format", "at", "line", "n"}

// SensorEventGrain is the time grain of stored events: the events of one
// address, kind, host and format whose times fall in one grain (whole
// seconds since the epoch) in one stored batch are one sensor_events row
// holding their count and the newest event's time and line. So a detection's
// window is exact to within one grain.
const SensorEventGrain = time.Second

// foldedEvent is one sensor_events row: the newest of n events.
type foldedEvent struct {
	SensorEvent
	n int
}

// foldSensorEvents folds lines by address, kind, host, format and grain, in
// the order each row's first event came; of events at the same time the
// later one's line is kept.
func foldSensorEvents(lines []SensorEvent) []foldedEvent {
	type key struct {
		addr               netip.Addr
		kind, host, format string
		grain              int64
	}
	at := make(map[key]int, len(lines))
	out := make([]foldedEvent, 0, len(lines))
	for _, e := range lines {
		k := key{e.Addr, e.Kind, e.Host, e.Format, e.At.Truncate(SensorEventGrain).UnixNano()}
		i, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, foldedEvent{SensorEvent: e, n: 1})
			continue
		}
		f := &out[i]
		f.n++
		if !e.At.Before(f.At) {
			f.At, f.Line = e.At, e.Line
		}
	}
	return out
}

// StoreSensorEvents stores a batch of parsed events made through actor: each
// event that is not a DNS answer is a sighting of its address with source
// "log:<host>" (through Ingest) and counts in a sensor_events row (one per
// address, kind, host, format and SensorEventGrain); DNS answers update
// passive DNS. Then the enabled detections count, in the database, the
// events of the batch's addresses (so several serve processes count
// together) and fire: a firing tags the address, stores the repeat-offender
// count and a "detection" event, in one transaction. now decides expiries.
func (s *Store) StoreSensorEvents(ctx context.Context, evs []SensorEvent, actor string, now time.Time) ([]Firing, error) {
	var obs []Observation
	var lines, dns []SensorEvent
	for _, e := range evs {
		if e.DNS != nil {
			dns = append(dns, e)
			continue
		}
		lines = append(lines, e)
		obs = append(obs, Observation{Prefix: netip.PrefixFrom(e.Addr, e.Addr.BitLen()), Source: "log:" + e.Host, SeenAt: e.At})
	}
	if err := s.Ingest(ctx, obs, actor); err != nil {
		return nil, err
	}
	if len(lines) > 0 || len(dns) > 0 {
		err := s.inTx(ctx, "store sensor events", func(tx pgx.Tx) error {
			if len(lines) > 0 {
				rows := foldSensorEvents(lines)
				src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
					e := rows[i]
					return []any{e.Addr, e.Kind, e.Host, e.Format, e.At, e.Line, int32(e.n)}, nil
				})
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sensor_events"}, sensorEventCols, src); err != nil {
					return fmt.Errorf("copy events: %w", err)
				}
			}
			if len(dns) > 0 {
				return upsertPassiveDNS(ctx, tx, dns)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(lines) == 0 {
		return nil, nil
	}
	return s.detect(ctx, lines, actor, now)
}

func upsertPassiveDNS(ctx context.Context, tx pgx.Tx, dns []SensorEvent) error {
	// One row per (addr, name) of the batch, sorted, so concurrent batches
	// lock rows in the same order.
	type key struct {
		a netip.Addr
		n string
	}
	agg := map[key]*PassiveDNS{}
	for _, e := range dns {
		k := key{e.Addr, strings.ToLower(e.DNS.Name)}
		p := agg[k]
		if p == nil {
			p = &PassiveDNS{Name: k.n, FirstSeen: e.At, LastSeen: e.At}
			agg[k] = p
		}
		p.Seen++
		p.FirstSeen = minTime(p.FirstSeen, e.At)
		if !e.At.Before(p.LastSeen) {
			p.LastSeen = e.At
			if e.DNS.Client.IsValid() {
				p.Client = e.DNS.Client
			}
		}
	}
	keys := make([]key, 0, len(agg))
	for k := range agg {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := a.a.Compare(b.a); c != 0 {
			return c
		}
		return strings.Compare(a.n, b.n)
	})
	addrs, names, clients, firsts, lasts, seens := []netip.Addr{}, []string{}, []*netip.Addr{}, []time.Time{}, []time.Time{}, []int64{}
	for _, k := range keys {
		p := agg[k]
		addrs, names, firsts, lasts, seens = append(addrs, k.a), append(names, k.n), append(firsts, p.FirstSeen), append(lasts, p.LastSeen), append(seens, p.Seen)
		var c *netip.Addr
		if p.Client.IsValid() {
			cl := p.Client
			c = &cl
		}
		clients = append(clients, c)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO passive_dns (addr, name, client, first_seen, last_seen, seen)
		SELECT * FROM unnest($1::inet[], $2::text[], $3::inet[], $4::timestamptz[], $5::timestamptz[], $6::bigint[])
		ON CONFLICT (addr, name) DO UPDATE SET
		  first_seen = least(passive_dns.first_seen, excluded.first_seen),
		  client = CASE WHEN excluded.last_seen >= passive_dns.last_seen THEN coalesce(excluded.client, passive_dns.client) ELSE passive_dns.client END,
		  last_seen = greatest(passive_dns.last_seen, excluded.last_seen),
		  seen = passive_dns.seen + excluded.seen`, addrs, names, clients, firsts, lasts, seens); err != nil {
		return fmt.Errorf("upsert passive dns: %w", err)
	}
	// Keep the MaxPassiveDNS newest names of each address of the batch
	// (the order the index reads them in), so a name server's churn cannot
	// grow one address without bound.
	hosts := make([]netip.Prefix, 0, len(keys))
	for i, k := range keys {
		if i == 0 || keys[i-1].a != k.a {
			hosts = append(hosts, netip.PrefixFrom(k.a, k.a.BitLen()))
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM passive_dns d USING (
		  SELECT addr, name, row_number() OVER (PARTITION BY addr ORDER BY last_seen DESC, name) AS n
		  FROM passive_dns WHERE addr = ANY ($1::inet[])) r
		WHERE r.n > $2 AND d.addr = r.addr AND d.name = r.name`, hosts, MaxPassiveDNS); err != nil {
		return fmt.Errorf("trim passive dns: %w", err)
	}
	return recordChange(ctx, tx, ChangeEnrich, hosts)
}

// MaxPassiveDNS is how many passive DNS names of one address are kept: the
// most recently seen (then by name).
const MaxPassiveDNS = 20

// readPassiveDNS calls fn with the passive DNS names of each address of
// addrs (every address when nil), newest first then by name; an address of
// addrs without any with none.
func readPassiveDNS(ctx context.Context, tx pgx.Tx, addrs any, fn func(netip.Addr, []PassiveDNS) error) error {
	rows, err := tx.Query(ctx, `SELECT addr, name, client, first_seen, last_seen, seen FROM passive_dns
		WHERE $1::inet[] IS NULL OR addr = ANY ($1) ORDER BY addr, last_seen DESC, name`, addrs)
	if err != nil {
		return fmt.Errorf("query passive dns: %w", err)
	}
	var (
		a, cur netip.Addr
		p      PassiveDNS
		client *netip.Addr
		list   []PassiveDNS
	)
	seen := map[netip.Addr]bool{}
	if _, err := pgx.ForEachRow(rows, []any{&a, &p.Name, &client, &p.FirstSeen, &p.LastSeen, &p.Seen}, func() error {
		if a != cur && cur.IsValid() {
			if err := fn(cur, list); err != nil {
				return err
			}
			list = nil
		}
		cur = a
		seen[a] = true
		q := p
		q.FirstSeen, q.LastSeen, q.Client = q.FirstSeen.UTC(), q.LastSeen.UTC(), netip.Addr{}
		if client != nil {
			q.Client = *client
		}
		list = append(list, q)
		return nil
	}); err != nil {
		return fmt.Errorf("read passive dns: %w", err)
	}
	if cur.IsValid() {
		if err := fn(cur, list); err != nil {
			return err
		}
	}
	if addrs != nil {
		for _, a := range addrs.([]netip.Addr) {
			if !seen[a] {
				if err := fn(a, nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// PrunePassiveDNS deletes the passive DNS names last seen before before (the
// retention of raw sightings) and records their addresses in the change feed;
// it returns how many went.
func (s *Store) PrunePassiveDNS(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	for {
		var gone int64
		err := s.inTx(ctx, "prune passive dns", func(tx pgx.Tx) error {
			var hosts []netip.Prefix
			if err := tx.QueryRow(ctx, `WITH d AS (DELETE FROM passive_dns WHERE ctid = ANY (ARRAY(
				  SELECT ctid FROM passive_dns WHERE last_seen < $1 LIMIT $2)) RETURNING addr)
				SELECT count(*), coalesce(array_agg(DISTINCT set_masklen(addr::cidr, CASE WHEN family(addr) = 4 THEN 32 ELSE 128 END)), '{}') FROM d`,
				before, pruneSensorEventBatch).Scan(&gone, &hosts); err != nil {
				return err
			}
			if len(hosts) == 0 {
				return nil
			}
			return recordChange(ctx, tx, ChangeEnrich, hosts)
		})
		if err != nil {
			return n, err
		}
		n += gone
		if gone < pruneSensorEventBatch {
			return n, nil
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// candidate is an address a detection may fire for: its newest event of the
// detection's kinds in the batch, and whether one was instant.
type candidate struct {
	addr    netip.Addr
	at      time.Time
	instant bool
}

// detect runs the enabled detections over the addresses of lines.
func (s *Store) detect(ctx context.Context, lines []SensorEvent, actor string, now time.Time) ([]Firing, error) {
	ds, err := s.Detections(ctx)
	if err != nil {
		return nil, err
	}
	type job struct {
		d     Detection
		cands []candidate
	}
	var jobs []job
	for _, d := range ds {
		if !d.Enabled {
			continue
		}
		byAddr := map[netip.Addr]*candidate{}
		for _, e := range lines {
			instant := slices.Contains(d.InstantKinds, e.Kind)
			if (!instant && !slices.Contains(d.Kinds, e.Kind)) || (e.Private && !d.IncludePrivate) {
				continue
			}
			c := byAddr[e.Addr]
			if c == nil {
				c = &candidate{addr: e.Addr, at: e.At}
				byAddr[e.Addr] = c
			}
			if e.At.After(c.at) {
				c.at = e.At
			}
			c.instant = c.instant || instant
		}
		if len(byAddr) == 0 {
			continue
		}
		j := job{d: d}
		for _, c := range byAddr {
			j.cands = append(j.cands, *c)
		}
		slices.SortFunc(j.cands, func(a, b candidate) int { return a.addr.Compare(b.addr) })
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	var fired []Firing
	err = s.inTx(ctx, "detect", func(tx pgx.Tx) error {
		fired = fired[:0]
		var obs []Observation
		var evs []Event
		for _, j := range jobs {
			fs, err := detectOne(ctx, tx, j.d, j.cands, now)
			if err != nil {
				return err
			}
			for _, f := range fs {
				exp := f.ExpiresAt
				obs = append(obs, Observation{Prefix: netip.PrefixFrom(f.Addr, f.Addr.BitLen()), Source: "sensor:" + f.Detection,
					Tags: []string{f.Tag}, SeenAt: now, ExpiresAt: &exp, Derived: true})
				evs = append(evs, Event{At: now, Kind: "detection", SubjectType: "address", Subject: f.Addr.String(),
					Details: map[string]any{"detection": f.Detection, "tag": f.Tag, "fires": f.Fires, "ttl_seconds": int64(f.TTL.Seconds()),
						"expires_at": f.ExpiresAt}})
			}
			fired = append(fired, fs...)
		}
		if len(obs) == 0 {
			return nil
		}
		slices.SortFunc(obs, func(a, b Observation) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
		if err := ingestTx(ctx, tx, obs, "sensor"); err != nil {
			return err
		}
		return appendEvents(ctx, tx, evs)
	})
	if err != nil {
		return nil, err
	}
	if len(fired) > 0 {
		// The tags went to the observation log with the events: fold them
		// in now, so a firing is visible when the call returns.
		if err := s.Flush(ctx); err != nil {
			return nil, err
		}
	}
	return fired, nil
}

// detectOne decides the firings of d among cands (sorted by address) in tx:
// it locks each (detection, address) so two processes deciding the same
// pair take turns and the second sees the first's firing. The window reaches
// back from the batch's newest event of the address and has no upper bound:
// each writer counts after its own events committed, so the last of several
// concurrent writers sees them all, whichever holds the newest event.
func detectOne(ctx context.Context, tx pgx.Tx, d Detection, cands []candidate, now time.Time) ([]Firing, error) {
	addrs := make([]netip.Addr, len(cands))
	ats := make([]time.Time, len(cands))
	for i, c := range cands {
		addrs[i], ats[i] = c.addr, c.at
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || a::text, 0))
		FROM unnest($2::inet[]) a ORDER BY a`, d.Name, addrs); err != nil {
		return nil, fmt.Errorf("lock offenders: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT c.addr,
		  (SELECT coalesce(sum(e.n), 0) FROM sensor_events e WHERE e.addr = c.addr AND e.kind = ANY($3) AND e.at > c.at - make_interval(secs => $4)),
		  o.fires, o.last_fired, o.expires_at
		FROM unnest($1::inet[], $2::timestamptz[]) c(addr, at)
		LEFT JOIN detection_offenders o ON o.detection = $5 AND o.addr = c.addr
		ORDER BY c.addr`, addrs, ats, d.Kinds, d.Window.Seconds(), d.Name)
	if err != nil {
		return nil, fmt.Errorf("count events: %w", err)
	}
	type state struct {
		addr      netip.Addr
		count     int64
		fires     *int
		lastFired *time.Time
		expires   *time.Time
	}
	var states []state
	for rows.Next() {
		var st state
		if err := rows.Scan(&st.addr, &st.count, &st.fires, &st.lastFired, &st.expires); err != nil {
			rows.Close()
			return nil, fmt.Errorf("count events: %w", err)
		}
		states = append(states, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count events: %w", err)
	}
	var out []Firing
	for i, st := range states {
		if !cands[i].instant && st.count < int64(d.Threshold) {
			continue
		}
		if st.expires != nil && st.expires.After(now) {
			continue // its tag still lives
		}
		n := 1
		if st.fires != nil && st.lastFired != nil && now.Sub(*st.lastFired) < d.Quiet {
			n = *st.fires + 1
		}
		ttl := EscalatedTTL(d.TTL, d.MaxTTL, n)
		out = append(out, Firing{Detection: d.Name, Addr: st.addr, Tag: d.Tag, Fires: n, TTL: ttl, ExpiresAt: now.Add(ttl)})
	}
	if len(out) == 0 {
		return nil, nil
	}
	// One statement records every offender (in address order, like the locks).
	fAddrs := make([]netip.Addr, len(out))
	fires := make([]int32, len(out))
	expires := make([]time.Time, len(out))
	for i, f := range out {
		fAddrs[i], fires[i], expires[i] = f.Addr, int32(f.Fires), f.ExpiresAt
	}
	if _, err := tx.Exec(ctx, `INSERT INTO detection_offenders (detection, addr, fires, last_fired, expires_at)
		SELECT $1, a, n, $2, e FROM unnest($3::inet[], $4::int[], $5::timestamptz[]) u(a, n, e) ORDER BY a
		ON CONFLICT (addr, detection) DO UPDATE SET fires = excluded.fires, last_fired = excluded.last_fired, expires_at = excluded.expires_at`,
		d.Name, now, fAddrs, fires, expires); err != nil {
		return nil, fmt.Errorf("record offenders: %w", err)
	}
	return out, nil
}

// Offender is what the address page shows of one detection's repeat
// offender: how often it fired, when last, until when the tag lives and the
// TTL of the next firing (NextTTL resets to the base after Quiet).
type Offender struct {
	Detection string
	Fires     int
	LastFired time.Time
	ExpiresAt time.Time
	NextTTL   time.Duration
}

// OffendersOf returns addr's repeat-offender records, by detection.
func (s *Store) OffendersOf(ctx context.Context, addr netip.Addr, now time.Time) ([]Offender, error) {
	rows, err := s.pool.Query(ctx, `SELECT o.detection, o.fires, o.last_fired, o.expires_at,
		  extract(epoch FROM d.ttl)::bigint, extract(epoch FROM d.max_ttl)::bigint, extract(epoch FROM d.quiet)::bigint
		FROM detection_offenders o JOIN detections d ON d.name = o.detection WHERE o.addr = $1 ORDER BY o.detection`, addr)
	if err != nil {
		return nil, mapErr("offenders", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Offender, error) {
		var o Offender
		var ttl, maxTTL, quiet int64
		if err := r.Scan(&o.Detection, &o.Fires, &o.LastFired, &o.ExpiresAt, &ttl, &maxTTL, &quiet); err != nil {
			return o, err
		}
		n := o.Fires + 1
		if now.Sub(o.LastFired) >= time.Duration(quiet)*time.Second {
			n = 1
		}
		o.NextTTL = EscalatedTTL(time.Duration(ttl)*time.Second, time.Duration(maxTTL)*time.Second, n)
		return o, nil
	})
	return out, mapErr("offenders", err)
}

// SensorLine is one stored row of raw events of an address, for its page:
// Count events of one kind from one host within one SensorEventGrain, the
// newest at At with its Line.
type SensorLine struct {
	At     time.Time
	Kind   string
	Host   string
	Format string
	Line   string
	Count  int
}

// SensorLinesOf returns addr's newest stored event rows, at most limit.
func (s *Store) SensorLinesOf(ctx context.Context, addr netip.Addr, limit int) ([]SensorLine, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, kind, host, format, line, n FROM sensor_events WHERE addr = $1 ORDER BY at DESC LIMIT $2`, addr, limit)
	if err != nil {
		return nil, mapErr("sensor lines", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[SensorLine])
	return out, mapErr("sensor lines", err)
}

// pruneSensorEventBatch is how many raw events one prune statement deletes.
const pruneSensorEventBatch = 10_000

// PruneSensorEvents deletes stored raw events older than before, in
// batches; it returns how many went.
func (s *Store) PruneSensorEvents(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM sensor_events WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM sensor_events WHERE at < $1 LIMIT $2))`, before, pruneSensorEventBatch)
		if err != nil {
			return n, mapErr("prune sensor events", err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < pruneSensorEventBatch {
			return n, nil
		}
	}
}
