package render

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// Explain evaluates rs for addr over what the store holds now: the
// address's view from the one resolver (over every stored prefix containing
// it), the geo networks containing it and the named lists.
func Explain(ctx context.Context, st *store.Store, rs *policy.Ruleset, addr netip.Addr, now time.Time) (policy.Explanation, error) {
	addr = addr.Unmap()
	target := netip.PrefixFrom(addr, addr.BitLen())
	prefixes, err := st.Containing(ctx, target)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("render: explain %s: %w", addr, err)
	}
	return ExplainView(ctx, st, rs, addr, resolve.Resolve(target, prefixes, now), now)
}

// ExplainView is Explain over a given view of addr (e.g. one with an
// override applied that is not stored yet).
func ExplainView(ctx context.Context, st *store.Store, rs *policy.Ruleset, addr netip.Addr, v resolve.View, now time.Time) (policy.Explanation, error) {
	addr = addr.Unmap()
	facts, err := st.FactsContaining(ctx, now, addr)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("render: explain %s: %w", addr, err)
	}
	lists, err := ListSelectors(ctx, st)
	if err != nil {
		return policy.Explanation{}, err
	}
	return policy.Explain(rs, lists, addr, v, facts.Geo)
}
