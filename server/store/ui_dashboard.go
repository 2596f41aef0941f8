package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// DashboardCounts are the headline numbers of the UI's dashboard.
type DashboardCounts struct {
	Prefixes  int64
	Malicious int64
	Tags      int64
	Tokens    int64
	Feeds     int64
	// FeedsFailing counts enabled feeds whose last run failed.
	FeedsFailing int64
}

// Counts returns the dashboard's headline numbers in one round trip.
func (s *Store) Counts(ctx context.Context, now time.Time) (DashboardCounts, error) {
	var c DashboardCounts
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM prefixes),
		(SELECT count(DISTINCT prefix_id) FROM assertions WHERE kind = 'classification' AND value = 'malicious'
		   AND (expires_at IS NULL OR expires_at > $1)),
		(SELECT count(*) FROM tags),
		(SELECT count(*) FROM tokens),
		(SELECT count(*) FROM feeds),
		(SELECT count(*) FROM feeds WHERE enabled AND last_error <> '')`, now).
		Scan(&c.Prefixes, &c.Malicious, &c.Tags, &c.Tokens, &c.Feeds, &c.FeedsFailing)
	return c, mapErr("dashboard counts", err)
}

// Bucket is one bar of a chart: a label and a count.
type Bucket struct {
	Label string
	Count int64
}

// SightingsPerDay counts sighting events per UTC day over the days days up to
// now, oldest first, with a zero bucket for a day without any. The BRIN index
// on seen_at keeps this a range scan.
func (s *Store) SightingsPerDay(ctx context.Context, now time.Time, days int) ([]Bucket, error) {
	first := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1-days)
	rows, err := s.pool.Query(ctx, `SELECT to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*)
		FROM sightings WHERE seen_at >= $1 GROUP BY 1`, first)
	if err != nil {
		return nil, mapErr("sightings per day", err)
	}
	got, err := pgx.CollectRows(rows, scanBucket)
	if err != nil {
		return nil, mapErr("sightings per day", err)
	}
	byDay := make(map[string]int64, len(got))
	for _, b := range got {
		byDay[b.Label] = b.Count
	}
	out := make([]Bucket, days)
	for i := range out {
		d := first.AddDate(0, 0, i)
		out[i] = Bucket{Label: d.Format("01-02"), Count: byDay[d.Format("2006-01-02")]}
	}
	return out, nil
}

func scanBucket(r pgx.CollectableRow) (Bucket, error) {
	var b Bucket
	return b, r.Scan(&b.Label, &b.Count)
}

// TopTags returns the limit tags on the most prefixes (live assertions only).
func (s *Store) TopTags(ctx context.Context, now time.Time, limit int) ([]Bucket, error) {
	rows, err := s.pool.Query(ctx, `SELECT value, count(DISTINCT prefix_id) AS n FROM assertions
		WHERE kind = 'tag' AND (expires_at IS NULL OR expires_at > $1)
		GROUP BY value ORDER BY n DESC, value LIMIT $2`, now, limit)
	if err != nil {
		return nil, mapErr("top tags", err)
	}
	bs, err := pgx.CollectRows(rows, scanBucket)
	return bs, mapErr("top tags", err)
}

// recentSample bounds the geo charts: a GiST probe per prefix over every stored
// prefix would not fit a page's time budget at a million prefixes, so the
// charts describe the most recently seen ones (prefixes_last_seen index).
const recentSample = 5000

// TopCountries returns the limit countries of the most recently seen prefixes.
func (s *Store) TopCountries(ctx context.Context, limit int) ([]Bucket, error) {
	return s.topGeo(ctx, "top countries", topCountriesSQL, limit)
}

// TopASNs returns the limit autonomous systems of the most recently seen prefixes,
// labelled "AS<number> <organisation>".
func (s *Store) TopASNs(ctx context.Context, limit int) ([]Bucket, error) {
	return s.topGeo(ctx, "top asns", topASNsSQL, limit)
}

const (
	topGeoHead = `SELECT k, count(*) AS n FROM (SELECT `
	topGeoTail = ` AS k
		  FROM (SELECT prefix FROM prefixes ORDER BY last_seen DESC LIMIT $1) p
		  JOIN LATERAL (SELECT country, asn, as_org FROM geo_networks WHERE network >>= p.prefix
		                ORDER BY masklen(network) DESC LIMIT 1) g ON true) x
		WHERE k <> ''
		GROUP BY k ORDER BY n DESC, k LIMIT $2`
	topCountriesSQL = topGeoHead + `g.country` + topGeoTail
	topASNsSQL      = topGeoHead + `CASE WHEN g.asn = 0 THEN '' ELSE 'AS' || g.asn || ' ' || g.as_org END` + topGeoTail
)

func (s *Store) topGeo(ctx context.Context, op, query string, limit int) ([]Bucket, error) {
	rows, err := s.pool.Query(ctx, query, recentSample, limit)
	if err != nil {
		return nil, mapErr(op, err)
	}
	bs, err := pgx.CollectRows(rows, scanBucket)
	return bs, mapErr(op, err)
}
