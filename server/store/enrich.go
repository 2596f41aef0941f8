package store

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// GeoNetwork is one network of the geo databases with its country and ASN.
type GeoNetwork struct {
	Network   netip.Prefix
	Country   string
	Continent string
	City      string
	ASN       int64
	ASOrg     string
	// Source names the database the network came from; the readers fill
	// it, ReplaceGeoNetworks takes it as its argument instead.
	Source string
}

// ReplaceGeoNetworks replaces the whole of geo_networks with nets in one
// transaction: the rows are COPYed into a temp table, then the old rows are
// deleted and the new ones inserted. Readers see the old set until commit and
// never block (DELETE, not TRUNCATE, which would lock them out). It returns
// the number of networks stored and announces the change, since ruleset
// conditions on country, continent, asn and org read this table.
func (s *Store) ReplaceGeoNetworks(ctx context.Context, source string, nets iter.Seq2[GeoNetwork, error]) (int64, error) {
	var n int64
	err := s.inTx(ctx, "replace geo networks", func(tx pgx.Tx) error {
		if err := unbounded(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE geo_batch (network cidr NOT NULL, country text NOT NULL,
			continent text NOT NULL, city text NOT NULL, asn bigint NOT NULL, as_org text NOT NULL) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("create batch table: %w", err)
		}
		next, stop := iter.Pull2(nets)
		defer stop()
		src := pgx.CopyFromFunc(func() ([]any, error) {
			g, err, ok := next()
			if !ok {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return []any{g.Network, g.Country, g.Continent, g.City, g.ASN, g.ASOrg}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"geo_batch"},
			[]string{"network", "country", "continent", "city", "asn", "as_org"}, src); err != nil {
			return fmt.Errorf("copy batch: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM geo_networks`); err != nil {
			return fmt.Errorf("delete old networks: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO geo_networks (network, country, continent, city, asn, as_org, source)
			SELECT DISTINCT ON (network) network, country, continent, city, asn, as_org, $1 FROM geo_batch ORDER BY network`, source)
		if err != nil {
			return fmt.Errorf("insert networks: %w", err)
		}
		n = tag.RowsAffected()
		return recordChange(ctx, tx, ChangeGeo, nil)
	})
	return n, err
}

// RDAPNetwork is what a registry said about one network.
type RDAPNetwork struct {
	Network    netip.Prefix
	Handle     string
	Name       string
	Org        string
	Country    string
	AbuseEmail string
	Registry   string
	Raw        json.RawMessage
	FetchedAt  time.Time
}

// PutRDAPNetwork stores (or refreshes) one network's registry answer and
// records it in the change feed (ChangeEnrich).
func (s *Store) PutRDAPNetwork(ctx context.Context, n RDAPNetwork) error {
	var raw any
	if len(n.Raw) > 0 && json.Valid(n.Raw) {
		raw = []byte(n.Raw)
	}
	return s.inTx(ctx, "put rdap network", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO rdap_networks (network, handle, name, org, country, abuse_email, registry, raw, fetched_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (network) DO UPDATE SET handle = excluded.handle, name = excluded.name, org = excluded.org,
			  country = excluded.country, abuse_email = excluded.abuse_email, registry = excluded.registry,
			  raw = excluded.raw, fetched_at = excluded.fetched_at`,
			n.Network, n.Handle, n.Name, n.Org, n.Country, n.AbuseEmail, n.Registry, raw, n.FetchedAt); err != nil {
			return err
		}
		return recordChange(ctx, tx, ChangeEnrich, []netip.Prefix{n.Network.Masked()})
	})
}

// RDAPCovers reports whether a stored RDAP network contains addr.
func (s *Store) RDAPCovers(ctx context.Context, addr netip.Addr) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rdap_networks WHERE network >>= $1::inet)`, addr).Scan(&ok)
	return ok, mapErr("rdap covers", err)
}

// Enrichment lookup kinds, as kept in enrich_attempts.
const (
	EnrichRDAP = "rdap"
	EnrichPTR  = "ptr"
)

// Both scans walk host prefixes newest first, so fresh sightings are
// enriched before the backlog; an address tried since retryAfter is skipped.
const (
	lackingRDAP = `SELECT host(p.prefix)::inet FROM prefixes p
		WHERE masklen(p.prefix) = CASE family(p.prefix) WHEN 4 THEN 32 ELSE 128 END
		  AND NOT EXISTS (SELECT 1 FROM rdap_networks r WHERE r.network >>= p.prefix)
		  AND NOT EXISTS (SELECT 1 FROM enrich_attempts e WHERE e.address = p.prefix AND e.kind = 'rdap' AND e.attempted_at > $1)
		ORDER BY p.id DESC LIMIT $2`
	lackingPTR = `SELECT host(p.prefix)::inet FROM prefixes p
		WHERE masklen(p.prefix) = CASE family(p.prefix) WHEN 4 THEN 32 ELSE 128 END
		  AND NOT EXISTS (SELECT 1 FROM hostnames h WHERE h.address = p.prefix AND h.source = 'ptr')
		  AND NOT EXISTS (SELECT 1 FROM enrich_attempts e WHERE e.address = p.prefix AND e.kind = 'ptr' AND e.attempted_at > $1)
		ORDER BY p.id DESC LIMIT $2`
)

// AddrsLacking returns up to limit stored single addresses that have no
// enrichment of kind (EnrichRDAP: no RDAP network contains them; EnrichPTR:
// no PTR names) and were not tried after triedBefore.
func (s *Store) AddrsLacking(ctx context.Context, kind string, triedBefore time.Time, limit int) ([]netip.Addr, error) {
	q := lackingRDAP
	if kind == EnrichPTR {
		q = lackingPTR
	}
	rows, _ := s.pool.Query(ctx, q, triedBefore, limit)
	addrs, err := pgx.CollectRows(rows, pgx.RowTo[netip.Addr])
	if err != nil {
		return nil, mapErr("addresses lacking "+kind, err)
	}
	return addrs, nil
}

// Enrichment outcomes, as kept in enrich_attempts.outcome.
const (
	// EnrichOK is an answer (for RDAP, possibly a stored network that covers
	// the address).
	EnrichOK = "ok"
	// EnrichNotFound is "no registration" or "no PTR record".
	EnrichNotFound = "not_found"
	// EnrichError is a failed lookup, retried after the retry period.
	EnrichError = "error"
	// EnrichSkipped is an address not looked up on purpose (special-use).
	EnrichSkipped = "skipped"
)

// EnrichAttempt is the last lookup of one kind for one address.
type EnrichAttempt struct {
	Kind        string // EnrichRDAP or EnrichPTR
	AttemptedAt time.Time
	Outcome     string // EnrichOK, EnrichNotFound, EnrichError or EnrichSkipped
	// Error is the error text, or why the lookup was skipped; "" for ok.
	Error string
}

// RecordEnrichAttempt notes that a lookup of kind for addr ran at `at` with
// the given outcome (EnrichOK etc.); errText says why it failed or was
// skipped. It records the address's host prefix in the change feed
// (ChangeEnrich): the index serves the status with the address's view.
func (s *Store) RecordEnrichAttempt(ctx context.Context, kind string, addr netip.Addr, at time.Time, outcome, errText string) error {
	addr = addr.Unmap()
	return s.inTx(ctx, "record enrich attempt", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO enrich_attempts (address, kind, attempted_at, outcome, error) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (address, kind) DO UPDATE SET attempted_at = excluded.attempted_at, outcome = excluded.outcome, error = excluded.error`,
			addr, kind, at, outcome, errText); err != nil {
			return err
		}
		return recordChange(ctx, tx, ChangeEnrich, []netip.Prefix{netip.PrefixFrom(addr, addr.BitLen())})
	})
}

