package render

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"go4.org/netipx"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
)

// DenyList is the deny list of one render version: every address a bouncer
// enforcing the render blocks, as minimal CIDRs in address order.
type DenyList struct {
	Ruleset string
	// Version is the render version the list was derived from.
	Version int64
	// Default is the ruleset's default action ("block", "allow" or "").
	Default string
	V4, V6  []netip.Prefix
}

// denyCache keeps the deny list of the latest render of each ruleset.
type denyCache struct {
	mu      sync.Mutex
	entries map[string]denyEntry
}

type denyEntry struct {
	snap  *Snapshot
	guard *guard.Guard
	list  *DenyList
}

// Deny returns the deny list of the current render of ruleset name (false
// when it has none yet): the addresses whose deciding rule is a block rule
// and, when the default is block, the addresses no block, allow or throttle
// rule matches, minus the never-block guard. It is derived from the served
// render, without compiling, once per render version and guard.
func (h *Hub) Deny(ctx context.Context, name string) (*DenyList, bool, error) {
	snap := h.Latest(name)
	if snap == nil {
		return nil, false, nil
	}
	g, err := h.Guard(ctx)
	if err != nil {
		return nil, false, err
	}
	h.denies.mu.Lock()
	defer h.denies.mu.Unlock()
	if e, ok := h.denies.entries[name]; ok && e.snap == snap && e.guard == g {
		return e.list, true, nil
	}
	l, err := denyOf(snap.Render, g)
	if err != nil {
		return nil, false, err
	}
	if h.denies.entries == nil {
		h.denies.entries = map[string]denyEntry{}
	}
	h.denies.entries[name] = denyEntry{snap: snap, guard: g, list: l}
	return l, true, nil
}

func denyOf(r *Render, g *guard.Guard) (*DenyList, error) {
	var blocked, decided netipx.IPSetBuilder
	for _, rule := range r.Rules {
		for _, strs := range [2][]string{rule.V4, rule.V6} {
			for _, s := range strs {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return nil, fmt.Errorf("render: deny list of %s: %w", r.Ruleset, err)
				}
				if rule.Action == string(policy.ActionBlock) {
					blocked.AddPrefix(p)
				}
				if rule.Action != string(policy.ActionLog) {
					decided.AddPrefix(p)
				}
			}
		}
	}
	if r.Default == string(policy.ActionBlock) {
		var unmatched netipx.IPSetBuilder
		unmatched.AddPrefix(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
		unmatched.AddPrefix(netip.PrefixFrom(netip.IPv6Unspecified(), 0))
		d, err := decided.IPSet()
		if err != nil {
			return nil, fmt.Errorf("render: deny list of %s: %w", r.Ruleset, err)
		}
		unmatched.RemoveSet(d)
		u, err := unmatched.IPSet()
		if err != nil {
			return nil, fmt.Errorf("render: deny list of %s: %w", r.Ruleset, err)
		}
		blocked.AddSet(u)
	}
	set, err := blocked.IPSet()
	if err != nil {
		return nil, fmt.Errorf("render: deny list of %s: %w", r.Ruleset, err)
	}
	var v4, v6 []netip.Prefix
	for _, p := range set.Prefixes() {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	v4, v6, _ = g.Filter(v4, v6, 0)
	return &DenyList{Ruleset: r.Ruleset, Version: r.Version, Default: r.Default, V4: v4, V6: v6}, nil
}
