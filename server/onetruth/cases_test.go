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

// waitBlocks waits for the render of the one-rule ruleset name to hold
// exactly the prefixes want, and requires it.
func (s *server) waitBlocks(t *testing.T, name string, want ...string) {
	t.Helper()
	w := setOf(t, "want", want)
	doc, sets := s.waitRender(t, name, func(sets []*netipx.IPSet) bool { return len(sets) == 1 && sets[0].Equal(w) })
	require.Len(t, doc.Rules, 1)
	require.Equal(t, nonNil(want), nonNil(append(doc.Rules[0].V4, doc.Rules[0].V6...)), "render %s version %d", name, doc.Version)
	require.True(t, sets[0].Equal(w))
}

// Issue 10's notes case, carried across prefixes (server/api's
// TestNoteIsOneTruth has the case on one address): the note is the newest
// automatic one over every containing prefix, unless a containing prefix has
// a manual one (the most specific such wins), in every output.
func TestNotePrecedenceAcrossPrefixes(t *testing.T) {
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

// Issue 10's ghost prefix case, by expiry (server/api's
// TestDeletedOverrideLeavesNoGhost has it by deletion): an override that
// expires on a prefix nothing else asserts leaves a stored prefix with nothing
// live, which no output shows.
func TestExpiredOverrideLeavesNoGhost(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.send(t, s.admin, http.MethodPut, "/api/v1/rulesets/gm", "text/plain",
		[]byte(ruleset{name: "gm", rules: []rule{{"block", []cond{{"tag", []string{"gm"}}}}}}.text()), http.StatusCreated)
	expires := s.clock.now().Add(time.Hour).UTC().Format(time.RFC3339)
	s.send(t, s.writer, http.MethodPut, "/api/v1/networks/198.51.100.64/26/override", "application/json",
		[]byte(`{"add_tags":["gm"],"classification":"malicious","expires_at":"`+expires+`"}`), http.StatusOK)
	s.settle(t)
	require.Equal(t, "malicious", s.lookup(t, "/api/v1/ips/198.51.100.70").Classification)
	requireOutputs(t, s, "tag=gm", map[string]row{"198.51.100.64/26": {Classification: "malicious", Tags: "gm", Sources: "manual:writer"}})
	s.waitBlocks(t, "gm", "198.51.100.64/26")
	s.advance(2 * time.Hour)
	for _, path := range []string{"/api/v1/ips/198.51.100.70", "/api/v1/networks/198.51.100.64/26"} {
		status, body := s.get(t, path)
		require.Equal(t, http.StatusNotFound, status, "%s: %s", path, body)
	}
	requireOutputs(t, s, "tag=gm", map[string]row{})
	requireOutputs(t, s, "within=198.51.100.0/24", map[string]row{})
	s.waitBlocks(t, "gm")
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
