package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Entry is one stored prefix with its effective view already resolved by the
// server: tags after suppression, automatic and manual classification, sources.
type Entry struct {
	Prefix netip.Prefix `json:"prefix"`
	// Tags are the tags asserted on this prefix (after its own suppressions).
	Tags []string `json:"tags,omitempty"`
	// Suppressed hides these tags, inherited from less specific prefixes, for
	// every address inside Prefix. A more specific entry may tag them again.
	Suppressed []string `json:"suppressed,omitempty"`
	// Classification is the most severe automatic classification on this prefix.
	Classification string `json:"classification,omitempty"`
	// ManualClassification is a person's classification of this prefix; the most
	// specific one containing an address wins over every automatic one.
	ManualClassification string `json:"manual_classification,omitempty"`
	// Sources are the assertion sources, e.g. "feed:ipsum", "manual:alice".
	Sources []string `json:"sources,omitempty"`
}

// GeoNet is a network from geo data (country, continent, AS).
type GeoNet struct {
	Prefix    netip.Prefix `json:"prefix"`
	Country   string       `json:"country,omitempty"`
	Continent string       `json:"continent,omitempty"`
	ASN       uint32       `json:"asn,omitempty"`
	Org       string       `json:"org,omitempty"`
}

// Facts is everything Compile and Explain need besides the ruleset. Several
// entries or geo nets may share a prefix: their tags and sources are merged,
// and the last one given wins for the manual classification and geo facts.
type Facts struct {
	Entries []Entry
	Geo     []GeoNet
	// Lists maps a list name to its selector, for "list" conditions.
	Lists map[string][]Cond
}

// severity orders classifications: malicious > suspicious > benign > unknown > none.
var severity = map[string]uint8{"": 0, "unknown": 1, "benign": 2, "suspicious": 3, "malicious": 4}

// severityNames is the inverse of severity.
var severityNames = [...]string{"", "unknown", "benign", "suspicious", "malicious"}

// classSeverity returns the severity of a classification or an error for an unknown one.
func classSeverity(c string) (uint8, error) {
	s, ok := severity[c]
	if !ok {
		return 0, fmt.Errorf("classification %q is not one of malicious, suspicious, benign, unknown", c)
	}
	return s, nil
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