// EnrichAttempts returns the last attempt of each kind for addr, rdap before
// ptr; none when nothing was tried.
func (s *Store) EnrichAttempts(ctx context.Context, addr netip.Addr) ([]EnrichAttempt, error) {
	rows, _ := s.pool.Query(ctx, `SELECT kind, attempted_at, outcome, error FROM enrich_attempts
		WHERE address = $1 ORDER BY kind DESC`, addr.Unmap())
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EnrichAttempt, error) {
		var a EnrichAttempt
		err := r.Scan(&a.Kind, &a.AttemptedAt, &a.Outcome, &a.Error)
		a.AttemptedAt = a.AttemptedAt.UTC()
		return a, err
	})
	if err != nil {
		return nil, mapErr("enrich attempts", err)
	}
	return out, nil
}

// PutHostnames stores names of addr learned from source (e.g. "ptr") at `at`
// and records the address's host prefix in the change feed (ChangeEnrich).
func (s *Store) PutHostnames(ctx context.Context, addr netip.Addr, source string, names []string, at time.Time) error {
	if len(names) == 0 {
		return nil
	}
	addr = addr.Unmap()
	return s.inTx(ctx, "put hostnames", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO hostnames (address, name, source, first_seen, last_seen)
			SELECT $1, n, $2, $3, $3 FROM unnest($4::text[]) n ORDER BY n
			ON CONFLICT (address, name, source) DO UPDATE SET last_seen = excluded.last_seen`, addr, source, at, names); err != nil {
			return err
		}
		return recordChange(ctx, tx, ChangeEnrich, []netip.Prefix{netip.PrefixFrom(addr, addr.BitLen())})
	})
}

// JobCount is how many jobs of a kind are in a state.
type JobCount struct {
	Kind  string
	State string
	Count int64
}

// JobFailure is a job whose latest attempt failed.
type JobFailure struct {
	ID      int64
	Kind    string
	State   string
	Attempt int
	Error   string
	At      time.Time
	Args    json.RawMessage
}

// JobSummary is the queue at a glance.
type JobSummary struct {
	Counts   []JobCount
	Failures []JobFailure
}

// JobSummary counts River's jobs by kind and state and lists the newest
// failures (at most failures of them; 0 lists none).
func (s *Store) JobSummary(ctx context.Context, failures int) (JobSummary, error) {
	var sum JobSummary
	rows, _ := s.pool.Query(ctx, `SELECT kind, state::text, count(*) FROM river_job GROUP BY 1, 2 ORDER BY 1, 2`)
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[JobCount])
	if err != nil {
		return sum, mapErr("job counts", err)
	}
	sum.Counts = counts
	if failures <= 0 {
		return sum, nil
	}
	rows, _ = s.pool.Query(ctx, `SELECT id, kind, state::text, attempt,
		  coalesce(errors[cardinality(errors)]->>'error', ''),
		  coalesce((errors[cardinality(errors)]->>'at')::timestamptz, attempted_at, created_at), args
		FROM river_job WHERE cardinality(errors) > 0 ORDER BY id DESC LIMIT $1`, failures)
	fs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[JobFailure])
	if err != nil {
		return sum, mapErr("job failures", err)
	}
	sum.Failures = fs
	return sum, nil
}

// EnrichmentReader receives what Enrichments and EnrichmentOf read: RDAP
// networks, each address's hostnames (newest first, then by name), each
// address's last lookup attempts (EnrichAttempts' order) and each address's
// passive DNS names (newest first, then by name; at most MaxPassiveDNS).
type EnrichmentReader struct {
	RDAP       func(RDAPFacts) error
	Host       func(netip.Addr, []Hostname) error
	Attempts   func(netip.Addr, []EnrichAttempt) error
	PassiveDNS func(netip.Addr, []PassiveDNS) error
}

// Enrichments calls er with every stored RDAP network, every address's
// hostnames and every address's lookup attempts, in no particular order of
// networks or addresses. Callers that follow the change feed call it after
// LoadAll: every enrichment change after LoadAll's sequence is then re-read
// with EnrichmentOf, which converges.
func (s *Store) Enrichments(ctx context.Context, er EnrichmentReader) error {
	return s.enrichments(ctx, nil, er)
}

// EnrichmentOf is Enrichments restricted to the prefixes of ChangeEnrich
// changes: the RDAP networks equal to one of ps, and the hostnames and
// attempts of the addresses whose host prefix is one of ps. An address in ps
// without names (attempts) is reported with none, so the caller can forget
// them; an RDAP network in ps that is not stored is not reported.
func (s *Store) EnrichmentOf(ctx context.Context, ps []netip.Prefix, er EnrichmentReader) error {
	if len(ps) == 0 {
		return nil
	}
	return s.enrichments(ctx, ps, er)
}

func (s *Store) enrichments(ctx context.Context, ps []netip.Prefix, er EnrichmentReader) error {
	rdap, host := er.RDAP, er.Host
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := unbounded(ctx, tx); err != nil {
			return err
		}
		rq, hq := `SELECT network, handle, name, org, country, abuse_email, registry, fetched_at FROM rdap_networks WHERE $1::cidr[] IS NULL OR network = ANY ($1)`,
			`SELECT address, name, source, last_seen FROM hostnames WHERE $1::inet[] IS NULL OR address = ANY ($1) ORDER BY address, last_seen DESC, name`
		var arg, addrs any
		var seen map[netip.Addr]bool
		if ps != nil {
			seen = map[netip.Addr]bool{}
			arg = ps
			as := make([]netip.Addr, 0, len(ps))
			for _, p := range ps {
				if p.IsSingleIP() {
					as = append(as, p.Addr())
				}
			}
			addrs = as
		}
		rows, err := tx.Query(ctx, rq, arg)
		if err != nil {
			return fmt.Errorf("query rdap networks: %w", err)
		}
		var r RDAPFacts
		if _, err := pgx.ForEachRow(rows, []any{&r.Network, &r.Handle, &r.Name, &r.Org, &r.Country, &r.AbuseEmail, &r.Registry, &r.FetchedAt},
			func() error { r.FetchedAt = r.FetchedAt.UTC(); return rdap(r) }); err != nil {
			return fmt.Errorf("read rdap networks: %w", err)
		}
		rows, err = tx.Query(ctx, hq, addrs)
		if err != nil {
			return fmt.Errorf("query hostnames: %w", err)
		}
		var (
			a     netip.Addr
			h     Hostname
			cur   netip.Addr
			names []Hostname
		)
		if _, err := pgx.ForEachRow(rows, []any{&a, &h.Name, &h.Source, &h.LastSeen}, func() error {
			if a != cur && cur.IsValid() {
				if err := host(cur, names); err != nil {
					return err
				}
				names = nil
			}
			cur = a
			h.LastSeen = h.LastSeen.UTC()
			if seen != nil {
				seen[a] = true
			}
			names = append(names, h)
			return nil
		}); err != nil {
			return fmt.Errorf("read hostnames: %w", err)
		}
		if cur.IsValid() {
			if err := host(cur, names); err != nil {
				return err
			}
		}
		if ps != nil {
			for _, a := range addrs.([]netip.Addr) {
				if !seen[a] {
					if err := host(a, nil); err != nil {
						return err
					}
				}
			}
		}
		if err := readAttempts(ctx, tx, addrs, er.Attempts); err != nil {
			return err
		}
		return readPassiveDNS(ctx, tx, addrs, er.PassiveDNS)
	})
	return mapErr("enrichments", err)
}

// readAttempts calls fn with the attempts of each address of addrs (every
// address when nil), an address of addrs without any with none.
func readAttempts(ctx context.Context, tx pgx.Tx, addrs any, fn func(netip.Addr, []EnrichAttempt) error) error {
	rows, err := tx.Query(ctx, `SELECT address, kind, attempted_at, outcome, error FROM enrich_attempts
		WHERE $1::inet[] IS NULL OR address = ANY ($1) ORDER BY address, kind DESC`, addrs)
	if err != nil {
		return fmt.Errorf("query enrich attempts: %w", err)
	}
	var (
		a, cur netip.Addr
		at     EnrichAttempt
		list   []EnrichAttempt
	)
	seen := map[netip.Addr]bool{}
	if _, err := pgx.ForEachRow(rows, []any{&a, &at.Kind, &at.AttemptedAt, &at.Outcome, &at.Error}, func() error {
		if a != cur && cur.IsValid() {
			if err := fn(cur, list); err != nil {
				return err
			}
			list = nil
		}
		cur = a
		at.AttemptedAt = at.AttemptedAt.UTC()
		if addrs != nil {
			seen[a] = true
		}
		list = append(list, at)
		return nil
	}); err != nil {
		return fmt.Errorf("read enrich attempts: %w", err)
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
