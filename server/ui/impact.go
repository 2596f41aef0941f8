package ui

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/resolve"
)

// rulesetChange is one ruleset whose decision for an address an override changes.
type rulesetChange struct {
	Ruleset  string
	Before   string
	After    string
	Bouncers []string
}

// rulesetChanges evaluates every ruleset for addr over the facts before and
// after an override, both built from the same containing prefixes (before is
// what the store holds, after has the override applied), and returns the
// rulesets whose decision changes, with the bouncers enforcing them.
func (h *Handler) rulesetChanges(ctx context.Context, addr netip.Addr, before, after []resolve.Prefix, now time.Time) ([]rulesetChange, error) {
	rulesets, err := h.store.Rulesets(ctx)
	if err != nil || len(rulesets) == 0 {
		return nil, err
	}
	stored, err := h.store.FactsContaining(ctx, now, addr)
	if err != nil {
		return nil, err
	}
	lists, err := render.ListSelectors(ctx, h.store)
	if err != nil {
		return nil, err
	}
	fb := &policy.Facts{Entries: factEntries(before, now), Geo: stored.Geo, Lists: lists}
	fa := &policy.Facts{Entries: factEntries(after, now), Geo: stored.Geo, Lists: lists}
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
		eb, err := policy.Explain(rs, fb, addr)
		if err != nil {
			return nil, fmt.Errorf("ui: explain %s: %w", r.Name, err)
		}
		ea, err := policy.Explain(rs, fa, addr)
		if err != nil {
			return nil, fmt.Errorf("ui: explain %s: %w", r.Name, err)
		}
		if eb.Decided == ea.Decided && eb.Action == ea.Action {
			continue
		}
		c := rulesetChange{Ruleset: r.Name, Before: decision(rs, eb), After: decision(rs, ea)}
		for _, b := range bouncers {
			if slices.Contains(b.Rulesets, r.Name) {
				c.Bouncers = append(c.Bouncers, b.Name)
			}
		}
		out = append(out, c)
	}
	return out, nil
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

// factEntries projects stored prefixes onto the policy's per-prefix facts, by
// the same rules as the store's facts query: live assertions only; tags are the
// manual ones plus the automatic ones a manual suppress on the prefix does not
// hide; the automatic classification is the most severe; the manual one the newest.
func factEntries(prefixes []resolve.Prefix, now time.Time) []policy.Entry {
	var out []policy.Entry
	for _, p := range prefixes {
		var auto, manual, suppressed, sources []string
		e := policy.Entry{Prefix: p.Prefix}
		autoSeverity, manualSeen := -1, time.Time{}
		live := false
		for _, a := range p.Assertions {
			if !a.Live(now) {
				continue
			}
			live = true
			isManual := resolve.IsManual(a.Source)
			sources = append(sources, a.Source)
			switch {
			case a.Kind == resolve.KindTag && isManual:
				manual = append(manual, a.Value)
			case a.Kind == resolve.KindTag:
				auto = append(auto, a.Value)
			case a.Kind == resolve.KindSuppress && isManual:
				suppressed = append(suppressed, a.Value)
			case a.Kind == resolve.KindClassification && isManual:
				if !a.LastSeen.Before(manualSeen) {
					e.ManualClassification, manualSeen = a.Value, a.LastSeen
				}
			case a.Kind == resolve.KindClassification:
				if s := resolve.Severity(a.Value); s > autoSeverity {
					autoSeverity, e.Classification = s, a.Value
				}
			}
		}
		if !live {
			continue
		}
		e.Tags = compact(manual)
		for _, t := range compact(auto) {
			if !slices.Contains(suppressed, t) && !slices.Contains(e.Tags, t) {
				e.Tags = append(e.Tags, t)
			}
		}
		if len(suppressed) > 0 {
			e.Suppressed = compact(suppressed)
		}
		e.Sources = compact(sources)
		out = append(out, e)
	}
	return out
}

func compact(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
