package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muninn/muninn/server/resolve"
)

// Change scopes: what one recorded change touched.
const (
	// ChangePrefixes lists the stored prefixes whose rows changed (added,
	// altered or deleted) in Change.Prefixes.
	ChangePrefixes = "prefixes"
	// ChangeAll means too many prefixes changed to list: reload everything.
	ChangeAll = "all"
	// ChangeGeo means the geo networks were replaced.
	ChangeGeo = "geo"
	// ChangeEnrich lists, in Change.Prefixes, the RDAP networks stored or
	// refreshed and the host prefixes (/32, /128) of the addresses whose
	// hostnames changed (migration 0007): re-read them with EnrichmentOf.
	ChangeEnrich = "enrich"
)

// maxListedChange is the most prefixes one change lists; the database records
// more as ChangeAll (muninn_record_change, migration 0006).
const maxListedChange = 100_000

// ChangePayloadPrefix starts the NOTIFY payload, on ChangeChannel, of every
// recorded change: "change:<seq>".
const ChangePayloadPrefix = "change:"

// ErrChangesPruned is returned (wrapped) by ChangesSince when changes after
// the given sequence have been pruned: the reader must reload in full.
var ErrChangesPruned = errors.New("changes pruned")

// Change is one write transaction's record in the change feed. Sequences are
// monotonic in commit order (see migration 0006): a reader that has seen
// sequence n has seen every change committed before it.
type Change struct {
	Seq      int64
	At       time.Time
	Scope    string
	Prefixes []netip.Prefix
}

