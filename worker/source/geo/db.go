// Package geo answers "where is this address and who routes it" from local
// databases: an MMDB country database (GeoIP2/GeoLite2 shape with
// country.iso_code, or ip-location-db shape with country_code), an optional
// MMDB city database, and ASN data from an MMDB ASN database or the
// ip-location-db ASN CSV files (range_start,range_end,asn,org).
package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	maxminddb "github.com/oschwald/maxminddb-golang/v2"
	"go4.org/netipx"
)

// Paths names the database files. Every one is optional (Discover finds
// them in a directory); a DB without any answers nothing. ASN and ASNCSV are
// alternatives: when both are set, ASN wins.
type Paths struct {
	// Country is an MMDB with country (and possibly continent) data.
	Country string
	// City is an optional MMDB with city data.
	City string
	// ASN is an optional MMDB with autonomous_system_number and
	// autonomous_system_organization.
	ASN string
	// ASNCSV are optional ip-location-db ASN CSV files, typically
	// asn-ipv4.csv and asn-ipv6.csv.
	ASNCSV []string
}

func (p Paths) files() []string {
	var out []string
	for _, f := range []string{p.Country, p.City, p.ASN} {
		if f != "" {
			out = append(out, f)
		}
	}
	if p.ASN == "" {
		out = append(out, p.ASNCSV...)
	}
	return out
}

// Record is what is known about one address.
type Record struct {
	Country   string
	Continent string
	City      string
	ASN       uint32
	Org       string
	// Network is the most specific network the answer holds for: every
	// address in it has the same record.
	Network netip.Prefix
}

// GeoNet is one network of the country database with its ASN data.
type GeoNet struct {
	Prefix    netip.Prefix
	Country   string
	Continent string
	ASN       uint32
	Org       string
}

// DB is an open set of databases. It is safe for concurrent use. The files are
// read into memory rather than mapped, so closing or replacing a DB (see
// Watcher) can never pull pages from under a concurrent lookup.
type DB struct {
	country *maxminddb.Reader
	city    *maxminddb.Reader
	asn     *maxminddb.Reader
	asnCSV  asnTable
}

// Open opens the databases named by paths; with none named it returns a DB
// that knows nothing.
func Open(paths Paths) (*DB, error) {
	db := &DB{}
	var err error
	if paths.Country != "" {
		if db.country, err = openMMDB(paths.Country); err != nil {
			return nil, err
		}
	}
	if paths.City != "" {
		if db.city, err = openMMDB(paths.City); err != nil {
			return nil, err
		}
	}
	switch {
	case paths.ASN != "":
		if db.asn, err = openMMDB(paths.ASN); err != nil {
			return nil, err
		}
	case len(paths.ASNCSV) > 0:
		if db.asnCSV, err = loadASNCSV(paths.ASNCSV); err != nil {
			return nil, err
		}
	}
	return db, nil
}

func openMMDB(path string) (*maxminddb.Reader, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geo: open mmdb: %w", err)
	}
	r, err := maxminddb.OpenBytes(buf)
	if err != nil {
		return nil, fmt.Errorf("geo: open mmdb %s: %w", path, err)
	}
	return r, nil
}

// Close releases the databases. Lookups after Close fail.
func (db *DB) Close() error {
	var errs []error
	for _, r := range []*maxminddb.Reader{db.country, db.city, db.asn} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("geo: close: %w", err)
	}
	return nil
}

// names is the GeoIP2 localized-name map.
type names struct {
	EN string `maxminddb:"en"`
}

