// Package geotest writes small geo databases in each vendor's layout for
// tests: documentation networks only.
package geotest

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/stretchr/testify/require"
)

// WriteMMDB writes an MMDB of the given database type with records keyed by
// CIDR. Documentation ranges are reserved networks, hence
// IncludeReservedNetworks.
func WriteMMDB(t testing.TB, path, dbType string, records map[string]mmdbtype.Map) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, IncludeReservedNetworks: true, RecordSize: 28})
	require.NoError(t, err)
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, n, err := net.ParseCIDR(k)
		require.NoError(t, err)
		require.NoError(t, tree.Insert(n, records[k]))
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = tree.WriteTo(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// GeoIP2Country is a GeoIP2/GeoLite2/DB-IP country record.
func GeoIP2Country(iso, continent string) mmdbtype.Map {
	m := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(iso), "names": mmdbtype.Map{"en": mmdbtype.String("X")}}}
	if continent != "" {
		m["continent"] = mmdbtype.Map{"code": mmdbtype.String(continent)}
	}
	return m
}

// ASNRecord is a GeoLite2-ASN/DB-IP ASN record.
func ASNRecord(asn uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(asn), "autonomous_system_organization": mmdbtype.String(org)}
}

// Layout is one vendor's set of files. Every layout holds the same facts:
// 192.0.2.0/24 is DE (EU), AS64500 "Example, Inc."; 2001:db8::/32 is JP
// (AS), AS64502 "Example V6".
type Layout struct {
	Name  string
	Write func(t testing.TB, dir string)
}

// Layouts returns GeoLite2, DB-IP, IPinfo (combined and split) and
// ip-location-db layouts.
func Layouts() []Layout {
	country := map[string]mmdbtype.Map{"192.0.2.0/24": GeoIP2Country("DE", "EU"), "2001:db8::/32": GeoIP2Country("JP", "AS")}
	asn := map[string]mmdbtype.Map{"192.0.2.0/24": ASNRecord(64500, "Example, Inc."), "2001:db8::/32": ASNRecord(64502, "Example V6")}
	ipinfo := func(cc, cont, asn, name string) mmdbtype.Map {
		return mmdbtype.Map{"country": mmdbtype.String(cc), "country_name": mmdbtype.String("X"), "continent": mmdbtype.String(cont),
			"asn": mmdbtype.String(asn), "as_name": mmdbtype.String(name), "as_domain": mmdbtype.String("example.com")}
	}
	return []Layout{
		{"GeoLite2", func(t testing.TB, dir string) {
			WriteMMDB(t, filepath.Join(dir, "GeoLite2-Country.mmdb"), "GeoLite2-Country", country)
			WriteMMDB(t, filepath.Join(dir, "GeoLite2-ASN.mmdb"), "GeoLite2-ASN", asn)
		}},
		{"DB-IP", func(t testing.TB, dir string) {
			WriteMMDB(t, filepath.Join(dir, "dbip-country-lite-2026-10.mmdb"), "DBIP-Country-Lite", map[string]mmdbtype.Map{"192.0.2.0/24": GeoIP2Country("FR", "EU")})
			WriteMMDB(t, filepath.Join(dir, "dbip-country-lite-2026-11.mmdb"), "DBIP-Country-Lite", country) // the newest release wins
			WriteMMDB(t, filepath.Join(dir, "dbip-asn-lite-2026-11.mmdb"), "DBIP-ASN-Lite (compat=GeoLite2-ASN)", asn)
		}},
		{"IPinfo", func(t testing.TB, dir string) {
			WriteMMDB(t, filepath.Join(dir, "country_asn.mmdb"), "ipinfo country_asn.mmdb", map[string]mmdbtype.Map{
				"192.0.2.0/24":  ipinfo("DE", "EU", "AS64500", "Example, Inc."),
				"2001:db8::/32": ipinfo("JP", "AS", "AS64502", "Example V6"),
			})
		}},
		{"IPinfo-split", func(t testing.TB, dir string) {
			WriteMMDB(t, filepath.Join(dir, "country.mmdb"), "ipinfo country.mmdb", map[string]mmdbtype.Map{
				"192.0.2.0/24":  {"country": mmdbtype.String("DE"), "continent": mmdbtype.String("EU")},
				"2001:db8::/32": {"country": mmdbtype.String("JP"), "continent": mmdbtype.String("AS")},
			})
			WriteMMDB(t, filepath.Join(dir, "asn.mmdb"), "ipinfo asn.mmdb", map[string]mmdbtype.Map{
				"192.0.2.0/24":  {"asn": mmdbtype.String("AS64500"), "as_name": mmdbtype.String("Example, Inc.")},
				"2001:db8::/32": {"asn": mmdbtype.String("AS64502"), "as_name": mmdbtype.String("Example V6")},
			})
		}},
		{"ip-location-db", func(t testing.TB, dir string) {
			WriteMMDB(t, filepath.Join(dir, "geo-whois-asn-country.mmdb"), "geo-whois-asn-country", map[string]mmdbtype.Map{
				"192.0.2.0/24": {"country_code": mmdbtype.String("DE")}, "2001:db8::/32": {"country_code": mmdbtype.String("JP")},
			})
			require.NoError(t, os.WriteFile(filepath.Join(dir, "asn-ipv4.csv"), []byte("192.0.2.0,192.0.2.255,64500,\"Example, Inc.\"\n"), 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "asn-ipv6.csv"), []byte("2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64502,Example V6\n"), 0o600))
		}},
	}
}
