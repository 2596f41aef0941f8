package geo_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/geo"
	"github.com/muninn/muninn/worker/source/geo/geotest"
)

func TestDiscoverReadsEveryLayout(t *testing.T) {
	t.Parallel()
	for _, l := range geotest.Layouts() {
		t.Run(l.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l.Write(t, dir)
			paths, err := geo.Discover(dir)
			require.NoError(t, err)
			require.Empty(t, paths.Missing())
			db := open(t, paths)
			rec, ok := db.Lookup(netip.MustParseAddr("192.0.2.10"))
			require.True(t, ok)
			require.Equal(t, geo.Record{Country: "DE", Continent: "EU", ASN: 64500, Org: "Example, Inc.", Network: netip.MustParsePrefix("192.0.2.0/24")}, rec)
			rec, ok = db.Lookup(netip.MustParseAddr("2001:db8::1"))
			require.True(t, ok)
			require.Equal(t, geo.Record{Country: "JP", Continent: "AS", ASN: 64502, Org: "Example V6", Network: netip.MustParsePrefix("2001:db8::/32")}, rec)
			var nets []geo.GeoNet
			require.NoError(t, db.Networks(func(n geo.GeoNet) error { nets = append(nets, n); return nil }))
			require.ElementsMatch(t, []geo.GeoNet{
				{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Country: "DE", Continent: "EU", ASN: 64500, Org: "Example, Inc."},
				{Prefix: netip.MustParsePrefix("2001:db8::/32"), Country: "JP", Continent: "AS", ASN: 64502, Org: "Example V6"},
			}, nets)
		})
	}
}

// TestDiscoverSubsets: any subset of the files works, and Missing names what
// is absent and what that disables.
func TestDiscoverSubsets(t *testing.T) {
	t.Parallel()
	const noCountry = "no country data (GeoLite2-Country.mmdb, dbip-country-lite.mmdb, country.mmdb or geo-whois-asn-country.mmdb): country and continent rules disabled"
	const noASN = "no ASN data (GeoLite2-ASN.mmdb, dbip-asn-lite.mmdb, asn.mmdb or asn-ipv4.csv/asn-ipv6.csv): asn and org rules and network owner names disabled"

	paths, err := geo.Discover(filepath.Join(t.TempDir(), "not-yet"))
	require.NoError(t, err)
	require.Equal(t, geo.Paths{}, paths)
	require.Equal(t, noCountry+"; "+noASN, paths.Missing())

	// Country only (the old start-up failure: MMDB without the CSVs).
	dir := t.TempDir()
	writeMMDB(t, filepath.Join(dir, "geo-whois-asn-country.mmdb"), "c", map[string]mmdbtype.Map{"192.0.2.0/24": {"country_code": mmdbtype.String("DE")}})
	paths, err = geo.Discover(dir)
	require.NoError(t, err)
	require.Equal(t, geo.Paths{Country: filepath.Join(dir, "geo-whois-asn-country.mmdb")}, paths)
	require.Equal(t, noASN, paths.Missing())
	rec, ok := open(t, paths).Lookup(netip.MustParseAddr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, geo.Record{Country: "DE", Continent: "EU", Network: netip.MustParsePrefix("192.0.2.0/24")}, rec)

	// ASN only: networks carry the ASN and no country.
	dir = t.TempDir()
	writeMMDB(t, filepath.Join(dir, "GeoLite2-ASN.mmdb"), "GeoLite2-ASN", map[string]mmdbtype.Map{"198.51.100.0/24": asnRecord(64501, "Transit")})
	paths, err = geo.Discover(dir)
	require.NoError(t, err)
	require.Equal(t, noCountry, paths.Missing())
	db := open(t, paths)
	rec, ok = db.Lookup(netip.MustParseAddr("198.51.100.1"))
	require.True(t, ok)
	require.Equal(t, geo.Record{ASN: 64501, Org: "Transit", Network: netip.MustParsePrefix("198.51.100.0/24")}, rec)
	var nets []geo.GeoNet
	require.NoError(t, db.Networks(func(n geo.GeoNet) error { nets = append(nets, n); return nil }))
	require.Equal(t, []geo.GeoNet{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), ASN: 64501, Org: "Transit"}}, nets)

	// ASN CSV only, one family.
	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "asn-ipv4.csv"), []byte("203.0.113.0,203.0.113.127,64503,Half\n"), 0o600))
	paths, err = geo.Discover(dir)
	require.NoError(t, err)
	require.Equal(t, geo.Paths{ASNCSV: []string{filepath.Join(dir, "asn-ipv4.csv")}}, paths)
	nets = nil
	require.NoError(t, open(t, paths).Networks(func(n geo.GeoNet) error { nets = append(nets, n); return nil }))
	require.Equal(t, []geo.GeoNet{{Prefix: netip.MustParsePrefix("203.0.113.0/25"), ASN: 64503, Org: "Half"}}, nets)

	// City only serves as the country database.
	dir = t.TempDir()
	writeMMDB(t, filepath.Join(dir, "GeoLite2-City.mmdb"), "GeoLite2-City", map[string]mmdbtype.Map{
		"192.0.2.0/24": {"city": mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Berlin")}}, "country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}},
	})
	paths, err = geo.Discover(dir)
	require.NoError(t, err)
	require.Equal(t, geo.Paths{Country: filepath.Join(dir, "GeoLite2-City.mmdb")}, paths)
	rec, ok = open(t, paths).Lookup(netip.MustParseAddr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, geo.Record{Country: "DE", Continent: "EU", City: "Berlin", Network: netip.MustParsePrefix("192.0.2.0/24")}, rec)
}

// TestDirWatcherFindsLaterFiles: a watcher on a directory that does not
// exist yet loads files that appear, change and go away.
func TestDirWatcherFindsLaterFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "geo")
	w, err := geo.NewDirWatcher(dir)
	require.NoError(t, err)
	_, ok := w.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.False(t, ok)
	changed, err := w.Reload()
	require.NoError(t, err)
	require.False(t, changed)

	require.NoError(t, os.MkdirAll(dir, 0o755))
	writeMMDB(t, filepath.Join(dir, "GeoLite2-Country.mmdb"), "GeoLite2-Country", map[string]mmdbtype.Map{"192.0.2.0/24": geoip2Country("NL", "EU")})
	changed, err = w.Reload()
	require.NoError(t, err)
	require.True(t, changed)
	rec, ok := w.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, "NL", rec.Country)
	require.Equal(t, filepath.Join(dir, "GeoLite2-Country.mmdb"), w.Paths().Country)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "asn-ipv4.csv"), []byte("192.0.2.0,192.0.2.255,64500,Example\n"), 0o600))
	changed, err = w.Reload()
	require.NoError(t, err)
	require.True(t, changed, "a new file is a change")
	rec, _ = w.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.Equal(t, uint32(64500), rec.ASN)

	require.NoError(t, os.Remove(filepath.Join(dir, "GeoLite2-Country.mmdb")))
	changed, err = w.Reload()
	require.NoError(t, err)
	require.True(t, changed, "a removed file is a change")
	rec, ok = w.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, geo.Record{ASN: 64500, Org: "Example", Network: netip.MustParsePrefix("192.0.2.0/24")}, rec)
}
