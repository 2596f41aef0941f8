package onetruth_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go4.org/netipx"
)

// lookup returns GET path's view; it must answer 200.
func (s *server) lookup(t *testing.T, path string) apiView {
	t.Helper()
	var v apiView
	require.NoError(t, json.Unmarshal(s.mustGet(t, path), &v))
	return v
}

// row is one output row reduced to what the cases compare.
type row struct {
	Classification string
	Tags, Sources  string // sorted, comma-joined
	Note           string
}

func rowOf(cl string, tags, sources []string, note string) row {
	tags, sources = slices.Sorted(slices.Values(tags)), slices.Sorted(slices.Values(sources))
	return row{Classification: cl, Tags: strings.Join(tags, ","), Sources: strings.Join(sources, ","), Note: note}
}

// outputs returns the rows of one query (e.g. "tag=x") in every output that
// lists prefixes: search, CSV, JSON, NDJSON and ClickHouse (which has no
// note), keyed by output then prefix.
func (s *server) outputs(t *testing.T, query string) map[string]map[string]row {
	t.Helper()
	out := map[string]map[string]row{}
	add := func(output, prefix string, r row) {
		if out[output] == nil {
			out[output] = map[string]row{}
		}
		_, dup := out[output][prefix]
		require.False(t, dup, "%s lists %s twice", output, prefix)
		out[output][prefix] = r
	}
	var page struct {
		Items      []searchItem `json:"items"`
		NextCursor string       `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal(s.mustGet(t, "/api/v1/ips?limit=1000&"+query), &page))
	require.Empty(t, page.NextCursor)
	out["search"] = map[string]row{}
	for _, it := range page.Items {
		add("search", it.Prefix, rowOf(it.Classification, it.Tags, it.Sources, it.Note))
	}
	var items []searchItem
	require.NoError(t, json.Unmarshal(s.mustGet(t, "/api/v1/export/ips.json?"+query), &items))
	out["json"] = map[string]row{}
	for _, it := range items {
		add("json", it.Prefix, rowOf(it.Classification, it.Tags, it.Sources, it.Note))
	}
	out["ndjson"] = map[string]row{}
	sc := bufio.NewScanner(bytes.NewReader(s.mustGet(t, "/api/v1/export/ips.ndjson?"+query)))
	for sc.Scan() {
		var it searchItem
		require.NoError(t, json.Unmarshal(sc.Bytes(), &it))
		add("ndjson", it.Prefix, rowOf(it.Classification, it.Tags, it.Sources, it.Note))
	}
	recs, err := csv.NewReader(bytes.NewReader(s.mustGet(t, "/api/v1/export/ips.csv?"+query))).ReadAll()
	require.NoError(t, err)
	out["csv"] = map[string]row{}
	for _, r := range recs[1:] {
		add("csv", r[0], rowOf(r[1], splitList(r[2]), splitList(r[3]), r[4]))
	}
	lines := strings.Split(strings.TrimSuffix(string(s.mustGet(t, "/api/v1/export/clickhouse.tsv?"+query)), "\n"), "\n")
	out["clickhouse"] = map[string]row{}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		require.Len(t, f, 11, "clickhouse row %q", l)
		add("clickhouse", f[0], rowOf(f[1], splitList(f[3]), splitList(f[10]), ""))
	}
	return out
}

// requireOutputs checks that every output lists exactly want (ClickHouse
// without the notes); it reports every output that does not before the test
// goes on.
func requireOutputs(t *testing.T, s *server, query string, want map[string]row) {
	t.Helper()
	noNote := map[string]row{}
	for p, r := range want {
		r.Note = ""
		noNote[p] = r
	}
	for output, got := range s.outputs(t, query) {
		w := want
		if output == "clickhouse" {
			w = noNote
		}
		assert.Equal(t, w, got, "%s?%s", output, query)
	}
}

// putRuleset stores a ruleset and binds a new bouncer to it; it returns the bouncer's key.
func (s *server) putRuleset(t *testing.T, rs ruleset) string {
	t.Helper()
	s.send(t, s.admin, http.MethodPut, "/api/v1/rulesets/"+rs.name, "text/plain", []byte(rs.text()), http.StatusCreated)
	var b struct {
		Key string `json:"key"`
	}
	require.NoError(t, json.Unmarshal(s.send(t, s.admin, http.MethodPost, "/api/v1/bouncers", "application/json",
		jsonOf(t, map[string]any{"name": "b-" + rs.name, "rulesets": []string{rs.name}}), http.StatusCreated), &b))
	return b.Key
}

// waitBlocks waits for the render of name to block exactly the prefixes want
// and returns its version.
func (s *server) waitBlocks(t *testing.T, name string, want ...string) int64 {
	t.Helper()
	w := setOf(t, "want", want)
	doc, sets := s.waitRender(t, name, func(sets []*netipx.IPSet) bool { return len(sets) == 1 && sets[0].Equal(w) })
	require.Len(t, sets, 1)
	require.Equal(t, want, append(doc.Rules[0].V4, doc.Rules[0].V6...), "render %s version %d", name, doc.Version)
	return doc.Version
}

// The suppression case of issue 10: a manual suppress on a /24 hides the
// automatic tag asserted on the /24 itself and on the prefixes inside it, in
// every output and in enforcement.
func TestSuppressionHidesTheTagEverywhere(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	key := s.putRuleset(t, ruleset{name: "sup", rules: []rule{{"block", []cond{{"tag", []string{"supx"}}}}}})
	s.ingest(t, []map[string]any{
		{"ip": "192.0.2.0/24", "source": "a", "tags": []string{"supx"}},
		{"ip": "192.0.2.64/26", "source": "b", "tags": []string{"supx"}},
		{"ip": "192.0.2.5", "source": "c", "tags": []string{"supx"}},
	})
	s.waitBlocks(t, "sup", "192.0.2.0/24")

	s.send(t, s.writer, http.MethodPut, "/api/v1/networks/192.0.2.0/24/override", "application/json", []byte(`{"suppress_tags":["supx"]}`), http.StatusOK)
	s.settle(t)

	v := s.lookup(t, "/api/v1/ips/192.0.2.70")
	require.Empty(t, v.Tags)
	require.Equal(t, []string{"supx ingest:a 192.0.2.0/24", "supx ingest:b 192.0.2.64/26"}, apiFacts(v.Suppressed))
	require.Equal(t, []string{"ingest:a", "ingest:b", "manual:writer"}, v.Sources)
	require.Equal(t, "unknown", v.Classification)
	v = s.lookup(t, "/api/v1/ips/192.0.2.5")
	require.Empty(t, v.Tags)
	require.Equal(t, []string{"supx ingest:a 192.0.2.0/24", "supx ingest:c 192.0.2.5/32"}, apiFacts(v.Suppressed))
	v = s.lookup(t, "/api/v1/networks/192.0.2.64/26")
	require.Empty(t, v.Tags)
	require.Equal(t, []string{"supx ingest:a 192.0.2.0/24", "supx ingest:b 192.0.2.64/26"}, apiFacts(v.Suppressed))

	s.waitBlocks(t, "sup")
	for _, ip := range []string{"192.0.2.70", "192.0.2.5", "192.0.2.1"} {
		var e explanation
		require.NoError(t, json.Unmarshal(s.mustGet(t, "/api/v1/rulesets/sup/explain?ip="+ip), &e))
		require.Equal(t, explanation{Decided: -1, Action: "", Blocked: false}, e, ip)
	}
	require.Equal(t, "", string(s.mustGet(t, "/api/v1/rulesets/sup/deny")))
	status, body := s.call(t, "X-Api-Key", key, http.MethodGet, "/crowdsec/v1/decisions/stream?startup=true", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"new":[],"deleted":[]}`, string(body))

	requireOutputs(t, s, "tag=supx", map[string]row{})
	requireOutputs(t, s, "within=192.0.2.0/24", map[string]row{
		"192.0.2.0/24":  {Classification: "unknown", Sources: "ingest:a,manual:writer"},
		"192.0.2.64/26": {Classification: "unknown", Sources: "ingest:a,ingest:b,manual:writer"},
		"192.0.2.5/32":  {Classification: "unknown", Sources: "ingest:a,ingest:c,manual:writer"},
	})
}

