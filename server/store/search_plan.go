package store

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Search (the API's GET /ips and exports, the UI's search pages) must answer in
// well under 200 ms at a million stored prefixes. Projecting every prefix before
// filtering takes minutes for a tag at that size; Search instead starts from the
// narrowest index for the filter (the assertions (kind, value) index for a tag
// or classification, the GiST index for a network, else the primary key),
// walks the candidates in id order and projects only until the page is full.
// Each prefix's projection (its own classification, tags after its own
// suppressions, sources, note) follows server/resolve's rules; a test compares
// the result with ReferenceSearch, the plain project-then-filter statement.
const (
	uiCandByTag = `WITH cand AS (SELECT DISTINCT prefix_id AS id FROM assertions
		WHERE kind = 'tag' AND value = $5 AND prefix_id > $2 AND (expires_at IS NULL OR expires_at > $1))`
	uiCandByClass = `WITH cand AS (SELECT DISTINCT prefix_id AS id FROM assertions
		WHERE kind = 'classification' AND value = $6 AND prefix_id > $2 AND (expires_at IS NULL OR expires_at > $1))`
	uiCandWithin = `WITH cand AS (SELECT id FROM prefixes WHERE prefix <<= $3::cidr AND id > $2)`
	uiCandAll    = `WITH cand AS (SELECT id FROM prefixes WHERE id > $2)`
	uiSearchBody = `
SELECT p.id, p.prefix, p.first_seen, p.last_seen, p.sightings,
       coalesce(cls.value, 'unknown'),
       coalesce(agg.tags, '{}'), coalesce(agg.sources, '{}'), coalesce(agg.note, '')
FROM (SELECT id FROM cand ORDER BY id) c
JOIN prefixes p ON p.id = c.id
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
WHERE ($3::cidr IS NULL OR p.prefix <<= $3::cidr)
  AND ($4::timestamptz IS NULL OR p.last_seen >= $4)
  AND ($5::text IS NULL OR $5 = ANY (agg.tags))
  AND ($6::text IS NULL OR coalesce(cls.value, 'unknown') = $6)
  AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM assertions a WHERE a.prefix_id = p.id
        AND (a.expires_at IS NULL OR a.expires_at > $1)
        AND CASE WHEN $8 THEN a.source LIKE $7 || '%' ELSE a.source = $7 END))
ORDER BY c.id
LIMIT $9`
	uiSearchByTag   = uiCandByTag + uiSearchBody
	uiSearchByClass = uiCandByClass + uiSearchBody
	uiSearchWithin  = uiCandWithin + uiSearchBody
	uiSearchAll     = uiCandAll + uiSearchBody
)

// Search returns up to limit prefixes matching f whose id is above after, in
// id order, so a cursor stays valid while new prefixes arrive; it starts from the
// index that fits f (see above).
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
	query := uiSearchAll
	switch {
	case f.Tag != "":
		query = uiSearchByTag
	case f.Classification != "" && f.Classification != "unknown":
		// "unknown" is also every prefix without a classification: no index for that.
		query = uiSearchByClass
	case f.Within != nil:
		query = uiSearchWithin
	}
	rows, err := s.pool.Query(ctx, query, now, after, within, f.SeenSince,
		nullIfEmpty(f.Tag), nullIfEmpty(f.Classification), nullIfEmpty(src), isPrefix, limit)
	if err != nil {
		return nil, mapErr("search", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) {
		var it Item
		err := r.Scan(&it.ID, &it.Prefix, &it.FirstSeen, &it.LastSeen, &it.Sightings, &it.Classification, &it.Tags, &it.Sources, &it.Note)
		return it, err
	})
	return items, mapErr("search", err)
}

// CountWithin counts the stored prefixes inside p, up to max.
func (s *Store) CountWithin(ctx context.Context, p netip.Prefix, max int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM prefixes WHERE prefix <<= $1::cidr LIMIT $2) x`, p, max).Scan(&n)
	return n, mapErr("count within", err)
}
