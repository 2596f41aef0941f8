package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bucket is one bar of a chart: a label and a count.
type Bucket struct {
	Label string
	Count int64
}

// SightingsPerDay counts sighting events per UTC day over the days days up to
// now, oldest first, with a zero bucket for a day without any. Sightings are
// counted per day and source as they are merged (migration 0017).
func (s *Store) SightingsPerDay(ctx context.Context, now time.Time, days int) ([]Bucket, error) {
	first := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1-days)
	rows, err := s.pool.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), sum(sightings)::bigint
		FROM sighting_counts WHERE day >= $1::date GROUP BY 1`, first.Format("2006-01-02"))
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