// The notes case of issue 10: the note is the newest automatic one over every
// containing prefix, unless a containing prefix has a manual one (the most
// specific such wins), in every output.
func TestNoteIsTheSameEverywhere(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	now := s.clock.now().UTC()
	at := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339) }
	s.ingest(t, []map[string]any{{"ip": "198.51.100.7", "source": "n1", "note": "first", "seen_at": at(2 * time.Hour)}})
	s.ingest(t, []map[string]any{{"ip": "198.51.100.7", "source": "n2", "note": "second", "seen_at": at(time.Hour)}})
	s.settle(t)
	check := func(address, network string) {
		t.Helper()
		require.Equal(t, address, s.lookup(t, "/api/v1/ips/198.51.100.7").Note)
		require.Equal(t, address, s.lookup(t, "/api/v1/networks/198.51.100.7/32").Note)
		want := map[string]row{"198.51.100.7/32": {Classification: "unknown", Sources: "ingest:n1,ingest:n2", Note: address}}
		if network != "" {
			require.Equal(t, network, s.lookup(t, "/api/v1/networks/198.51.100.0/24").Note)
			want["198.51.100.0/24"] = row{Classification: "unknown", Sources: "ingest:n3", Note: network}
			want["198.51.100.7/32"] = row{Classification: "unknown", Sources: "ingest:n1,ingest:n2,ingest:n3", Note: address}
		}
		requireOutputs(t, s, "within=198.51.100.0/24", want)
	}
	check("second", "")

	// A newer automatic note on the containing /24 is the newest for the /32 too.
	s.ingest(t, []map[string]any{{"ip": "198.51.100.0/24", "source": "n3", "note": "third", "seen_at": at(30 * time.Minute)}})
	s.settle(t)
	check("third", "third")

	// A manual note on the /24 beats every automatic one inside it.
	s.send(t, s.writer, http.MethodPut, "/api/v1/networks/198.51.100.0/24/override", "application/json", []byte(`{"note":"reviewed"}`), http.StatusOK)
	s.settle(t)
	require.Equal(t, "reviewed", s.lookup(t, "/api/v1/ips/198.51.100.7").Note)
	requireOutputs(t, s, "within=198.51.100.0/24", map[string]row{
		"198.51.100.0/24": {Classification: "unknown", Sources: "ingest:n3,manual:writer", Note: "reviewed"},
		"198.51.100.7/32": {Classification: "unknown", Sources: "ingest:n1,ingest:n2,ingest:n3,manual:writer", Note: "reviewed"},
	})

	// A manual note on the /32 itself is more specific.
	s.send(t, s.writer, http.MethodPut, "/api/v1/ips/198.51.100.7/override", "application/json", []byte(`{"note":"mine"}`), http.StatusOK)
	s.settle(t)
	require.Equal(t, "mine", s.lookup(t, "/api/v1/ips/198.51.100.7").Note)
	require.Equal(t, "reviewed", s.lookup(t, "/api/v1/ips/198.51.100.8").Note)
	requireOutputs(t, s, "within=198.51.100.0/24", map[string]row{
		"198.51.100.0/24": {Classification: "unknown", Sources: "ingest:n3,manual:writer", Note: "reviewed"},
		"198.51.100.7/32": {Classification: "unknown", Sources: "ingest:n1,ingest:n2,ingest:n3,manual:writer", Note: "mine"},
	})
}

