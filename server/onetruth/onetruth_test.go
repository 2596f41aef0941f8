package onetruth_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/server/resolve"
)

// seedOf returns the seed of the run: MUNINN_ONETRUTH_SEED when set (to replay a
// failure), else a fresh one.
func seedOf(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv("MUNINN_ONETRUTH_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "MUNINN_ONETRUTH_SEED")
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// TestOneTruth builds a random universe through the API in rounds and checks
// after each round that every output agrees with the resolver over what
// PostgreSQL holds. Replay a failure with MUNINN_ONETRUTH_SEED=<the logged seed>.
func TestOneTruth(t *testing.T) {
	t.Parallel()
	seed := seedOf(t)
	t.Logf("seed %d (replay with MUNINN_ONETRUTH_SEED=%d)", seed, seed)
	s := startServer(t)
	u := &universe{r: rand.New(rand.NewPCG(seed, seed^0x6d756e696e6e))}

	s.send(t, s.admin, http.MethodPut, "/api/v1/lists/"+listName, "application/json",
		jsonOf(t, map[string]string{"selector": condText(listConds)}), http.StatusOK)
	rulesets := testRulesets()
	var names []string
	for _, rs := range rulesets {
		s.send(t, s.admin, http.MethodPut, "/api/v1/rulesets/"+rs.name, "text/plain", []byte(rs.text()), http.StatusCreated)
		names = append(names, rs.name)
	}
	var bouncer struct {
		Key string `json:"key"`
	}
	out := s.send(t, s.admin, http.MethodPost, "/api/v1/bouncers", "application/json",
		jsonOf(t, map[string]any{"name": "onetruth", "rulesets": names}), http.StatusCreated)
	require.NoError(t, json.Unmarshal(out, &bouncer))

	held := map[string]seenRender{} // the renders a bouncer holds, per ruleset
	// A second muninn serve on the same database: it must converge on the
	// same answers and the same render versions.
	peer := s.peer(t)
	peerHeld := map[string]seenRender{}
	flowsSeen := map[flowPair]flowTraffic{} // the flow aggregates written
	for round := range 7 {
		// Every third round is quiet: only the clock moves, so what changes
		// is what expires, and only the index's expiry publishes it.
		quiet := round%3 == 2
		if round > 0 {
			before := loadModel(t, s.st, s.clock.now()).assertions()
			s.advance(time.Duration(30+u.r.IntN(120))*time.Minute, peer)
			t.Logf("round %d (quiet %v): %d of %d live assertions expired", round, quiet, before-loadModel(t, s.st, s.clock.now()).assertions(), before)
		}
		now := s.clock.now()
		if !quiet {
			s.ingest(t, u.observations(40+u.r.IntN(60), now))
			u.overrides(t, s, 3+u.r.IntN(6), now)
			u.flows(t, s, u.addresses(12), flowsSeen)
		}
		if !quiet && round > 0 && u.r.IntN(2) == 0 {
			// A changed ruleset: its next render is compiled in full.
			rs := &rulesets[u.r.IntN(len(rulesets))]
			k := 1 + u.r.IntN(len(rs.rules)-1)
			rs.rules = slices.Concat(rs.rules[k:], rs.rules[:k])
			s.send(t, s.admin, http.MethodPut, "/api/v1/rulesets/"+rs.name, "text/plain", []byte(rs.text()), http.StatusOK)
			t.Logf("round %d: ruleset %s is now:\n%s", round, rs.name, rs.text())
		}
		s.settle(t)
		peer.settle(t)
		m := loadModel(t, s.st, s.clock.now())
		b := s.browser(t) // a new session: the clock may have outrun the last one
		addrs := u.addresses(60)
		t.Logf("round %d: %d stored prefixes (%d exist), %d addresses", round, len(m.prefixes), len(m.existing()), len(addrs))
		c := &checker{t: t, s: s, m: m, round: round, rulesets: slices.Clone(rulesets)}
		t.Run(fmt.Sprintf("round%d/ips", round), func(t *testing.T) { c.with(t).ips(addrs) })
		t.Run(fmt.Sprintf("round%d/networks", round), func(t *testing.T) { c.with(t).networks() })
		t.Run(fmt.Sprintf("round%d/search", round), func(t *testing.T) { c.with(t).search() })
		t.Run(fmt.Sprintf("round%d/search-filters", round), func(t *testing.T) { c.with(t).searchCombos(u.r, u.pool, 12) })
		t.Run(fmt.Sprintf("round%d/exports", round), func(t *testing.T) { c.with(t).exports(addrs) })
		t.Run(fmt.Sprintf("round%d/explain", round), func(t *testing.T) { c.with(t).explain(addrs) })
		t.Run(fmt.Sprintf("round%d/render", round), func(t *testing.T) { c.with(t).renders(addrs, held) })
		t.Run(fmt.Sprintf("round%d/lists", round), func(t *testing.T) { c.with(t).list() })
		t.Run(fmt.Sprintf("round%d/crowdsec", round), func(t *testing.T) { c.with(t).crowdsec(bouncer.Key) })
		t.Run(fmt.Sprintf("round%d/bouncer-render", round), func(t *testing.T) { c.with(t).bouncerRender(bouncer.Key) })
		t.Run(fmt.Sprintf("round%d/ui-pages", round), func(t *testing.T) { c.with(t).uiPages(b, addrs[:20]) })
		t.Run(fmt.Sprintf("round%d/flows", round), func(t *testing.T) { c.with(t).flows(b, flowsSeen) })
		pc := &checker{t: t, s: peer, m: m, round: round, rulesets: c.rulesets}
		t.Run(fmt.Sprintf("round%d/peer-ips", round), func(t *testing.T) { pc.with(t).ips(addrs) })
		t.Run(fmt.Sprintf("round%d/peer-render", round), func(t *testing.T) {
			pc.with(t).renders(addrs, peerHeld)
			for _, rs := range c.rulesets {
				require.Equal(t, held[rs.name].version, peerHeld[rs.name].version, "render %s: both processes hold the same content; the versions must agree", rs.name)
			}
		})
		targets := []netip.Prefix{}
		for _, a := range addrs[:8] {
			targets = append(targets, addrPrefix(a))
		}
		for range 4 {
			targets = append(targets, u.newPrefix().Masked())
		}
		t.Run(fmt.Sprintf("round%d/ui-impact", round), func(t *testing.T) { c.with(t).uiImpact(b, u.r, targets) })
	}
}

// checker compares the outputs with the model of one round.
type checker struct {
	t        *testing.T
	s        *server
	m        *model
	round    int
	rulesets []ruleset
	failed   int
}

// maxPrinted bounds the disagreements one check prints; the rest are counted.
const maxPrinted = 6

func (c *checker) with(t *testing.T) *checker {
	cc := &checker{t: t, s: c.s, m: c.m, round: c.round, rulesets: c.rulesets}
	t.Cleanup(func() {
		if cc.failed > maxPrinted {
			t.Logf("%d disagreements in all, the first %d printed", cc.failed, maxPrinted)
		}
	})
	return cc
}

// errorf reports a disagreement, printing only the first maxPrinted of a check.
func (c *checker) errorf(format string, args ...any) {
	c.t.Helper()
	c.failed++
	if c.failed <= maxPrinted {
		c.t.Errorf(format, args...)
		return
	}
	c.t.Fail()
}

func addrPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// ips checks GET /ips/{ip} against the model's view of each address.
func (c *checker) ips(addrs []netip.Addr) {
	for _, a := range addrs {
		want := c.m.view(addrPrefix(a))
		status, body := c.s.get(c.t, "/api/v1/ips/"+a.String())
		if !want.Exists() {
			if status != http.StatusNotFound {
				c.errorf("GET /ips/%s: want 404 (nothing live contains it), got %d: %s", a, status, body)
			}
			continue
		}
		if status != http.StatusOK {
			c.errorf("GET /ips/%s: want 200 with model view %s, got %d: %s", a, viewString(want), status, body)
			continue
		}
		var got apiView
		require.NoError(c.t, json.Unmarshal(body, &got))
		if d := viewDiff(got, want); len(d) > 0 {
			c.errorf("GET /ips/%s disagrees with the model:\n  %s\n  model view: %s\n  answer: %s", a, strings.Join(d, "\n  "), viewString(want), body)
		}
	}
}

// networks checks GET /networks/{p} for every stored prefix: a ghost prefix
// (nothing live, no sighting) answers what its containing prefixes say, and 404
// when none exists.
func (c *checker) networks() {
	for _, p := range c.m.prefixes {
		want := c.m.view(p.Prefix)
		status, body := c.s.get(c.t, networkPath(p.Prefix))
		if !want.Exists() {
			if status != http.StatusNotFound {
				c.errorf("GET /networks/%s: want 404 (ghost prefix, nothing live contains it), got %d: %s", p.Prefix, status, body)
			}
			continue
		}
		if status != http.StatusOK {
			c.errorf("GET /networks/%s: want 200 with model view %s, got %d: %s", p.Prefix, viewString(want), status, body)
			continue
		}
		var got apiView
		require.NoError(c.t, json.Unmarshal(body, &got))
		if d := viewDiff(got, want); len(d) > 0 {
			c.errorf("GET /networks/%s disagrees with the model:\n  %s\n  model view: %s\n  answer: %s", p.Prefix, strings.Join(d, "\n  "), viewString(want), body)
		}
	}
}

// expectedRows maps every existing stored prefix to its view's summary.
func (c *checker) expectedRows(withNote bool, keep func(resolve.View) bool) map[netip.Prefix]summary {
	out := map[netip.Prefix]summary{}
	for _, p := range c.m.existing() {
		v := c.m.view(p)
		if keep == nil || keep(v) {
			// Only the ClickHouse rows, which have no notes, have no sightings.
			out[p] = summaryOf(v, withNote, withNote)
		}
	}
	return out
}

// compareRows checks that an output's rows are exactly the expected ones.
func (c *checker) compareRows(what string, got, want map[netip.Prefix]summary) {
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			c.errorf("%s: missing row %s; model view %s", what, p, w)
		case g.normalized().String() != w.normalized().String():
			c.errorf("%s: row %s disagrees with the model:\n  model: %s\n  row:   %s", what, p, w.normalized(), g.normalized())
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			stored := "not stored"
			if c.m.stored(p) {
				stored = "a ghost prefix (nothing live)"
			}
			c.errorf("%s: unexpected row %s %s: it is %s; model view of it %s", what, p, g, stored, viewString(c.m.view(p)))
		}
	}
}

