package store

import (
	"context"
)

// RenderSummary is the newest stored render of a ruleset without its body
// (which can be megabytes), for pages that show only its version.
func (s *Store) RenderSummary(ctx context.Context, ruleset string) (StoredRender, error) {
	r := StoredRender{Ruleset: ruleset}
	err := s.pool.QueryRow(ctx, `SELECT version, hash, generated_at FROM renders WHERE ruleset = $1
		ORDER BY version DESC LIMIT 1`, ruleset).Scan(&r.Version, &r.Hash, &r.GeneratedAt)
	return r, mapErr("render summary", err)
}
