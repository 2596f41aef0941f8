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
	target := netip.PrefixFrom(addr, addr.BitLen())
	vb, va := resolve.Resolve(target, before, now), resolve.Resolve(target, after, now)
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
		eb, err := render.ExplainView(ctx, h.store, rs, addr, vb, now)
		if err != nil {
			return nil, fmt.Errorf("ui: explain %s: %w", r.Name, err)
		}
		ea, err := render.ExplainView(ctx, h.store, rs, addr, va, now)
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