// searchItem is the contract's SearchItem.
type searchItem struct {
	Prefix         string   `json:"prefix"`
	Classification string   `json:"classification"`
	Tags           []string `json:"tags"`
	Sources        []string `json:"sources"`
	Note           string   `json:"note"`
	FirstSeen      string   `json:"first_seen"`
	LastSeen       string   `json:"last_seen"`
	// Sightings is -1 in an output without it (ClickHouse).
	Sightings int64 `json:"sightings"`
}

func (i searchItem) summary(t *testing.T) summary {
	return summary{Classification: i.Classification, Tags: i.Tags, Sources: i.Sources, Note: i.Note,
		Seen: seenOf(parseTime(t, i.FirstSeen), parseTime(t, i.LastSeen), i.Sightings, i.Sightings >= 0)}
}

// csvItem reads a row of the CSV export: prefix, classification, tags,
// sources, note, country, asn, as_org, first_seen, last_seen, sightings,
// passive_dns (enrichment, not the resolver's: api's TestPassiveDNSOneTruth).
func csvItem(t *testing.T, r []string) searchItem {
	require.Len(t, r, 12, "csv row %q", r)
	n, err := strconv.ParseInt(r[10], 10, 64)
	require.NoError(t, err, "csv sightings %q", r[10])
	return searchItem{Prefix: r[0], Classification: r[1], Tags: splitList(r[2]), Sources: splitList(r[3]), Note: r[4],
		FirstSeen: r[8], LastSeen: r[9], Sightings: n}
}

