package geo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The file names Discover looks for, in order of preference within each
// kind. A pattern with * matches dated releases (dbip-country-lite-2026-11.mmdb);
// the last name in sort order, the newest release, wins.
var (
	countryNames = []string{"GeoLite2-Country.mmdb", "GeoIP2-Country.mmdb", "dbip-country-lite*.mmdb",
		"dbip-country*.mmdb", "country.mmdb", "country_asn.mmdb", "ipinfo_lite.mmdb", "geo-whois-asn-country.mmdb"}
	cityNames = []string{"GeoLite2-City.mmdb", "GeoIP2-City.mmdb", "dbip-city-lite*.mmdb", "dbip-city*.mmdb"}
	asnNames  = []string{"GeoLite2-ASN.mmdb", "GeoIP2-ASN.mmdb", "dbip-asn-lite*.mmdb", "dbip-asn*.mmdb", "asn.mmdb",
		"country_asn.mmdb", "ipinfo_lite.mmdb"}
	asnCSVNames = []string{"asn-ipv4.csv", "asn-ipv6.csv"}
)

// Discover finds the geo databases in dir by their documented names:
// MaxMind GeoLite2/GeoIP2 (GeoLite2-Country.mmdb, GeoLite2-City.mmdb,
// GeoLite2-ASN.mmdb), DB-IP (dbip-country-lite*.mmdb, dbip-city-lite*.mmdb,
// dbip-asn-lite*.mmdb), IPinfo (country.mmdb, asn.mmdb, country_asn.mmdb,
// ipinfo_lite.mmdb) and ip-location-db (geo-whois-asn-country.mmdb,
// asn-ipv4.csv, asn-ipv6.csv). Where several files hold one kind, the first
// of that list wins. Without a country database a city database serves as
// one. A missing dir is an empty one; other errors (unreadable dir) are
// returned.
func Discover(dir string) (Paths, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Paths{}, nil
	}
	if err != nil {
		return Paths{}, fmt.Errorf("geo: discover: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	find := func(patterns []string) string {
		for _, pat := range patterns {
			var hit string
			for _, n := range names {
				if ok, _ := filepath.Match(pat, n); ok {
					hit = n // sorted: the last match is the newest release
				}
			}
			if hit != "" {
				return filepath.Join(dir, hit)
			}
		}
		return ""
	}
	p := Paths{Country: find(countryNames), City: find(cityNames), ASN: find(asnNames)}
	if p.Country == "" {
		p.Country, p.City = p.City, ""
	}
	if p.ASN == "" {
		for _, n := range asnCSVNames {
			if slices.Contains(names, n) {
				p.ASNCSV = append(p.ASNCSV, filepath.Join(dir, n))
			}
		}
	}
	return p, nil
}

// Empty reports whether p names no file at all.
func (p Paths) Empty() bool { return len(p.files()) == 0 }

// Missing names the kinds of data paths lacks and what that disables, as one
// sentence for a log line, e.g. "no ASN data (GeoLite2-ASN.mmdb,
// dbip-asn-lite.mmdb, asn.mmdb or asn-ipv4.csv/asn-ipv6.csv): asn and org
// rules and network owner names disabled"; "" when country and ASN data are
// both there (city data is optional and only shown).
func (p Paths) Missing() string {
	var out []string
	if p.Country == "" {
		out = append(out, "no country data (GeoLite2-Country.mmdb, dbip-country-lite.mmdb, country.mmdb or geo-whois-asn-country.mmdb): country and continent rules disabled")
	}
	if p.ASN == "" && len(p.ASNCSV) == 0 {
		out = append(out, "no ASN data (GeoLite2-ASN.mmdb, dbip-asn-lite.mmdb, asn.mmdb or asn-ipv4.csv/asn-ipv6.csv): asn and org rules and network owner names disabled")
	}
	return strings.Join(out, "; ")
}
