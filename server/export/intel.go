package export

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go4.org/netipx"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
)

// Record is one stored prefix as the exports see it: its effective view
// (from the one resolver, through the index), the most specific geo network
// containing it, and for a single address its reverse-DNS name.
type Record struct {
	Prefix netip.Prefix
	View   resolve.View
	Geo    index.GeoNet
	HasGeo bool
	RDNS   string
	// Score is the view's 0–100 score (the API's Score of its classification).
	Score int
}

// MMDBType is the database_type of the MMDB export. It names no GeoIP2
// type on purpose: the records are not GeoIP2-City shaped (integrations.md §2).
const MMDBType = "muninn"

// MMDB builds the MaxMind DB of records (integrations.md §2): an IPv6 tree
// (IPv4 answered under ::/96), record size 28, reserved networks allowed
// (documentation and RFC 1918 networks are data too); one map per stored
// prefix with GeoIP2-named geo/ASN keys and muninn's view under "muninn".
// Prefixes are inserted broad first, so the most specific stored prefix
// answers for an address, as GET /ips/{address} does.
//
// IPv4 lives at ::/96 in the tree, and the API reads an IPv4-mapped address
// (::ffff:a.b.c.d) as the IPv4 address, so:
//   - every IPv4 record is also written at ::ffff:0:0/96 (what mmdbwriter's
//     IPv4 aliasing does for that network), so an IPv4 address looked up in
//     its IPv6 form finds its record;
//   - an IPv6 prefix is written without ::/96 and ::ffff:0:0/96 (one inside
//     them is left out), so IPv6 data never overwrites IPv4 data.
//
// mmdbwriter's own aliasing stays off: it would also alias 6to4 (2002::/16)
// and Teredo (2001::/32) onto IPv4 and refuse stored prefixes there, where
// GET /ips answers the stored IPv6 prefix.
func MMDB(records []Record, built time.Time) (*mmdbwriter.Tree, error) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            MMDBType,
		Description:             map[string]string{"en": "muninn: the effective view of every stored prefix"},
		Languages:               []string{"en"},
		IPVersion:               6,
		RecordSize:              28,
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
		BuildEpoch:              built.Unix(),
	})
	if err != nil {
		return nil, fmt.Errorf("export: mmdb: %w", err)
	}
	order := make([]int, len(records))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return records[a].Prefix.Bits() - records[b].Prefix.Bits() + 128*(boolInt(records[a].Prefix.Addr().Is6())-boolInt(records[b].Prefix.Addr().Is6()))
	})
	insert := func(p netip.Prefix, v mmdbtype.DataType) error {
		n := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := tree.Insert(n, v); err != nil {
			return fmt.Errorf("export: mmdb: insert %s: %w", p, err)
		}
		return nil
	}
	for _, i := range order {
		r := records[i]
		v := mmdbRecord(r)
		for _, p := range mmdbNetworks(r.Prefix) {
			if err := insert(p, v); err != nil {
				return nil, err
			}
		}
	}
	return tree, nil
}

// The IPv6 networks an MMDB gives to IPv4: where the tree keeps it, and the
// IPv4-mapped addresses.
var (
	ipv4Root   = netip.MustParsePrefix("::/96")
	ipv4Mapped = netip.MustParsePrefix("::ffff:0:0/96")
)

// mmdbNetworks returns where in the tree p's record goes: an IPv4 prefix
// as itself and as its IPv4-mapped form; an IPv6 prefix without the two
// IPv4 networks (nothing for one inside them).
func mmdbNetworks(p netip.Prefix) []netip.Prefix {
	if p.Addr().Is4() {
		a := p.Addr().As4()
		mapped := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]})
		return []netip.Prefix{p, netip.PrefixFrom(mapped, 96+p.Bits())}
	}
	if !p.Overlaps(ipv4Root) && !p.Overlaps(ipv4Mapped) {
		return []netip.Prefix{p}
	}
	var b netipx.IPSetBuilder
	b.AddPrefix(p)
	b.RemovePrefix(ipv4Root)
	b.RemovePrefix(ipv4Mapped)
	set, err := b.IPSet()
	if err != nil {
		return nil // cannot happen: p is valid
	}
	return set.Prefixes()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func strs(ss []string) mmdbtype.Slice {
	out := make(mmdbtype.Slice, len(ss))
	for i, s := range ss {
		out[i] = mmdbtype.String(s)
	}
	return out
}

