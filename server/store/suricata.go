package store

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"
)

// SuricataMaxCategory is the highest category id Suricata's IP reputation
// takes (ids are 1 to 60).
const SuricataMaxCategory = 60

// SuricataCategories returns the Suricata category id of each of tags
// (tags past what 60 ids hold get none), giving ids to tags that have none:
// in name order, the lowest id never given, else the lowest id of a tag not
// in tags (a deleted tag's). A tag keeps its id for good, so a new tag never
// renumbers the others. Concurrent callers (several serve processes) take
// turns on a table lock.
func (s *Store) SuricataCategories(ctx context.Context, tags []string) (map[string]int, error) {
	out := map[string]int{}
	err := s.inTx(ctx, "suricata categories", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE suricata_categories IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id, tag FROM suricata_categories`)
		if err != nil {
			return err
		}
		byTag := map[string]int{}
		byID := map[int]string{}
		var id int
		var tag string
		if _, err := pgx.ForEachRow(rows, []any{&id, &tag}, func() error {
			byTag[tag], byID[id] = id, tag
			return nil
		}); err != nil {
			return err
		}
		current := map[string]bool{}
		for _, t := range tags {
			current[t] = true
		}
		var free, reclaim []int
		for id := 1; id <= SuricataMaxCategory; id++ {
			if t, ok := byID[id]; !ok {
				free = append(free, id)
			} else if !current[t] {
				reclaim = append(reclaim, id)
			}
		}
		sorted := slices.Clone(tags)
		slices.Sort(sorted)
		for _, t := range slices.Compact(sorted) {
			if id, ok := byTag[t]; ok {
				out[t] = id
				continue
			}
			switch {
			case len(free) > 0:
				id, free = free[0], free[1:]
				if _, err := tx.Exec(ctx, `INSERT INTO suricata_categories (id, tag) VALUES ($1, $2)`, id, t); err != nil {
					return err
				}
			case len(reclaim) > 0:
				id, reclaim = reclaim[0], reclaim[1:]
				if _, err := tx.Exec(ctx, `UPDATE suricata_categories SET tag = $2, assigned_at = now() WHERE id = $1`, id, t); err != nil {
					return err
				}
			default:
				continue
			}
			out[t] = id
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