// rowsOf turns search items into rows keyed by prefix; a prefix listed twice is an error.
func (c *checker) rowsOf(what string, items []searchItem) map[netip.Prefix]summary {
	out := map[netip.Prefix]summary{}
	for _, it := range items {
		p, err := netip.ParsePrefix(it.Prefix)
		require.NoError(c.t, err, "%s: prefix %q", what, it.Prefix)
		if _, dup := out[p]; dup {
			c.errorf("%s: prefix %s listed twice", what, p)
		}
		out[p] = it.summary(c.t)
	}
	return out
}

// search checks GET /ips?tag=T and ?classification=C, page by page.
func (c *checker) search() {
	for _, tag := range tagNames {
		want := c.expectedRows(true, func(v resolve.View) bool { return v.HasTag(tag) })
		c.compareRows("search tag="+tag, c.rowsOf("search tag="+tag, c.searchAll("tag="+tag)), want)
	}
	for _, cl := range resolve.Classifications {
		want := c.expectedRows(true, func(v resolve.View) bool { return v.Classification == cl })
		c.compareRows("search classification="+cl, c.rowsOf("search classification="+cl, c.searchAll("classification="+cl)), want)
	}
}

// searchCombos checks n random searches that combine filters (tag,
// classification, source with or without a trailing *, within), through
// pages of a random size, with the rows in address order; and the CSV export
// with the same filters.
func (c *checker) searchCombos(r *rand.Rand, pool []netip.Prefix, n int) {
	for range n {
		q := url.Values{}
		var keep []func(netip.Prefix, resolve.View) bool
		if r.IntN(2) == 0 {
			tag := tagNames[r.IntN(len(tagNames))]
			q.Set("tag", tag)
			keep = append(keep, func(_ netip.Prefix, v resolve.View) bool { return v.HasTag(tag) })
		}
		if r.IntN(2) == 0 {
			cl := resolve.Classifications[r.IntN(len(resolve.Classifications))]
			q.Set("classification", cl)
			keep = append(keep, func(_ netip.Prefix, v resolve.View) bool { return v.Classification == cl })
		}
		if r.IntN(2) == 0 {
			pattern := []string{"ingest:s1", "ingest:s2", "ingest:*", "manual:*", "manual:writer", "ingest:s"}[r.IntN(6)]
			q.Set("source", pattern)
			keep = append(keep, func(_ netip.Prefix, v resolve.View) bool {
				return slices.ContainsFunc(v.Sources, func(src string) bool {
					if p, ok := strings.CutSuffix(pattern, "*"); ok {
						return strings.HasPrefix(src, p)
					}
					return src == pattern
				})
			})
		}
		if r.IntN(2) == 0 {
			w := bases[r.IntN(len(bases))]
			if len(pool) > 0 && r.IntN(2) == 0 {
				w = pool[r.IntN(len(pool))]
			}
			q.Set("within", w.String())
			keep = append(keep, func(p netip.Prefix, _ resolve.View) bool {
				return p.Bits() >= w.Bits() && w.Contains(p.Addr())
			})
		}
		want := map[netip.Prefix]summary{}
		for _, p := range c.m.existing() {
			v := c.m.view(p)
			if !slices.ContainsFunc(keep, func(k func(netip.Prefix, resolve.View) bool) bool { return !k(p, v) }) {
				want[p] = summaryOf(v, true, true)
			}
		}
		query := q.Encode()
		items := c.searchPages(query, 1+r.IntN(20))
		c.compareRows("search "+query, c.rowsOf("search "+query, items), want)
		for i := 1; i < len(items); i++ {
			a, b := netip.MustParsePrefix(items[i-1].Prefix), netip.MustParsePrefix(items[i].Prefix)
			if !addrOrderLess(a, b) {
				c.errorf("search %s: %s is listed before %s, against address order", query, a, b)
			}
		}
		recs, err := csv.NewReader(bytes.NewReader(c.s.mustGet(c.t, "/api/v1/export/ips.csv?"+query))).ReadAll()
		require.NoError(c.t, err)
		var rows []searchItem
		for _, r := range recs[1:] {
			rows = append(rows, csvItem(c.t, r))
		}
		c.compareRows("export ips.csv?"+query, c.rowsOf("export ips.csv?"+query, rows), want)
	}
}