// mmdbRecord is the record of r: GeoIP2 key names for geo and ASN, and
// muninn's view under "muninn".
func mmdbRecord(r Record) mmdbtype.Map {
	v := r.View
	sources := v.Sources
	if sources == nil {
		sources = []string{}
	}
	m := mmdbtype.Map{
		"classification": mmdbtype.String(v.Classification),
		"score":          mmdbtype.Uint16(r.Score),
		"tags":           strs(v.TagNames()),
		"sources":        strs(sources),
		"network":        mmdbtype.String(r.Prefix.String()),
		"sightings":      mmdbtype.Uint64(max(v.Sightings, 0)),
	}
	if !v.FirstSeen.IsZero() {
		m["first_seen"] = mmdbtype.String(v.FirstSeen.UTC().Format(time.RFC3339))
		m["last_seen"] = mmdbtype.String(v.LastSeen.UTC().Format(time.RFC3339))
	}
	if v.Note != "" {
		m["note"] = mmdbtype.String(v.Note)
	}
	if r.RDNS != "" {
		m["rdns"] = mmdbtype.String(r.RDNS)
	}
	rec := mmdbtype.Map{"muninn": m}
	if r.HasGeo {
		g := r.Geo
		if g.Country != "" {
			rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(g.Country)}
		}
		if g.Continent != "" {
			rec["continent"] = mmdbtype.Map{"code": mmdbtype.String(g.Continent)}
		}
		if g.City != "" {
			rec["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(g.City)}}
		}
		if g.ASN != 0 {
			rec["autonomous_system_number"] = mmdbtype.Uint32(g.ASN)
			rec["autonomous_system_organization"] = mmdbtype.String(g.Org)
		}
	}
	return rec
}

// ZeekHeader is the first line of a Zeek intel file: the Input Framework's
// `#fields` line, TAB-separated (zeek-docs frameworks/intel.rst).
const ZeekHeader = "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url\n"

// zeekField makes s one Zeek field: no TAB or newline inside, "-" (unset)
// when empty.
func zeekField(s string) string {
	s = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
	if s == "" {
		return "-"
	}
	return s
}

// WriteZeekRow writes r as one Zeek intel row: Intel::ADDR for a single
// address, Intel::SUBNET for a network; meta.source "muninn", meta.desc
// the classification, score and tags, meta.url the address page under
// baseURL ("-" when baseURL is empty).
func WriteZeekRow(w io.Writer, r Record, baseURL string) error {
	typ, indicator := "Intel::SUBNET", r.Prefix.String()
	if r.Prefix.IsSingleIP() {
		typ, indicator = "Intel::ADDR", r.Prefix.Addr().String()
	}
	desc := fmt.Sprintf("%s score=%d", r.View.Classification, r.Score)
	if tags := r.View.TagNames(); len(tags) > 0 {
		desc += " tags=" + strings.Join(tags, ",")
	}
	url := ""
	if baseURL != "" {
		if r.Prefix.IsSingleIP() {
			url = strings.TrimRight(baseURL, "/") + "/ui/ips/" + r.Prefix.Addr().String()
		} else {
			url = strings.TrimRight(baseURL, "/") + "/ui/networks/" + r.Prefix.Addr().String() + "/" + fmt.Sprint(r.Prefix.Bits())
		}
	}
	_, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", indicator, typ, "muninn", zeekField(desc), zeekField(url))
	return err
}

// WriteSuricataCategories writes categories.txt: `id,short_name,description`
// lines (Suricata ip-reputation-format), in id order, for the tags of cats
// (tag name → category id, 1 to 60: store.SuricataCategories keeps them
// stable). A short name is the tag itself; a comma or newline in a
// description becomes a space.
func WriteSuricataCategories(w io.Writer, cats map[string]int, descriptions map[string]string) error {
	tags := make([]string, 0, len(cats))
	for t := range cats {
		tags = append(tags, t)
	}
	slices.SortFunc(tags, func(a, b string) int { return cats[a] - cats[b] })
	for _, t := range tags {
		desc := strings.NewReplacer(",", " ", "\n", " ", "\r", " ").Replace(descriptions[t])
		if desc == "" {
			desc = t
		}
		if _, err := fmt.Fprintf(w, "%d,%s,%s\n", cats[t], t, desc); err != nil {
			return err
		}
	}
	return nil
}

// SuricataScore scales a 0–100 score to iprep's 1–127 (0 is "no data" there).
func SuricataScore(score int) int {
	return max(1, min(127, int(math.Round(float64(score)*127/100))))
}

// WriteSuricataRep writes r's iprep lines: `ip_or_cidr,category,score`, one
// per tag that has a category (Suricata ip-reputation-format). A benign
// record (score 0) writes nothing: iprep's 0 means no data.
func WriteSuricataRep(w io.Writer, r Record, cats map[string]int) error {
	if r.Score == 0 {
		return nil
	}
	score := SuricataScore(r.Score)
	for _, t := range r.View.TagNames() {
		id, ok := cats[t]
		if !ok {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s,%d,%d\n", r.Prefix, id, score); err != nil {
			return err
		}
	}
	return nil
}

// WriteSuricataDataset writes r as a line of a Suricata `type ip` dataset
// file (one address a line, IPv4 or IPv6, OISF datasets.rst) when it is a
// single address that is not benign; datasets match exactly, so networks
// are left out (the iprep file carries them).
func WriteSuricataDataset(w io.Writer, r Record) error {
	if !r.Prefix.IsSingleIP() || r.Score == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "%s\n", r.Prefix.Addr())
	return err
}
