package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Observation is one validated ingest line.
type Observation struct {
	Prefix         netip.Prefix
	Source         string // full assertion source, e.g. "ingest:cowrie"
	Tags           []string
	Classification string
	SeenAt         time.Time
	// ExpiresAt is seen_at + ttl; nil means the tag's default TTL, or never.
	ExpiresAt *time.Time
	Note      string
	// WidthLifted says an admin accepted the prefix though it is wider than
	// the default limit (allow_wide); the batch audits it as width.lift.
	WidthLifted bool
}

var ingestColumns = []string{"prefix", "source", "tags", "classification", "seen_at", "expires_at", "note"}

// The batch is COPYed into a temporary table and merged with set-based
// statements; every statement orders by prefix so concurrent batches take row
// locks in the same order and do not deadlock each other.
const (
	ingestTemp = `CREATE TEMP TABLE IF NOT EXISTS ingest_batch (
		prefix cidr NOT NULL, source text NOT NULL, tags text[] NOT NULL, classification text NOT NULL,
		seen_at timestamptz NOT NULL, expires_at timestamptz, note text NOT NULL) ON COMMIT DELETE ROWS`
	ingestTagNames = `INSERT INTO tags (name)
		SELECT DISTINCT t FROM ingest_batch, unnest(tags) t ORDER BY t ON CONFLICT DO NOTHING`
	// The ids of the batch's prefixes go to a second temporary table, so the
	// later statements hash-join 20k rows instead of probing prefixes' index.
	ingestIDsTemp  = `CREATE TEMP TABLE IF NOT EXISTS ingest_ids (prefix cidr NOT NULL, id bigint NOT NULL) ON COMMIT DELETE ROWS`
	ingestPrefixes = `WITH up AS (
		INSERT INTO prefixes (prefix, first_seen, last_seen, sightings)
		SELECT prefix, min(seen_at), max(seen_at), count(*) FROM ingest_batch GROUP BY prefix ORDER BY prefix
		ON CONFLICT (prefix) DO UPDATE SET
		  first_seen = least(prefixes.first_seen, excluded.first_seen),
		  last_seen = greatest(prefixes.last_seen, excluded.last_seen),
		  sightings = prefixes.sightings + excluded.sightings,
		  updated_at = now()
		RETURNING prefix, id)
		INSERT INTO ingest_ids SELECT prefix, id FROM up`
	// Every kind of assertion merges in one statement against the one key
	// (prefix_id, kind, source, value_key). Tags aggregate per value; for a
	// classification or a note the newest observation of a source decides. A
	// NULL expiry means never; re-asserting keeps the later of the two expiries.
	ingestAssertions = `INSERT INTO assertions (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
		SELECT * FROM (
		  SELECT p.id, b.source, 'tag'::text, t.tag, min(b.seen_at), max(b.seen_at),
		         CASE WHEN bool_or(b.expires_at IS NULL AND tg.default_ttl IS NULL) THEN NULL
		              ELSE max(coalesce(b.expires_at, b.seen_at + tg.default_ttl)) END,
		         $1::text
		  FROM ingest_batch b
		  CROSS JOIN LATERAL unnest(b.tags) t(tag)
		  JOIN ingest_ids p ON p.prefix = b.prefix
		  LEFT JOIN tags tg ON tg.name = t.tag
		  GROUP BY p.id, b.source, t.tag
		  UNION ALL
		  SELECT * FROM (
		    SELECT DISTINCT ON (p.id, b.source) p.id, b.source, 'classification'::text, b.classification, b.seen_at, b.seen_at, b.expires_at, $1::text
		    FROM ingest_batch b JOIN ingest_ids p ON p.prefix = b.prefix
		    WHERE b.classification <> ''
		    ORDER BY p.id, b.source, b.seen_at DESC) c
		  UNION ALL
		  SELECT * FROM (
		    SELECT DISTINCT ON (p.id, b.source) p.id, b.source, 'note'::text, b.note, b.seen_at, b.seen_at, b.expires_at, $1::text
		    FROM ingest_batch b JOIN ingest_ids p ON p.prefix = b.prefix
		    WHERE b.note <> ''
		    ORDER BY p.id, b.source, b.seen_at DESC) n
		) s
		ORDER BY 1, 3, 2, 4
		ON CONFLICT (prefix_id, kind, source, value_key) DO UPDATE SET
		  value = CASE WHEN excluded.last_seen >= assertions.last_seen THEN excluded.value ELSE assertions.value END,
		  first_seen = least(assertions.first_seen, excluded.first_seen),
		  last_seen = greatest(assertions.last_seen, excluded.last_seen),
		  expires_at = CASE WHEN assertions.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL
		                    ELSE greatest(assertions.expires_at, excluded.expires_at) END`
	ingestSightings = `INSERT INTO sightings (prefix_id, source, seen_at)
		SELECT p.id, b.source, b.seen_at FROM ingest_batch b JOIN ingest_ids p ON p.prefix = b.prefix`
)

// Ingest stores a batch of observations made through actor in one transaction
// and records the changed prefixes in the change feed. It retries a batch that lost a deadlock.
func (s *Store) Ingest(ctx context.Context, obs []Observation, actor string) error {
	if len(obs) == 0 {
		return nil
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = s.ingestOnce(ctx, obs, actor)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	if err != nil {
		return mapErr("ingest", err)
	}
	return nil
}

func (s *Store) ingestOnce(ctx context.Context, obs []Observation, actor string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return ingestTx(ctx, tx, obs, actor) })
}

// ingestTx is Ingest's work inside tx, for a write that stores observations
// together with something else (a detection's tag and its event).
func ingestTx(ctx context.Context, tx pgx.Tx, obs []Observation, actor string) error {
	{
		for _, q := range []string{ingestTemp, ingestIDsTemp} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("create batch table: %w", err)
			}
		}
		src := pgx.CopyFromSlice(len(obs), func(i int) ([]any, error) {
			o := obs[i]
			tags := o.Tags
			if tags == nil {
				tags = []string{}
			}
			return []any{o.Prefix, o.Source, tags, o.Classification, o.SeenAt, o.ExpiresAt, o.Note}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ingest_batch"}, ingestColumns, src); err != nil {
			return fmt.Errorf("copy batch: %w", err)
		}
		steps := []struct {
			name string
			sql  string
			args []any
		}{
			{"tag names", ingestTagNames, nil},
			{"prefixes", ingestPrefixes, nil},
			{"assertions", ingestAssertions, []any{actor}},
			{"sightings", ingestSightings, nil},
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return fmt.Errorf("merge %s: %w", st.name, err)
			}
		}
		var lifted []netip.Prefix
		for _, o := range obs {
			if o.WidthLifted && !slices.Contains(lifted, o.Prefix) {
				lifted = append(lifted, o.Prefix)
			}
		}
		if err := auditLift(ctx, tx, actor, "ingest", lifted); err != nil {
			return fmt.Errorf("audit lifted widths: %w", err)
		}
		return recordChangeOf(ctx, tx, `SELECT array_agg(prefix) FROM ingest_ids`)
	}
}
