package geo_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/worker/source/geo"
	"github.com/muninn/muninn/worker/source/geo/geotest"
)

var (
	writeMMDB     = geotest.WriteMMDB
	geoip2Country = geotest.GeoIP2Country
	asnRecord     = geotest.ASNRecord
)

const asnCSV4 = `192.0.2.0,192.0.2.127,64500,"Example, Inc."
198.51.100.0,198.51.101.255,64501,Documentation Transit Ltd
`

const asnCSV6 = `2001:db8::,2001:db8:0:ffff:ffff:ffff:ffff:ffff,64502,Example V6 Networks
`

type testBundle struct {
	dir   string
	paths geo.Paths // GeoIP2 shape, ASN MMDB
	ipl   geo.Paths // ip-location-db shape, ASN CSV
}

func setup(t testing.TB) testBundle {
	t.Helper()
	dir := t.TempDir()
	b := testBundle{dir: dir}
	writeMMDB(t, filepath.Join(dir, "country.mmdb"), "GeoLite2-Country", map[string]mmdbtype.Map{
		"192.0.2.0/24":    geoip2Country("DE", "EU"),
		"198.51.100.0/24": geoip2Country("US", "NA"),
		"2001:db8::/32":   geoip2Country("JP", ""), // no continent: table fills it
	})
	writeMMDB(t, filepath.Join(dir, "city.mmdb"), "GeoLite2-City", map[string]mmdbtype.Map{
		"192.0.2.0/26": {"city": mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Berlin")}}, "country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}},
	})
	writeMMDB(t, filepath.Join(dir, "asn.mmdb"), "GeoLite2-ASN", map[string]mmdbtype.Map{
		"192.0.2.0/25":    asnRecord(64500, "Example, Inc."),
		"198.51.100.0/23": asnRecord(64501, "Documentation Transit Ltd"),
		"2001:db8::/48":   asnRecord(64502, "Example V6 Networks"),
	})
	writeMMDB(t, filepath.Join(dir, "ipl-country.mmdb"), "country", map[string]mmdbtype.Map{
		"192.0.2.0/24":    {"country_code": mmdbtype.String("DE")},
		"198.51.100.0/24": {"country_code": mmdbtype.String("US")},
		"2001:db8::/32":   {"country_code": mmdbtype.String("JP")},
	})
	writeMMDB(t, filepath.Join(dir, "ipl-city.mmdb"), "city", map[string]mmdbtype.Map{
		"192.0.2.0/26": {"city": mmdbtype.String("Berlin"), "country_code": mmdbtype.String("DE")},
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "asn-ipv4.csv"), []byte(asnCSV4), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "asn-ipv6.csv"), []byte(asnCSV6), 0o600))
	b.paths = geo.Paths{Country: filepath.Join(dir, "country.mmdb"), City: filepath.Join(dir, "city.mmdb"), ASN: filepath.Join(dir, "asn.mmdb")}
	b.ipl = geo.Paths{Country: filepath.Join(dir, "ipl-country.mmdb"), City: filepath.Join(dir, "ipl-city.mmdb"),
		ASNCSV: []string{filepath.Join(dir, "asn-ipv4.csv"), filepath.Join(dir, "asn-ipv6.csv")}}
	return b
}

func open(t testing.TB, p geo.Paths) *geo.DB {
	t.Helper()
	db, err := geo.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func TestLookupBothShapes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, paths := range map[string]geo.Paths{"geoip2+asn-mmdb": b.paths, "ip-location-db+asn-csv": b.ipl} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := open(t, paths)
			for _, tc := range []struct {
				addr string
				want geo.Record
			}{
				{"192.0.2.10", geo.Record{Country: "DE", Continent: "EU", City: "Berlin", ASN: 64500, Org: "Example, Inc.", Network: netip.MustParsePrefix("192.0.2.0/26")}},
				{"192.0.2.100", geo.Record{Country: "DE", Continent: "EU", ASN: 64500, Org: "Example, Inc.", Network: netip.MustParsePrefix("192.0.2.64/26")}},
				{"192.0.2.200", geo.Record{Country: "DE", Continent: "EU", Network: netip.MustParsePrefix("192.0.2.128/25")}},
				{"::ffff:198.51.100.1", geo.Record{Country: "US", Continent: "NA", ASN: 64501, Org: "Documentation Transit Ltd", Network: netip.MustParsePrefix("198.51.100.0/24")}},
				{"198.51.101.1", geo.Record{ASN: 64501, Org: "Documentation Transit Ltd", Network: netip.MustParsePrefix("198.51.100.0/23")}},
				{"2001:db8::1", geo.Record{Country: "JP", Continent: "AS", ASN: 64502, Org: "Example V6 Networks", Network: netip.MustParsePrefix("2001:db8::/48")}},
			} {
				got, ok := db.Lookup(netip.MustParseAddr(tc.addr))
				require.True(t, ok, tc.addr)
				require.Equal(t, tc.want, got, tc.addr)
			}
			_, ok := db.Lookup(netip.MustParseAddr("203.0.113.1"))
			require.False(t, ok)
		})
	}
}