// The ghost prefix case of issue 10: deleting the override of a prefix nothing
// else asserts leaves nothing behind in any output.
func TestDeletedOverrideLeavesNoGhost(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.ingest(t, []map[string]any{{"ip": "203.0.113.0/24", "source": "g", "tags": []string{"gt"}}})
	for _, ip := range []string{"203.0.113.9", "198.51.100.200"} {
		s.send(t, s.writer, http.MethodPut, "/api/v1/ips/"+ip+"/override", "application/json", []byte(`{"add_tags":["gm"],"note":"temp"}`), http.StatusOK)
		s.send(t, s.writer, http.MethodDelete, "/api/v1/ips/"+ip+"/override", "", nil, http.StatusNoContent)
	}
	s.settle(t)

	// Inside a stored /24: the address has the /24's view and nothing of its own.
	v := s.lookup(t, "/api/v1/ips/203.0.113.9")
	require.Equal(t, []string{"gt ingest:g 203.0.113.0/24"}, apiFacts(v.Tags))
	require.Equal(t, "", v.Note)
	require.Equal(t, []string{"ingest:g"}, v.Sources)
	require.Len(t, v.Prefixes, 1)
	require.Equal(t, "203.0.113.0/24", v.Prefixes[0].Prefix)
	// Alone: nothing is known.
	for _, path := range []string{"/api/v1/ips/198.51.100.200", "/api/v1/networks/198.51.100.200/32"} {
		status, body := s.get(t, path)
		require.Equal(t, http.StatusNotFound, status, "%s: %s", path, body)
	}

	requireOutputs(t, s, "tag=gm", map[string]row{})
	requireOutputs(t, s, "source=manual:*", map[string]row{})
	requireOutputs(t, s, "within=203.0.113.0/24", map[string]row{"203.0.113.0/24": {Classification: "unknown", Tags: "gt", Sources: "ingest:g"}})
	requireOutputs(t, s, "within=198.51.100.0/24", map[string]row{})

	// An override that expires leaves a stored prefix with nothing live: a ghost.
	expires := s.clock.now().Add(time.Hour).UTC().Format(time.RFC3339)
	s.send(t, s.writer, http.MethodPut, "/api/v1/networks/198.51.100.64/26/override", "application/json",
		[]byte(`{"add_tags":["gm"],"classification":"malicious","expires_at":"`+expires+`"}`), http.StatusOK)
	s.settle(t)
	require.Equal(t, "malicious", s.lookup(t, "/api/v1/ips/198.51.100.70").Classification)
	requireOutputs(t, s, "tag=gm", map[string]row{"198.51.100.64/26": {Classification: "malicious", Tags: "gm", Sources: "manual:writer"}})
	s.advance(2 * time.Hour)
	for _, path := range []string{"/api/v1/ips/198.51.100.70", "/api/v1/networks/198.51.100.64/26"} {
		status, body := s.get(t, path)
		require.Equal(t, http.StatusNotFound, status, "%s: %s", path, body)
	}
	requireOutputs(t, s, "tag=gm", map[string]row{})
	requireOutputs(t, s, "within=198.51.100.0/24", map[string]row{})
}

