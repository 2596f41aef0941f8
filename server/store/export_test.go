package store

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The classification of a prefix on its own: its manual one, else its most
// severe automatic one. Tags hidden by a manual suppress on the same prefix do
// not count. This is the per-prefix projection of server/resolve's rules.
const referenceSearchSQL = `
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

// ReferenceSearch is the plain statement of what Search returns: it projects
// every prefix, then filters. Correct but slow at scale; tests compare Search with it.
func (s *Store) ReferenceSearch(ctx context.Context, f Filter, after int64, limit int, now time.Time) ([]Item, error) {
	var within any
	if f.Within != nil {
		within = *f.Within
	}
	src, isPrefix := f.Source, false
	if strings.HasSuffix(src, "*") {
		src, isPrefix = strings.TrimSuffix(src, "*"), true
		src = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(src)
	}
	rows, err := s.pool.Query(ctx, referenceSearchSQL, now, after, within, f.SeenSince,
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