// collect gathers Networks output grouped by (country, asn, org) so two
// databases that cut the same space differently compare equal.
func collect(t *testing.T, db *geo.DB) (map[string][]netip.Prefix, []geo.GeoNet) {
	t.Helper()
	builders := map[string]*netipx.IPSetBuilder{}
	var all netipx.IPSetBuilder
	var nets []geo.GeoNet
	require.NoError(t, db.Networks(func(n geo.GeoNet) error {
		nets = append(nets, n)
		key := fmt.Sprintf("%s/%s/%d/%s", n.Country, n.Continent, n.ASN, n.Org)
		if builders[key] == nil {
			builders[key] = &netipx.IPSetBuilder{}
		}
		before, _ := all.IPSet()
		require.False(t, before.OverlapsPrefix(n.Prefix), "overlap at %s", n.Prefix)
		all.AddPrefix(n.Prefix)
		builders[key].AddPrefix(n.Prefix)
		return nil
	}))
	out := map[string][]netip.Prefix{}
	for k, bld := range builders {
		s, err := bld.IPSet()
		require.NoError(t, err)
		out[k] = s.Prefixes()
	}
	return out, nets
}

func TestNetworksMergedWithASN(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fromMMDB, _ := collect(t, open(t, b.paths))
	fromCSV, nets := collect(t, open(t, b.ipl))
	require.Equal(t, fromMMDB, fromCSV)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/25")}, fromCSV["DE/EU/64500/Example, Inc."])
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}, fromCSV["DE/EU/0/"])
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, fromCSV["US/NA/64501/Documentation Transit Ltd"])
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("2001:db8::/48")}, fromCSV["JP/AS/64502/Example V6 Networks"])
	require.Len(t, fromCSV, 5)

	// The pieces cover exactly the country networks.
	var got, want netipx.IPSetBuilder
	for _, n := range nets {
		got.AddPrefix(n.Prefix)
	}
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"} {
		want.AddPrefix(netip.MustParsePrefix(p))
	}
	gs, _ := got.IPSet()
	ws, _ := want.IPSet()
	require.True(t, gs.Equal(ws))

	// Without ASN data each country network comes out whole.
	var plain []netip.Prefix
	require.NoError(t, open(t, geo.Paths{Country: b.paths.Country}).Networks(func(n geo.GeoNet) error {
		plain = append(plain, n.Prefix)
		return nil
	}))
	require.ElementsMatch(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}, plain)

	stop := fmt.Errorf("stop")
	require.ErrorIs(t, open(t, b.ipl).Networks(func(geo.GeoNet) error { return stop }), stop)
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	empty, err := geo.Open(geo.Paths{})
	require.NoError(t, err, "no files: a DB that knows nothing")
	_, ok := empty.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.False(t, ok)
	require.NoError(t, empty.Networks(func(geo.GeoNet) error { return fmt.Errorf("no networks expected") }))
	_, err = geo.Open(geo.Paths{Country: filepath.Join(b.dir, "missing.mmdb")})
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = geo.Open(geo.Paths{Country: filepath.Join(b.dir, "asn-ipv4.csv")})
	require.ErrorContains(t, err, "geo: open mmdb")
	bad := filepath.Join(b.dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("192.0.2.0,192.0.2.255,64500,ok\n192.0.2.9,nope,1,x\n"), 0o600))
	_, err = geo.Open(geo.Paths{Country: b.paths.Country, ASNCSV: []string{bad}})
	require.ErrorContains(t, err, "line 2")
}

func TestContinentOf(t *testing.T) {
	t.Parallel()
	for country, want := range map[string]string{"US": "NA", "de": "EU", "BR": "SA", "AU": "OC", "ZA": "AF", "CN": "AS", "AQ": "AN", "XX": ""} {
		require.Equal(t, want, geo.ContinentOf(country), country)
	}
}