// addrOrderLess is the order of search pages: IPv4 first, then by address,
// then by prefix length.
func addrOrderLess(a, b netip.Prefix) bool {
	if a.Addr().Is4() != b.Addr().Is4() {
		return a.Addr().Is4()
	}
	if a.Addr() != b.Addr() {
		return a.Addr().Less(b.Addr())
	}
	return a.Bits() < b.Bits()
}

// searchAll follows the cursor of a search through every page.
func (c *checker) searchAll(query string) []searchItem { return c.searchPages(query, 7) }

// searchPages follows the cursor of a search through pages of limit rows.
func (c *checker) searchPages(query string, limit int) []searchItem {
	var all []searchItem
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(c.t, pages, 1000, "search %s: the cursor does not end", query)
		path := fmt.Sprintf("/api/v1/ips?limit=%d&%s", limit, query)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Items      []searchItem `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, path), &page))
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

// exports checks every export format row by row, and the ClickHouse reading:
// the longest match over the TSV rows gives each address the view GET /ips gives.
func (c *checker) exports(addrs []netip.Addr) {
	all := c.expectedRows(true, nil)
	noNote := c.expectedRows(false, nil)

	// CSV: prefix,classification,tags,sources,note,...
	recs, err := csv.NewReader(bytes.NewReader(c.s.mustGet(c.t, "/api/v1/export/ips.csv"))).ReadAll()
	require.NoError(c.t, err)
	require.NotEmpty(c.t, recs)
	require.Equal(c.t, []string{"prefix", "classification", "tags", "sources", "note"}, recs[0][:5])
	var items []searchItem
	for _, r := range recs[1:] {
		items = append(items, csvItem(c.t, r))
	}
	c.compareRows("export ips.csv", c.rowsOf("export ips.csv", items), all)

	items = nil
	require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, "/api/v1/export/ips.json"), &items))
	c.compareRows("export ips.json", c.rowsOf("export ips.json", items), all)

	items = nil
	sc := bufio.NewScanner(bytes.NewReader(c.s.mustGet(c.t, "/api/v1/export/ips.ndjson")))
	for sc.Scan() {
		var it searchItem
		require.NoError(c.t, json.Unmarshal(sc.Bytes(), &it), "ndjson line %q", sc.Text())
		items = append(items, it)
	}
	require.NoError(c.t, sc.Err())
	c.compareRows("export ips.ndjson", c.rowsOf("export ips.ndjson", items), all)

	// A filtered export lists what the same search lists.
	tag := tagNames[c.round%len(tagNames)]
	items = nil
	require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, "/api/v1/export/ips.json?tag="+tag), &items))
	c.compareRows("export ips.json?tag="+tag, c.rowsOf("export ips.json?tag="+tag, items),
		c.expectedRows(true, func(v resolve.View) bool { return v.HasTag(tag) }))

	// ClickHouse TSVWithNames: prefix, classification, score, tags, asn, as_org,
	// country, rdns, first_seen, last_seen, sources.
	lines := strings.Split(strings.TrimSuffix(string(c.s.mustGet(c.t, "/api/v1/export/clickhouse.tsv")), "\n"), "\n")
	require.Equal(c.t, "prefix\tclassification\tscore\ttags\tasn\tas_org\tcountry\trdns\tfirst_seen\tlast_seen\tsources", lines[0])
	items = nil
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		require.Len(c.t, f, 11, "clickhouse row %q", l)
		items = append(items, searchItem{Prefix: f[0], Classification: f[1], Tags: splitList(f[3]), Sources: splitList(f[10]),
			FirstSeen: f[8], LastSeen: f[9], Sightings: -1})
		score := map[string]string{"malicious": "100", "suspicious": "60", "unknown": "20", "benign": "0"}[f[1]]
		if f[2] != score {
			c.errorf("clickhouse.tsv: row %s has score %s for %s, want %s", f[0], f[2], f[1], score)
		}
	}
	rows := c.rowsOf("export clickhouse.tsv", items)
	c.compareRows("export clickhouse.tsv", rows, noNote)

	// The IP_TRIE reading: the most specific row containing the address.
	for _, a := range addrs {
		want := c.m.view(addrPrefix(a))
		var best netip.Prefix
		for p := range rows {
			if p.Contains(a) && (!best.IsValid() || p.Bits() > best.Bits()) {
				best = p
			}
		}
		if !want.Exists() {
			if best.IsValid() {
				c.errorf("clickhouse longest match of %s: row %s %s, but nothing live contains the address (GET /ips answers 404)", a, best, rows[best])
			}
			continue
		}
		w := summaryOf(want, false, false)
		w.Sources, w.Seen = nil, ""
		if !best.IsValid() {
			c.errorf("clickhouse longest match of %s: no row; model view %s", a, w)
			continue
		}
		g := rows[best]
		g.Sources, g.Seen = nil, ""
		if g.normalized().String() != w.normalized().String() {
			c.errorf("clickhouse longest match of %s (row %s) disagrees with GET /ips's model view:\n  model: %s\n  row:   %s", a, best, w.normalized(), g.normalized())
		}
	}
}

// explanation is the part of the contract's Explanation the test compares.
type explanation struct {
	Decided int    `json:"decided"`
	Action  string `json:"action"`
	Blocked bool   `json:"blocked"`
}

// explain checks that explain decides by the first rule the model's view matches.
func (c *checker) explain(addrs []netip.Addr) {
	for _, rs := range c.rulesets {
		for _, a := range addrs {
			v := c.m.view(addrPrefix(a))
			want := rs.decide(v)
			action := rs.def
			if want >= 0 {
				action = rs.rules[want].action
			}
			var got explanation
			body := c.s.mustGet(c.t, "/api/v1/rulesets/"+rs.name+"/explain?ip="+url.QueryEscape(a.String()))
			require.NoError(c.t, json.Unmarshal(body, &got))
			if got.Decided != want || got.Action != action || got.Blocked != (action == "block") {
				c.errorf("explain %s %s: want decided %d action %q blocked %v; model view %s; answer %s",
					rs.name, a, want, action, action == "block", viewString(v), body)
			}
			// The facts it shows are the view's.
			var facts struct {
				Facts struct {
					Tags       []struct{ Tag string } `json:"tags"`
					Suppressed []struct{ Tag string } `json:"suppressed"`
				} `json:"facts"`
			}
			require.NoError(c.t, json.Unmarshal(body, &facts))
			names := func(ts []struct{ Tag string }) []string {
				out := []string{}
				for _, t := range ts {
					if !slices.Contains(out, t.Tag) {
						out = append(out, t.Tag)
					}
				}
				slices.Sort(out)
				return out
			}
			if g, w := fmt.Sprint(names(facts.Facts.Tags), names(facts.Facts.Suppressed)), fmt.Sprint(nonNil(v.TagNames()), nonNil(v.SuppressedNames())); g != w {
				c.errorf("explain %s %s: facts tags and suppressed %s, the model's %s; model view %s", rs.name, a, g, w, viewString(v))
			}
		}
	}
}

// expectedSets returns, per rule of rs, the exact set of addresses it decides:
// an address's view is the view of the most specific existing stored prefix
// containing it, so walking the existing prefixes from the least specific down
// and giving each its rule's set (and taking it from every other rule's) ends
// with every address in its deciding rule's set.
func (c *checker) expectedSets(rs ruleset) []*netipx.IPSet {
	bs := make([]netipx.IPSetBuilder, len(rs.rules))
	for _, p := range c.m.existing() {
		d := rs.decide(c.m.view(p))
		for i := range bs {
			if i == d {
				bs[i].AddPrefix(p)
			} else {
				bs[i].RemovePrefix(p)
			}
		}
	}
	out := make([]*netipx.IPSet, len(bs))
	for i := range bs {
		set, err := bs[i].IPSet()
		require.NoError(c.t, err)
		out[i] = set
	}
	return out
}

// blockSet is the union of the sets of rs's block rules.
func blockSet(t *testing.T, rs ruleset, sets []*netipx.IPSet) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for i, r := range rs.rules {
		if r.action == "block" {
			b.AddSet(sets[i])
		}
	}
	set, err := b.IPSet()
	require.NoError(t, err)
	return set
}

// renderDoc is the part of the contract's Render the test reads.
type renderDoc struct {
	Version     int64 `json:"version"`
	Delta       bool  `json:"delta"`
	BaseVersion int64 `json:"base_version"`
	Rules       []struct {
		ID     int64    `json:"id"`
		Action string   `json:"action"`
		V4     []string `json:"v4"`
		V6     []string `json:"v6"`
		AddV4  []string `json:"add_v4"`
		DelV4  []string `json:"del_v4"`
		AddV6  []string `json:"add_v6"`
		DelV6  []string `json:"del_v6"`
	} `json:"rules"`
}

// seenRender is a render a bouncer of the test holds: its version and sets.
type seenRender struct {
	version int64
	sets    []*netipx.IPSet
}

// delta checks what a bouncer holding the render prev gets when it asks for
// what is newer (GET …/render?since=): applied to prev, a delta must give the
// current render's sets exactly; a full render must be the current one.
func (c *checker) delta(name string, prev seenRender, cur renderDoc, curSets []*netipx.IPSet) {
	if prev.version == cur.Version {
		return
	}
	var d renderDoc
	require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, fmt.Sprintf("/api/v1/rulesets/%s/render?since=%d&wait=1s", name, prev.version)), &d))
	if d.Version != cur.Version {
		c.errorf("render %s since %d: version %d, the current one is %d", name, prev.version, d.Version, cur.Version)
		return
	}
	if !d.Delta {
		for i, r := range d.Rules {
			if got := setOf(c.t, "render", r.V4, r.V6); i >= len(curSets) || !got.Equal(curSets[i]) {
				c.errorf("render %s since %d: the full render's rule %d is not the current render's", name, prev.version, r.ID)
			}
		}
		return
	}
	if d.BaseVersion != prev.version || len(d.Rules) != len(prev.sets) || len(d.Rules) != len(curSets) {
		c.errorf("render %s since %d: a delta from version %d over %d rules; the bouncer holds %d rules, the render has %d",
			name, prev.version, d.BaseVersion, len(d.Rules), len(prev.sets), len(curSets))
		return
	}
	for i, r := range d.Rules {
		var b netipx.IPSetBuilder
		b.AddSet(prev.sets[i])
		b.RemoveSet(setOf(c.t, "delta del", r.DelV4, r.DelV6))
		b.AddSet(setOf(c.t, "delta add", r.AddV4, r.AddV6))
		got, err := b.IPSet()
		require.NoError(c.t, err)
		if !got.Equal(curSets[i]) {
			c.errorf("render %s: the delta from version %d to %d, applied, does not give rule %d's set:%s",
				name, prev.version, d.Version, r.ID, c.setDiff(got, curSets[i]))
		}
	}
}

// setOf parses CIDRs into a set.
func setOf(t *testing.T, what string, lists ...[]string) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, l := range lists {
		for _, v := range l {
			p, err := netip.ParsePrefix(v)
			require.NoError(t, err, "%s: %q", what, v)
			b.AddPrefix(p)
		}
	}
	set, err := b.IPSet()
	require.NoError(t, err)
	return set
}

// setDiff describes how got differs from want, with the model's view of the
// first addresses of each difference.
func (c *checker) setDiff(got, want *netipx.IPSet) string {
	var extra, missing netipx.IPSetBuilder
	extra.AddSet(got)
	extra.RemoveSet(want)
	missing.AddSet(want)
	missing.RemoveSet(got)
	e, _ := extra.IPSet()
	mi, _ := missing.IPSet()
	var b strings.Builder
	for what, s := range map[string]*netipx.IPSet{"in the answer, not in the model": e, "in the model, not in the answer": mi} {
		ps := s.Prefixes()
		if len(ps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %v", what, ps)
		for _, p := range ps[:min(3, len(ps))] {
			fmt.Fprintf(&b, "\n    model view of %s: %s", p.Addr(), viewString(c.m.view(addrPrefix(p.Addr()))))
		}
	}
	return b.String()
}

// waitRender returns the render of name, with each rule's set, once done
// accepts the sets: it long polls for each next version until then, and
// returns the last render when done has not accepted one within 15 s.
func (s *server) waitRender(t *testing.T, name string, done func([]*netipx.IPSet) bool) (renderDoc, []*netipx.IPSet) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var doc renderDoc
		require.NoError(t, json.Unmarshal(s.mustGet(t, "/api/v1/rulesets/"+name+"/render"), &doc))
		var sets []*netipx.IPSet
		for _, r := range doc.Rules {
			sets = append(sets, setOf(t, "render "+name, r.V4, r.V6))
		}
		if done(sets) || time.Now().After(deadline) {
			return doc, sets
		}
		// Wait for the next version (304 when none comes within the wait).
		status, body := s.get(t, fmt.Sprintf("/api/v1/rulesets/%s/render?since=%d&wait=2s", name, doc.Version))
		require.Contains(t, []int{http.StatusOK, http.StatusNotModified}, status, "render long poll: %s", body)
	}
}

// renders waits for each ruleset's render to reach the model's state (a long
// poll on its version, up to a deadline) and checks every rule's set, the deny
// list, and the block decision of each address.
func (c *checker) renders(addrs []netip.Addr, held map[string]seenRender) {
	for _, rs := range c.rulesets {
		want := c.expectedSets(rs)
		doc, got := c.s.waitRender(c.t, rs.name, func(sets []*netipx.IPSet) bool {
			if len(sets) != len(want) {
				return false
			}
			for i := range sets {
				if !sets[i].Equal(want[i]) {
					return false
				}
			}
			return true
		})
		require.Len(c.t, doc.Rules, len(rs.rules), "render %s: rules", rs.name)
		if prev, ok := held[rs.name]; ok {
			c.delta(rs.name, prev, doc, got)
		}
		held[rs.name] = seenRender{version: doc.Version, sets: got}
		for i, r := range doc.Rules {
			require.Equal(c.t, rs.rules[i].action, r.Action, "render %s rule %d", rs.name, r.ID)
			if !got[i].Equal(want[i]) {
				c.errorf("render %s (version %d) rule %d (%s %s): its set is not the model's:%s", rs.name, doc.Version, r.ID,
					r.Action, condText(rs.rules[i].conds), c.setDiff(got[i], want[i]))
			}
		}
		for _, a := range addrs {
			v := c.m.view(addrPrefix(a))
			d := rs.decide(v)
			blocked := d >= 0 && rs.rules[d].action == "block"
			inBlock := false
			for i, r := range doc.Rules {
				if r.Action == "block" && got[i].Contains(a) {
					inBlock = true
				}
			}
			if blocked != inBlock {
				c.errorf("render %s: %s is in a block set: %v, the model's first matching rule (%d) blocks: %v; model view %s", rs.name, a, inBlock, d, blocked, viewString(v))
			}
		}
		var deny struct {
			V4 []string `json:"v4"`
			V6 []string `json:"v6"`
		}
		require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, "/api/v1/rulesets/"+rs.name+"/deny?format=json"), &deny))
		if ds, ws := setOf(c.t, "deny "+rs.name, deny.V4, deny.V6), blockSet(c.t, rs, want); !ds.Equal(ws) {
			c.errorf("deny %s: not the model's block set:%s", rs.name, c.setDiff(ds, ws))
		}
	}
}

// list checks the named list's prefixes: the addresses whose view matches its selector.
func (c *checker) list() {
	var b netipx.IPSetBuilder
	for _, p := range c.m.existing() {
		if matches(listConds, c.m.view(p)) {
			b.AddPrefix(p)
		} else {
			b.RemovePrefix(p)
		}
	}
	want, err := b.IPSet()
	require.NoError(c.t, err)
	var got struct {
		V4 []string `json:"v4"`
		V6 []string `json:"v6"`
	}
	require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, "/api/v1/lists/"+listName+"/prefixes?format=json"), &got))
	if gs := setOf(c.t, "list "+listName, got.V4, got.V6); !gs.Equal(want) {
		c.errorf("list %s (%s): not the model's set:%s", listName, condText(listConds), c.setDiff(gs, want))
	}
}

// bouncerRender checks what a muninn-bouncer starting now gets
// (GET /bouncer/render with its key, no since): the full render of each bound
// ruleset, every rule's set the model's.
func (c *checker) bouncerRender(key string) {
	status, body := c.s.call(c.t, "X-Api-Key", key, http.MethodGet, "/api/v1/bouncer/render", "", nil)
	require.Equal(c.t, http.StatusOK, status, "%s", body)
	var resp struct {
		Rulesets []struct {
			Ruleset string `json:"ruleset"`
			renderDoc
		} `json:"rulesets"`
	}
	require.NoError(c.t, json.Unmarshal(body, &resp))
	require.Len(c.t, resp.Rulesets, len(c.rulesets))
	for _, r := range resp.Rulesets {
		i := slices.IndexFunc(c.rulesets, func(rs ruleset) bool { return rs.name == r.Ruleset })
		require.GreaterOrEqual(c.t, i, 0, "bouncer render of %q", r.Ruleset)
		rs := c.rulesets[i]
		want := c.expectedSets(rs)
		require.False(c.t, r.Delta)
		require.Len(c.t, r.Rules, len(want), "bouncer render of %s", rs.name)
		for j, rule := range r.Rules {
			if got := setOf(c.t, "bouncer render", rule.V4, rule.V6); !got.Equal(want[j]) {
				c.errorf("bouncer render %s (version %d) rule %d: its set is not the model's:%s", rs.name, r.Version, rule.ID, c.setDiff(got, want[j]))
			}
		}
	}
}

// crowdsec checks that the CrowdSec stream at startup bans exactly what the
// renders of the bouncer's rulesets block (the renders were checked against
// the model before).
func (c *checker) crowdsec(key string) {
	status, body := c.s.call(c.t, "X-Api-Key", key, http.MethodGet, "/crowdsec/v1/decisions/stream?startup=true", "", nil)
	require.Equal(c.t, http.StatusOK, status, "%s", body)
	var stream struct {
		New []struct {
			Type  string `json:"type"`
			Scope string `json:"scope"`
			Value string `json:"value"`
		} `json:"new"`
	}
	require.NoError(c.t, json.Unmarshal(body, &stream))
	var gb netipx.IPSetBuilder
	for _, d := range stream.New {
		require.Equal(c.t, "ban", d.Type)
		if d.Scope == "Ip" {
			a, err := netip.ParseAddr(d.Value)
			require.NoError(c.t, err)
			gb.Add(a)
			continue
		}
		p, err := netip.ParsePrefix(d.Value)
		require.NoError(c.t, err)
		gb.AddPrefix(p)
	}
	got, err := gb.IPSet()
	require.NoError(c.t, err)
	var wb netipx.IPSetBuilder
	for _, rs := range c.rulesets {
		wb.AddSet(blockSet(c.t, rs, c.expectedSets(rs)))
	}
	want, err := wb.IPSet()
	require.NoError(c.t, err)
	if !got.Equal(want) {
		c.errorf("crowdsec stream: the banned ranges are not what the rulesets block:%s", c.setDiff(got, want))
	}
}

// viewString is the compact form of a view failures print.
func viewString(v resolve.View) string {
	var ps []string
	for _, p := range v.Prefixes {
		ps = append(ps, p.String())
	}
	return fmt.Sprintf("{classification %q from %q, tags %v, suppressed %v, note %q, sources %v, prefixes %v}",
		v.Classification, v.ClassificationSource, facts(v.Tags), facts(v.Suppressed), v.Note, v.Sources, ps)
}