// The ClickHouse case of issue 10: the row of a /32 stored inside a tagged,
// classified /24 carries the /32's view, so IP_TRIE's longest match answers
// what GET /ips answers.
func TestClickHouseRowIsTheView(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.ingest(t, []map[string]any{
		{"ip": "198.51.100.0/24", "source": "wide", "tags": []string{"scanner"}, "classification": "malicious"},
		{"ip": "198.51.100.7", "source": "narrow", "tags": []string{"ssh"}},
	})
	s.settle(t)
	v := s.lookup(t, "/api/v1/ips/198.51.100.7")
	require.Equal(t, "malicious", v.Classification)
	require.Equal(t, []string{"scanner ingest:wide 198.51.100.0/24", "ssh ingest:narrow 198.51.100.7/32"}, apiFacts(v.Tags))
	requireOutputs(t, s, "within=198.51.100.0/24", map[string]row{
		"198.51.100.0/24": {Classification: "malicious", Tags: "scanner", Sources: "ingest:wide"},
		"198.51.100.7/32": {Classification: "malicious", Tags: "scanner,ssh", Sources: "ingest:narrow,ingest:wide"},
	})
	requireOutputs(t, s, "classification=malicious&tag=ssh", map[string]row{
		"198.51.100.7/32": {Classification: "malicious", Tags: "scanner,ssh", Sources: "ingest:narrow,ingest:wide"},
	})
}
