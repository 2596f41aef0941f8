package ui

import (
	"net/netip"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
)

// storedPrefixes returns the stored prefixes ps (prefixes the snapshot names:
// a view's containing prefixes, search rows) with their assertions live at the
// snapshot's instant, most specific first: the resolver's own input, which the
// pages list as provenance and the impact preview changes.
func storedPrefixes(snap *index.Snap, ps []netip.Prefix) []resolve.Prefix {
	return snap.Prefixes(ps)
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
