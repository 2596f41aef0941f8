package ui

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
)

// storedPrefixes returns the stored prefixes ps (prefixes the snapshot names:
// a view's containing prefixes, search rows) with their assertions live at the
// snapshot's instant, most specific first: the resolver's own input, which the
// pages list as provenance and the impact preview changes. The index hands out
// views, not assertions, so they are read from the store (store.LoadPrefixes,
// the query the index itself loads them with); prefixes of ps that are not
// stored are left out.
func (h *Handler) storedPrefixes(ctx context.Context, snap *index.Snap, ps []netip.Prefix) ([]resolve.Prefix, error) {
	var out []resolve.Prefix
	err := h.store.LoadPrefixes(ctx, snap.At(), ps, func(p resolve.Prefix) error {
		p.Assertions = slices.Clone(p.Assertions) // the store reuses the slice
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ui: stored prefixes: %w", err)
	}
	slices.SortFunc(out, func(a, b resolve.Prefix) int {
		if c := cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out, nil
}

// geoOf returns the most specific geo network containing all of p, from the
// index. The index answers longest-prefix matches for an address, so for a
// network this is the geo network of its first address when that contains the
// whole network (geo data such as MaxMind's has disjoint networks, where that
// is exact).
func geoOf(snap *index.Snap, p netip.Prefix) (index.GeoNet, bool) {
	g, ok := snap.Geo(p.Addr())
	if !ok || g.Prefix.Bits() > p.Bits() {
		return index.GeoNet{}, false
	}
	return g, true
}