func TestWatcherReload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	paths := geo.Paths{Country: filepath.Join(b.dir, "live.mmdb")}
	writeMMDB(t, paths.Country, "country", map[string]mmdbtype.Map{"192.0.2.0/24": {"country_code": mmdbtype.String("FR")}})
	w, err := geo.NewWatcher(paths)
	require.NoError(t, err)
	old := w.Current()

	changed, err := w.Reload()
	require.NoError(t, err)
	require.False(t, changed)

	writeMMDB(t, paths.Country, "country", map[string]mmdbtype.Map{"192.0.2.0/24": {"country_code": mmdbtype.String("NL")}})
	// Same size is likely; a later mtime is what marks the new version.
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(paths.Country, later, later))
	changed, err = w.Reload()
	require.NoError(t, err)
	require.True(t, changed)
	rec, ok := w.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, "NL", rec.Country)
	// The replaced DB still answers for readers that hold it.
	rec, ok = old.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, "FR", rec.Country)

	require.NoError(t, os.WriteFile(paths.Country, []byte("garbage"), 0o600))
	changed, err = w.Reload()
	require.Error(t, err)
	require.False(t, changed)
	rec, _ = w.Lookup(netip.MustParseAddr("192.0.2.1"))
	require.Equal(t, "NL", rec.Country, "old DB stays in force")

	require.NoError(t, os.Remove(paths.Country))
	_, err = w.Reload()
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestRealData runs against the files `make geodata` fetches, when
// MUNINN_GEO_DIR points at them.
func TestRealData(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("MUNINN_GEO_DIR")
	if dir == "" {
		t.Skip("MUNINN_GEO_DIR not set")
	}
	paths, err := geo.Discover(dir)
	require.NoError(t, err)
	require.Equal(t, realPaths(dir), paths, "make geodata's files are found by name")
	db := open(t, paths)
	rec, ok := db.Lookup(netip.MustParseAddr("1.1.1.1"))
	require.True(t, ok)
	require.Equal(t, uint32(13335), rec.ASN)
	require.NotEmpty(t, rec.Country)
	require.NotEmpty(t, rec.Continent)
	rec, ok = db.Lookup(netip.MustParseAddr("2001:4860:4860::8888"))
	require.True(t, ok)
	require.Equal(t, uint32(15169), rec.ASN)
	n, missing := 0, map[string]bool{}
	require.NoError(t, db.Networks(func(g geo.GeoNet) error {
		n++
		if g.Continent == "" {
			missing[g.Country] = true
		}
		return nil
	}))
	require.Greater(t, n, 500_000)
	require.Empty(t, missing, "countries without a continent")
}

func realPaths(dir string) geo.Paths {
	return geo.Paths{
		Country: filepath.Join(dir, "geo-whois-asn-country.mmdb"),
		ASNCSV:  []string{filepath.Join(dir, "asn-ipv4.csv"), filepath.Join(dir, "asn-ipv6.csv")},
	}
}

func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	records := map[string]mmdbtype.Map{}
	countries := []string{"DE", "US", "FR", "JP", "BR"}
	var csv []byte
	for i := range 1 << 14 {
		p := fmt.Sprintf("10.%d.%d.0/24", i>>8, i&0xff)
		records[p] = mmdbtype.Map{"country_code": mmdbtype.String(countries[i%len(countries)])}
		csv = fmt.Appendf(csv, "10.%d.%d.0,10.%d.%d.255,%d,Org %d\n", i>>8, i&0xff, i>>8, i&0xff, 64500+i%1000, i%1000)
	}
	country := filepath.Join(dir, "c.mmdb")
	writeMMDB(b, country, "country", records)
	asn := filepath.Join(dir, "asn.csv")
	require.NoError(b, os.WriteFile(asn, csv, 0o600))
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i * 7 % 64), byte(i * 13), byte(i)})
	}
	run := func(b *testing.B, p geo.Paths, addrs []netip.Addr, mustFind bool) {
		db := open(b, p)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, ok := db.Lookup(addrs[i%len(addrs)]); !ok && mustFind {
				b.Fatal("not found")
			}
		}
	}
	b.Run("country", func(b *testing.B) { run(b, geo.Paths{Country: country}, addrs, true) })
	b.Run("country+asncsv", func(b *testing.B) { run(b, geo.Paths{Country: country, ASNCSV: []string{asn}}, addrs, true) })
	if real := os.Getenv("MUNINN_GEO_DIR"); real != "" {
		public := make([]netip.Addr, 1024)
		for i := range public {
			public[i] = netip.AddrFrom4([4]byte{byte(1 + i*37%222), byte(i * 11), byte(i * 5), 1})
		}
		b.Run("real-country+asncsv", func(b *testing.B) { run(b, realPaths(real), public, false) })
	}
}
