package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/muninn/muninn/server/resolve"
)

// Entry is the effective view of one stored prefix, already resolved by the
// one resolver (server/resolve) over every stored prefix containing it.
// Because stored prefixes nest or are disjoint, the effective view of an
// address is the Entry of the most specific stored prefix containing it: the
// compiler never merges entries down the prefix chain (suppression, the
// classification order and the source union are the resolver's business).
type Entry struct {
	Prefix netip.Prefix `json:"prefix"`
	// Tags are the effective tag names (after suppression), without duplicates.
	Tags []string `json:"tags,omitempty"`
	// Classification is the effective classification, as GET /ips reports it:
	// "unknown" for a stored prefix no live classification assertion covers.
	Classification string `json:"classification,omitempty"`
	// Sources are the live sources behind the view, e.g. "feed:ipsum", "manual:alice".
	Sources []string `json:"sources,omitempty"`
}

// ViewClass is the classification that classification conditions match for a
// view: what GET /ips reports ("unknown" for a stored prefix without a live
// classification assertion), and "" for an address no existing stored prefix
// contains (nothing is known, so no classification condition matches it).
func ViewClass(v resolve.View) string {
	if !v.Exists() {
		return ""
	}
	return v.Classification
}

// EntryOf projects the resolver's view of the stored prefix p onto an Entry.
// It is the one place the projection is defined: every producer of Facts
// (the in-memory index, the store adapter) uses it.
func EntryOf(p netip.Prefix, v resolve.View) Entry {
	e := Entry{Prefix: p, Classification: ViewClass(v), Sources: v.Sources}
	if len(v.Tags) > 0 {
		e.Tags = v.TagNames()
	}
	return e
}

// GeoNet is a network from geo data (country, continent, AS).
type GeoNet struct {
	Prefix    netip.Prefix `json:"prefix"`
	Country   string       `json:"country,omitempty"`
	Continent string       `json:"continent,omitempty"`
	ASN       uint32       `json:"asn,omitempty"`
	Org       string       `json:"org,omitempty"`
}

// Facts is everything Compile needs besides the ruleset. Entries and Geo may
// come in any order. Entries on the same prefix are merged (tags and sources
// united, the last non-empty classification wins); of geo nets on the same
// prefix the last one wins.
type Facts struct {
	Entries []Entry
	Geo     []GeoNet
	// Lists maps a list name to its selector, for "list" conditions.
	Lists map[string][]Cond
}

// checkClass returns an error unless c is "" or one of the resolver's
// classifications.
func checkClass(c string) error {
	if c != "" && !resolve.ValidClassification(c) {
		return fmt.Errorf("classification %q is not one of malicious, suspicious, benign, unknown", c)
	}
	return nil
}

// sourceMatches reports whether source s matches pattern p ("feed:*" matches
// every source starting with "feed:").
func sourceMatches(p, s string) bool {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return p == s
}

// geoMatches evaluates a geo condition kind against a geo net (nil: no geo facts).
func geoMatches(kind string, values []string, g *GeoNet, orgLower string) bool {
	if g == nil {
		return false
	}
	for _, v := range values {
		switch kind {
		case KindCountry:
			if strings.EqualFold(g.Country, v) {
				return true
			}
		case KindContinent:
			if strings.EqualFold(g.Continent, v) {
				return true
			}
		case KindASN:
			if n, err := parseASN(v); err == nil && n == g.ASN && g.ASN != 0 {
				return true
			}
		case KindOrg:
			if strings.Contains(orgLower, strings.ToLower(v)) {
				return true
			}
		}
	}
	return false
}

// mostSpecificGeo returns the most specific geo net containing addr (the last
// one given on equal prefixes), nil if none.
func mostSpecificGeo(geo []GeoNet, addr netip.Addr) *GeoNet {
	var best *GeoNet
	for i := range geo {
		g := &geo[i]
		p := CanonicalPrefix(g.Prefix)
		if p.Contains(addr) && (best == nil || p.Bits() >= CanonicalPrefix(best.Prefix).Bits()) {
			best = g
		}
	}
	return best
}