// ParseChangePayload returns the sequence a change notification carries;
// false for other notifications on ChangeChannel.
func ParseChangePayload(payload string) (int64, bool) {
	rest, ok := strings.CutPrefix(payload, ChangePayloadPrefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseInt(rest, 10, 64)
	return seq, err == nil
}

// recordChange records a change in tx and announces it; it must be the last
// statement of the transaction (it takes the change feed's lock).
func recordChange(ctx context.Context, tx pgx.Tx, scope string, prefixes []netip.Prefix) error {
	if prefixes == nil {
		prefixes = []netip.Prefix{}
	}
	if _, err := tx.Exec(ctx, `SELECT muninn_record_change($1, $2::cidr[])`, scope, prefixes); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}

// recordChangeOf records the prefixes a query in tx returns as one array.
func recordChangeOf(ctx context.Context, tx pgx.Tx, prefixesSQL string, args ...any) error {
	if _, err := tx.Exec(ctx, `SELECT muninn_record_change('prefixes', coalesce((`+prefixesSQL+`), '{}'))`, args...); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}

// ChangesSince returns the changes after seq in sequence order, at most
// limit. It returns ErrChangesPruned when some of them have been pruned.
func (s *Store) ChangesSince(ctx context.Context, seq int64, limit int) ([]Change, error) {
	var out []Change
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var horizon int64
		if err := tx.QueryRow(ctx, `SELECT pruned_through FROM change_horizon`).Scan(&horizon); err != nil {
			return err
		}
		if seq < horizon {
			return fmt.Errorf("store: changes since %d: %w through %d", seq, ErrChangesPruned, horizon)
		}
		rows, err := tx.Query(ctx, `SELECT seq, at, scope, prefixes FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, seq, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Change])
		return err
	})
	if errors.Is(err, ErrChangesPruned) {
		return nil, err
	}
	if err != nil {
		return nil, mapErr("changes since", err)
	}
	return out, nil
}

// currentSeq is the newest recorded sequence visible to tx (0 before the first).
const currentSeq = `SELECT greatest((SELECT max(seq) FROM changes), (SELECT pruned_through FROM change_horizon))`

// ChangeSeq returns the newest recorded change sequence (0 before the first).
func (s *Store) ChangeSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, currentSeq).Scan(&seq)
	return seq, mapErr("change seq", err)
}

// loadPrefixesSQL streams stored prefixes with their live assertions, one row
// per assertion (or one per prefix without any), grouped by prefix. The merge
// join walks prefixes by id and assertions by their key (prefix_id first), so
// the rows arrive grouped without sorting millions of rows.
const loadPrefixesSQL = `
	SELECT p.prefix, p.first_seen, p.last_seen, p.sightings,
	       a.kind, a.source, a.value, a.first_seen, a.last_seen, a.expires_at
	FROM prefixes p
	LEFT JOIN assertions a ON a.prefix_id = p.id AND (a.expires_at IS NULL OR a.expires_at > $1)
	ORDER BY p.id`

// loadSomePrefixesSQL is loadPrefixesSQL for a set of prefixes: a probe of
// prefixes' unique index per prefix and of assertions' key per prefix found
// (the LATERAL with OFFSET 0 keeps the plan a nested loop whatever the
// statistics say), so applying one change costs two index probes, not a
// scan of every assertion.
const loadSomePrefixesSQL = `
	SELECT p.prefix, p.first_seen, p.last_seen, p.sightings,
	       a.kind, a.source, a.value, a.first_seen, a.last_seen, a.expires_at
	FROM prefixes p
	LEFT JOIN LATERAL (
	  SELECT a.kind, a.source, a.value, a.first_seen, a.last_seen, a.expires_at FROM assertions a
	  WHERE a.prefix_id = p.id AND (a.expires_at IS NULL OR a.expires_at > $1) OFFSET 0) a ON true
	WHERE p.prefix = ANY ($2::cidr[])
	ORDER BY p.id`

// LoadAll reads, in one consistent snapshot, every stored prefix with its
// assertions live at now (calling prefix once per stored prefix, in no
// particular order) and every geo network (calling geo once each), and returns
// the change sequence the snapshot includes: applying the changes after it
// brings the result up to date. The Prefix given to prefix, its Assertions
// slice included, is reused after the call returns. An error from a callback
// stops the load and is returned.
func (s *Store) LoadAll(ctx context.Context, now time.Time, prefix func(resolve.Prefix) error, geo func(GeoNetwork) error) (int64, error) {
	var seq int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := unbounded(ctx, tx); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, currentSeq).Scan(&seq); err != nil {
			return fmt.Errorf("current seq: %w", err)
		}
		if err := loadPrefixes(ctx, tx, now, nil, prefix); err != nil {
			return err
		}
		return geoNetworks(ctx, tx, geo)
	})
	if err != nil {
		return 0, mapErr("load all", err)
	}
	return seq, nil
}

// LoadPrefixes reads the stored prefixes among ps with their assertions live
// at now, like LoadAll. Prefixes of ps that are not stored are not reported.
func (s *Store) LoadPrefixes(ctx context.Context, now time.Time, ps []netip.Prefix, prefix func(resolve.Prefix) error) error {
	if len(ps) == 0 {
		return nil
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return loadPrefixes(ctx, tx, now, ps, prefix)
	})
	return mapErr("load prefixes", err)
}

// GeoNetworks calls fn for every geo network, in no particular order.
func (s *Store) GeoNetworks(ctx context.Context, fn func(GeoNetwork) error) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := unbounded(ctx, tx); err != nil {
			return err
		}
		return geoNetworks(ctx, tx, fn)
	})
	return mapErr("geo networks", err)
}

func loadPrefixes(ctx context.Context, tx pgx.Tx, now time.Time, ps []netip.Prefix, fn func(resolve.Prefix) error) error {
	query, args := loadSomePrefixesSQL, []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}, now, ps}
	if ps == nil {
		// A merge join over both primary orders; hash joins would build a
		// table of every assertion first.
		if _, err := tx.Exec(ctx, `SET LOCAL enable_hashjoin = off`); err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		query, args = loadPrefixesSQL, args[:2]
	}
	// Millions of rows: the binary columns are decoded here, without pgx's
	// per-value scan plans, and the few distinct kinds, sources and values
	// are allocated once each.
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query prefixes: %w", err)
	}
	defer rows.Close()
	var (
		cur     resolve.Prefix
		started bool
		strs    = map[string]string{}
	)
	intern := func(b []byte) string {
		if s, ok := strs[string(b)]; ok {
			return s
		}
		s := string(b)
		if len(strs) < 1<<16 {
			strs[s] = s
		}
		return s
	}
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != 10 {
			return fmt.Errorf("read prefixes: %d columns", len(raw))
		}
		p, err := decodeCIDR(raw[0])
		if err != nil {
			return fmt.Errorf("read prefixes: %w", err)
		}
		if !started || p != cur.Prefix {
			if started {
				if err := fn(cur); err != nil {
					return err
				}
			}
			started = true
			cur.Prefix, cur.FirstSeen, cur.LastSeen = p, decodeTime(raw[1]), decodeTime(raw[2])
			cur.Sightings = decodeInt8(raw[3])
			cur.Assertions = cur.Assertions[:0]
		}
		if raw[4] == nil {
			continue
		}
		a := resolve.Assertion{Kind: intern(raw[4]), Source: intern(raw[5]), Value: intern(raw[6]),
			FirstSeen: decodeTime(raw[7]), LastSeen: decodeTime(raw[8])}
		if raw[9] != nil {
			e := decodeTime(raw[9])
			a.ExpiresAt = &e
		}
		cur.Assertions = append(cur.Assertions, a)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read prefixes: %w", err)
	}
	if started {
		return fn(cur)
	}
	return nil
}

// decodeCIDR decodes PostgreSQL's binary cidr: family (2: IPv4, 3: IPv6),
// bits, is_cidr, address length, address.
func decodeCIDR(b []byte) (netip.Prefix, error) {
	if len(b) < 4 || len(b) != 4+int(b[3]) {
		return netip.Prefix{}, fmt.Errorf("bad cidr of %d bytes", len(b))
	}
	a, ok := netip.AddrFromSlice(b[4:])
	if !ok {
		return netip.Prefix{}, fmt.Errorf("bad cidr address of %d bytes", len(b)-4)
	}
	return netip.PrefixFrom(a, int(b[1])), nil
}

// pgEpoch is PostgreSQL's binary timestamp origin, in Unix microseconds.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// decodeTime decodes a binary timestamptz (microseconds since 2000-01-01 UTC).
func decodeTime(b []byte) time.Time {
	return time.UnixMicro(pgEpoch + decodeInt8(b)).UTC()
}

func decodeInt8(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func geoNetworks(ctx context.Context, tx pgx.Tx, fn func(GeoNetwork) error) error {
	rows, err := tx.Query(ctx, `SELECT network, country, continent, city, asn, as_org, source FROM geo_networks`)
	if err != nil {
		return fmt.Errorf("query geo networks: %w", err)
	}
	var g GeoNetwork
	_, err = pgx.ForEachRow(rows, []any{&g.Network, &g.Country, &g.Continent, &g.City, &g.ASN, &g.ASOrg, &g.Source}, func() error { return fn(g) })
	if err != nil {
		return fmt.Errorf("read geo networks: %w", err)
	}
	return nil
}

// PrefixChain reads, without the index, what the resolver needs to answer
// about one prefix (an address as a host prefix): the stored prefixes
// containing target (IPv4-mapped as IPv4) with their assertions live at
// now, in no particular order, and the most specific geo network containing
// it (nil when none). A process without an index (muninn worker) hands them
// to the resolver (resolve.Effective), which applies the one set of rules.
func (s *Store) PrefixChain(ctx context.Context, now time.Time, target netip.Prefix) ([]resolve.Prefix, *GeoNetwork, error) {
	addr, bits := target.Addr(), target.Bits()
	if addr.Is4In6() {
		addr, bits = addr.Unmap(), max(bits-96, 0)
	}
	target = netip.PrefixFrom(addr, bits).Masked()
	ps := make([]netip.Prefix, 0, bits+1)
	for b := 0; b <= bits; b++ {
		ps = append(ps, netip.PrefixFrom(addr, b).Masked())
	}
	var (
		chain []resolve.Prefix
		geo   *GeoNetwork
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		chain = chain[:0]
		if err := loadPrefixes(ctx, tx, now, ps, func(p resolve.Prefix) error {
			p.Assertions = slices.Clone(p.Assertions) // loadPrefixes reuses the slice
			chain = append(chain, p)
			return nil
		}); err != nil {
			return err
		}
		var g GeoNetwork
		err := tx.QueryRow(ctx, `SELECT network, country, continent, city, asn, as_org, source FROM geo_networks
			WHERE network >>= $1 ORDER BY masklen(network) DESC LIMIT 1`, target).
			Scan(&g.Network, &g.Country, &g.Continent, &g.City, &g.ASN, &g.ASOrg, &g.Source)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			geo = nil
		case err != nil:
			return fmt.Errorf("geo network: %w", err)
		default:
			geo = &g
		}
		return nil
	})
	if err != nil {
		return nil, nil, mapErr("address chain", err)
	}
	return chain, geo, nil
}
