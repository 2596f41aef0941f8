package store

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Filter selects stored prefixes by their own live assertions.
type Filter struct {
	Tag            string
	Classification string
	// Source matches exactly, or as a prefix when it ends in "*".
	Source    string
	Within    *netip.Prefix
	SeenSince *time.Time
}

// Item is one stored prefix in a search result.
type Item struct {
	ID             int64
	Prefix         netip.Prefix
	Classification string
	Tags           []string
	Sources        []string
	Note           string
	FirstSeen      time.Time
	LastSeen       time.Time
	Sightings      int64
}

// The classification of a prefix on its own: its manual one, else its most
// severe automatic one. Tags hidden by a manual suppress on the same prefix do
// not count. This is the per-prefix projection of server/resolve's rules.
const searchSQL = `
SELECT p.id, p.prefix, p.first_seen, p.last_seen, p.sightings,
       coalesce(cls.value, 'unknown'),
       coalesce(agg.tags, '{}'), coalesce(agg.sources, '{}'), coalesce(agg.note, '')
FROM prefixes p
LEFT JOIN LATERAL (
  SELECT a.value FROM assertions a
  WHERE a.prefix_id = p.id AND a.kind = 'classification' AND (a.expires_at IS NULL OR a.expires_at > $1)
  ORDER BY (a.source LIKE 'manual:%') DESC, muninn_severity(a.value) DESC
  LIMIT 1) cls ON true
LEFT JOIN LATERAL (
  SELECT array_agg(DISTINCT a.value ORDER BY a.value) FILTER (WHERE a.kind = 'tag' AND (a.source LIKE 'manual:%' OR NOT EXISTS (
           SELECT 1 FROM assertions s WHERE s.prefix_id = p.id AND s.kind = 'suppress' AND s.value = a.value
             AND s.source LIKE 'manual:%' AND (s.expires_at IS NULL OR s.expires_at > $1)))) AS tags,
         array_agg(DISTINCT a.source ORDER BY a.source) AS sources,
         (array_agg(a.value ORDER BY (a.source LIKE 'manual:%') DESC, a.last_seen DESC) FILTER (WHERE a.kind = 'note'))[1] AS note
  FROM assertions a
  WHERE a.prefix_id = p.id AND (a.expires_at IS NULL OR a.expires_at > $1)) agg ON true
WHERE p.id > $2
  AND ($3::cidr IS NULL OR p.prefix <<= $3::cidr)
  AND ($4::timestamptz IS NULL OR p.last_seen >= $4)
  AND ($5::text IS NULL OR $5 = ANY (agg.tags))
  AND ($6::text IS NULL OR coalesce(cls.value, 'unknown') = $6)
  AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM assertions a WHERE a.prefix_id = p.id
        AND (a.expires_at IS NULL OR a.expires_at > $1)
        AND CASE WHEN $8 THEN a.source LIKE $7 || '%' ELSE a.source = $7 END))
ORDER BY p.id
LIMIT $9`

// Search returns up to limit prefixes matching f whose id is above after, in
// id order, so a cursor stays valid while new prefixes arrive.
func (s *Store) Search(ctx context.Context, f Filter, after int64, limit int, now time.Time) ([]Item, error) {
	var within any
	if f.Within != nil {
		within = *f.Within
	}
	src, isPrefix := f.Source, false
	if strings.HasSuffix(src, "*") {
		src, isPrefix = strings.TrimSuffix(src, "*"), true
		src = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(src)
	}
	rows, err := s.pool.Query(ctx, searchSQL, now, after, within, f.SeenSince,
		nullIfEmpty(f.Tag), nullIfEmpty(f.Classification), nullIfEmpty(src), isPrefix, limit)
	if err != nil {
		return nil, mapErr("search", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) {
		var it Item
		err := r.Scan(&it.ID, &it.Prefix, &it.FirstSeen, &it.LastSeen, &it.Sightings, &it.Classification, &it.Tags, &it.Sources, &it.Note)
		return it, err
	})
	if err != nil {
		return nil, mapErr("search", err)
	}
	return items, nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// PageEnrichment is the geo and name data exports add to a page of items.
type PageEnrichment struct {
	Country string
	ASN     int64
	ASOrg   string
	RDNS    string
}

// EnrichPage returns, for each prefix, its most specific geo network and its
// newest PTR name, in one query.
func (s *Store) EnrichPage(ctx context.Context, prefixes []netip.Prefix) (map[netip.Prefix]PageEnrichment, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT q.p, coalesce(g.country, ''), coalesce(g.asn, 0), coalesce(g.as_org, ''), coalesce(h.name, '')
		FROM unnest($1::cidr[]) AS q(p)
		LEFT JOIN LATERAL (SELECT country, asn, as_org FROM geo_networks WHERE network >>= q.p ORDER BY masklen(network) DESC LIMIT 1) g ON true
		LEFT JOIN LATERAL (SELECT name FROM hostnames WHERE address = q.p::inet AND masklen(q.p) = CASE WHEN family(q.p) = 4 THEN 32 ELSE 128 END
		                   ORDER BY (source = 'ptr') DESC, last_seen DESC LIMIT 1) h ON true`, prefixes)
	if err != nil {
		return nil, mapErr("enrich page", err)
	}
	defer rows.Close()
	out := make(map[netip.Prefix]PageEnrichment, len(prefixes))
	for rows.Next() {
		var p netip.Prefix
		var e PageEnrichment
		if err := rows.Scan(&p, &e.Country, &e.ASN, &e.ASOrg, &e.RDNS); err != nil {
			return nil, mapErr("enrich page", err)
		}
		out[p] = e
	}
	return out, mapErr("enrich page", rows.Err())
}
