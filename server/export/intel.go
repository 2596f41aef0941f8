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
// (documentation and RFC 1918 networks are data too), IPv4 aliasing off
// (so a stored 6to4 or Teredo prefix is inserted rather than refused); one
// map per stored prefix with GeoIP2-named geo/ASN keys and muninn's view
// under "muninn". Prefixes are inserted broad first, so the most specific
// stored prefix answers for an address, as GET /ips/{address} does.
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
	for _, i := range order {
		r := records[i]
		n := &net.IPNet{IP: r.Prefix.Addr().AsSlice(), Mask: net.CIDRMask(r.Prefix.Bits(), r.Prefix.Addr().BitLen())}
		if err := tree.Insert(n, mmdbRecord(r)); err != nil {
			return nil, fmt.Errorf("export: mmdb: insert %s: %w", r.Prefix, err)
		}
	}
	return tree, nil
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

// SuricataMaxCategory is the highest category id Suricata's iprep takes.
const SuricataMaxCategory = 60

// SuricataCategories numbers tags as iprep categories: the first 60 tags in
// the order given, from 1. Tags past the 60th get no category.
func SuricataCategories(tags []string) map[string]int {
	out := map[string]int{}
	for i, t := range tags {
		if i == SuricataMaxCategory {
			break
		}
		out[t] = i + 1
	}
	return out
}

// WriteSuricataCategories writes categories.txt: `id,short_name,description`
// lines (Suricata ip-reputation-format). A short name is the tag itself; a
// comma or newline in a description becomes a space.
func WriteSuricataCategories(w io.Writer, tags []string, descriptions map[string]string) error {
	cats := SuricataCategories(tags)
	for _, t := range tags {
		id, ok := cats[t]
		if !ok {
			break
		}
		desc := strings.NewReplacer(",", " ", "\n", " ", "\r", " ").Replace(descriptions[t])
		if desc == "" {
			desc = t
		}
		if _, err := fmt.Fprintf(w, "%d,%s,%s\n", id, t, desc); err != nil {
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