// mmdbRecord covers the record shapes in use: GeoIP2/GeoLite2 and DB-IP
// (country.iso_code, continent.code, city.names.en,
// autonomous_system_number, autonomous_system_organization), ip-location-db
// (country_code, city as a plain string, the same ASN keys) and IPinfo
// (country and continent as plain codes, or country_code and continent_code
// in IPinfo Lite; asn as "AS64500"; as_name).
type mmdbRecord struct {
	CountryCode string `maxminddb:"country_code"`
	// Country is a map with iso_code (GeoIP2) or a plain code (IPinfo).
	Country           any `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	// Continent is a map with code (GeoIP2) or a plain code (IPinfo).
	Continent     any    `maxminddb:"continent"`
	ContinentCode string `maxminddb:"continent_code"`
	// City is a map (GeoIP2) or a string (ip-location-db).
	City any    `maxminddb:"city"`
	ASN  uint32 `maxminddb:"autonomous_system_number"`
	Org  string `maxminddb:"autonomous_system_organization"`
	// IPASN is IPinfo's asn ("AS64500"); ASName its organisation.
	IPASN  string `maxminddb:"asn"`
	ASName string `maxminddb:"as_name"`
}

// code reads a country or continent field: a map's key (GeoIP2) or a plain
// two-letter code (IPinfo; longer strings are names, as in IPinfo Lite's
// country, and are ignored).
func code(v any, key string) string {
	switch c := v.(type) {
	case map[string]any:
		s, _ := c[key].(string)
		return s
	case string:
		if len(c) == 2 {
			return strings.ToUpper(c)
		}
	}
	return ""
}

func (m *mmdbRecord) country() string {
	if c := code(m.Country, "iso_code"); c != "" {
		return c
	}
	if m.CountryCode != "" {
		return m.CountryCode
	}
	return m.RegisteredCountry.ISOCode
}

func (m *mmdbRecord) continent() string {
	if c := code(m.Continent, "code"); c != "" {
		return c
	}
	if m.ContinentCode != "" {
		return m.ContinentCode
	}
	return ContinentOf(m.country())
}

// asn returns the record's AS number and organisation in either shape.
func (m *mmdbRecord) asn() (uint32, string) {
	if m.ASN != 0 || m.IPASN == "" {
		return m.ASN, m.Org
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(m.IPASN), "AS"), 10, 32)
	if err != nil {
		return 0, ""
	}
	return uint32(n), m.ASName
}

func (m *mmdbRecord) city() string {
	switch c := m.City.(type) {
	case string:
		return c
	case map[string]any:
		if n, ok := c["names"].(map[string]any); ok {
			if en, ok := n["en"].(string); ok {
				return en
			}
		}
	}
	return ""
}

// narrower returns whichever of a and b is more specific (valid ones only).
func narrower(a, b netip.Prefix) netip.Prefix {
	if !a.IsValid() || (b.IsValid() && b.Bits() > a.Bits()) {
		return b
	}
	return a
}

// Lookup returns what the databases know about addr. ok is false when no
// database has data for it. Errors from a corrupt database count as no data:
// the caller of a lookup on a hot path has nothing better to do with them, and
// Open already checked the files' metadata.
func (db *DB) Lookup(addr netip.Addr) (Record, bool) {
	addr = addr.Unmap()
	var rec Record
	found := false
	if db.country != nil {
		if res := db.country.Lookup(addr); res.Found() {
			var m mmdbRecord
			if res.Decode(&m) == nil {
				found = true
				rec.Country, rec.Continent, rec.City = m.country(), m.continent(), m.city()
				rec.ASN, rec.Org = m.asn()
				rec.Network = res.Prefix()
			}
		}
	}
	if db.city != nil {
		res := db.city.Lookup(addr)
		// A miss still bounds the network: the database has an empty
		// node there, so the answer differs elsewhere in the wider prefix.
		rec.Network = narrower(rec.Network, res.Prefix())
		if res.Found() {
			var m mmdbRecord
			if res.Decode(&m) == nil {
				found = true
				rec.City = m.city()
				if rec.Country == "" {
					rec.Country, rec.Continent = m.country(), m.continent()
				}
			}
		}
	}
	switch {
	case db.asn != nil:
		res := db.asn.Lookup(addr)
		rec.Network = narrower(rec.Network, res.Prefix())
		if res.Found() {
			var m mmdbRecord
			if res.Decode(&m) == nil {
				found = true
				rec.ASN, rec.Org = m.asn()
			}
		}
	case db.asnCSV != nil:
		if r, ok := db.asnCSV.lookup(addr); ok {
			found = true
			rec.ASN, rec.Org = r.asn, r.org
			within := rec.Network
			if !within.IsValid() {
				within = netip.PrefixFrom(addr, 0)
			}
			rec.Network = containing(addr, r.start, r.end, within)
		}
	}
	if !found {
		return Record{}, false
	}
	return rec, true
}

// Networks calls yield for every network of the country database, split
// where the ASN data changes so each GeoNet has one country and one ASN.
// Networks without country data are skipped; iteration stops at the first
// error from yield, which Networks returns.
func (db *DB) Networks(yield func(GeoNet) error) error {
	if db.country == nil {
		return db.asnNetworks(yield)
	}
	for res := range db.country.Networks() {
		if err := res.Err(); err != nil {
			return fmt.Errorf("geo: networks: %w", err)
		}
		var m mmdbRecord
		if err := res.Decode(&m); err != nil {
			return fmt.Errorf("geo: networks: decode %s: %w", res.Prefix(), err)
		}
		base := GeoNet{Prefix: res.Prefix(), Country: m.country(), Continent: m.continent()}
		base.ASN, base.Org = m.asn()
		if base.Country == "" {
			continue
		}
		if err := db.splitASN(base, yield); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) splitASN(base GeoNet, yield func(GeoNet) error) error {
	switch {
	case db.asnCSV != nil:
		return db.asnCSV.split(base.Prefix, func(q netip.Prefix, r asnRange, ok bool) error {
			n := base
			n.Prefix = q
			if ok {
				n.ASN, n.Org = r.asn, r.org
			}
			return yield(n)
		})
	case db.asn != nil:
		// One lookup settles the common case: the ASN network holds the
		// whole country network (or nothing covers any of it).
		if res := db.asn.Lookup(base.Prefix.Addr()); res.Prefix().IsValid() && res.Prefix().Bits() <= base.Prefix.Bits() {
			return yield(withASN(base, base.Prefix, res))
		}
		for res := range db.asn.NetworksWithin(base.Prefix, maxminddb.IncludeNetworksWithoutData()) {
			if err := res.Err(); err != nil {
				return fmt.Errorf("geo: networks: asn within %s: %w", base.Prefix, err)
			}
			if err := yield(withASN(base, res.Prefix(), res)); err != nil {
				return err
			}
		}
		return nil
	default:
		return yield(base)
	}
}

func withASN(base GeoNet, p netip.Prefix, res maxminddb.Result) GeoNet {
	n := base
	n.Prefix = p
	if res.Found() {
		var m mmdbRecord
		if res.Decode(&m) == nil {
			n.ASN, n.Org = m.asn()
		}
	}
	return n
}

// asnNetworks is Networks without country data: every network of the ASN
// database (or range of the ASN CSVs) with no country, so asn and org
// conditions still work.
func (db *DB) asnNetworks(yield func(GeoNet) error) error {
	switch {
	case db.asn != nil:
		for res := range db.asn.Networks() {
			if err := res.Err(); err != nil {
				return fmt.Errorf("geo: networks: %w", err)
			}
			n := withASN(GeoNet{}, res.Prefix(), res)
			if n.ASN == 0 {
				continue
			}
			if err := yield(n); err != nil {
				return err
			}
		}
	case db.asnCSV != nil:
		for _, r := range db.asnCSV {
			for _, p := range netipx.IPRangeFrom(r.start, r.end).Prefixes() {
				if err := yield(GeoNet{Prefix: p, ASN: r.asn, Org: r.org}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
