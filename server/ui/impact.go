package ui

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// previewLimit bounds the stored prefixes inside a network whose views and
// decisions an impact preview works out.
const previewLimit = 1000

// impact is what an override will change: the target's view before and
// after, and the rulesets whose decisions change for the target or the
// stored prefixes inside it.
type impact struct {
	Before, After resolve.View
	// Inside counts the existing stored prefixes inside a network target
	// (InsideMore: there are more than previewLimit; the preview covers the
	// first previewLimit in address order).
	Inside     int
	InsideMore bool
	Rulesets   []rulesetChange
}

// rulesetChange is one ruleset whose decision an override changes for some
// stored prefixes, with the bouncers enforcing it.
type rulesetChange struct {
	Ruleset  string
	Bouncers []string
	Changes  []decisionChange
}

// decisionChange is one prefix (the target or a stored prefix inside it)
// whose decision changes: what the ruleset does with its addresses before and
// after, e.g. "block (rule 1: block tag ssh)" → "pass (default)".
type decisionChange struct {
	Prefix        netip.Prefix
	Before, After string
}

// previewOverride works out what storing override o on target would change.
// Both sides come from the index through the one resolver: the views before
// are the index's, the views after are resolve.Effective over the same stored
// prefixes with the manual assertions of target replaced by o (withOverride),
// so the preview follows every rule of the resolver (a suppress on a network
// hides the tag on every stored prefix inside it, whichever prefix asserted
// it). Each ruleset is then explained (policy.Explain) for the target and for
// each stored prefix inside it, at the prefix's first address, with the view
// before and after; those whose decision changes are reported.
func (h *Handler) previewOverride(ctx context.Context, target netip.Prefix, o store.Override, actor string) (impact, error) {
	// The preview reflects every write recorded so far, including the
	// person's own previous one.
	if err := h.ix.CatchUp(ctx); err != nil {
		return impact{}, fmt.Errorf("ui: preview override: %w", err)
	}
	snap := h.ix.Snapshot()
	at := snap.At()
	var im impact
	im.Before, _ = snap.Network(target)
	// The prefixes whose view the override can change: the target and the
	// stored prefixes inside it.
	affected := []index.Row{{Prefix: target, View: im.Before}}
	if !target.IsSingleIP() {
		rows, next := snap.Search(index.Filter{Within: target}, netip.Prefix{}, previewLimit+1)
		rows = slices.DeleteFunc(rows, func(r index.Row) bool { return r.Prefix == target })
		im.InsideMore = next.IsValid() || len(rows) > previewLimit
		rows = rows[:min(len(rows), previewLimit)]
		im.Inside = len(rows)
		affected = append(affected, rows...)
	}
	load := slices.Clone(im.Before.Prefixes)
	for _, r := range affected {
		load = append(load, r.Prefix)
	}
	stored, err := h.storedPrefixes(ctx, snap, load)
	if err != nil {
		return impact{}, err
	}
	changed := withOverride(stored, target, o, actor, at)
	afterViews := make([]resolve.View, len(affected))
	for i, r := range affected {
		afterViews[i] = resolve.Effective(r.Prefix, changed, at)
	}
	im.After = afterViews[0]
	if im.Rulesets, err = h.rulesetChanges(ctx, snap, affected, afterViews); err != nil {
		return impact{}, err
	}
	return im, nil
}

// rulesetChanges explains every ruleset for each affected prefix at its first
// address, with its view before (the row's) and after (afterViews, in the
// same order), and returns the rulesets whose decision changes for some of
// them, with the bouncers enforcing them.
func (h *Handler) rulesetChanges(ctx context.Context, snap *index.Snap, affected []index.Row, afterViews []resolve.View) ([]rulesetChange, error) {
	rulesets, err := h.store.Rulesets(ctx)
	if err != nil || len(rulesets) == 0 {
		return nil, err
	}
	lists, err := render.ListSelectors(ctx, h.store)
	if err != nil {
		return nil, err
	}
	bouncers, err := h.store.Bouncers(ctx)
	if err != nil {
		return nil, err
	}
	var out []rulesetChange
	for _, r := range rulesets {
		rs, err := policy.Parse(r.Text)
		if err != nil {
			return nil, fmt.Errorf("ui: stored ruleset %s: %w", r.Name, err)
		}
		c := rulesetChange{Ruleset: r.Name}
		for i, row := range affected {
			addr := row.Prefix.Addr()
			geo := geoAt(snap, addr)
			eb, err := policy.Explain(rs, lists, addr, row.View, geo)
			if err != nil {
				return nil, fmt.Errorf("ui: explain %s: %w", r.Name, err)
			}
			ea, err := policy.Explain(rs, lists, addr, afterViews[i], geo)
			if err != nil {
				return nil, fmt.Errorf("ui: explain %s: %w", r.Name, err)
			}
			if eb.Decided != ea.Decided || eb.Action != ea.Action {
				c.Changes = append(c.Changes, decisionChange{Prefix: row.Prefix, Before: decision(rs, eb), After: decision(rs, ea)})
			}
		}
		if len(c.Changes) == 0 {
			continue
		}
		for _, b := range bouncers {
			if slices.Contains(b.Rulesets, r.Name) {
				c.Bouncers = append(c.Bouncers, b.Name)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// geoAt is the geo facts policy.Explain needs for addr: the most specific geo
// network containing it, from the index.
func geoAt(snap *index.Snap, addr netip.Addr) []policy.GeoNet {
	if g, ok := snap.Geo(addr); ok {
		return []policy.GeoNet{g.GeoNet}
	}
	return nil
}

// decision says what a ruleset does with an address: "block (rule 2: block tag ssh)".
func decision(rs *policy.Ruleset, e policy.Explanation) string {
	action := string(e.Action)
	if action == "" {
		action = "pass"
	}
	if e.Decided < 0 {
		return action + " (default)"
	}
	return fmt.Sprintf("%s (rule %d: %s)", action, e.Decided+1, policy.FormatRule(rs.Rules[e.Decided]))
}
