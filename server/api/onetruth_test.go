package api_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// searchItem is one row of GET /ips and of the JSON exports.
type searchItem struct {
	Prefix         string   `json:"prefix"`
	Classification string   `json:"classification"`
	Tags           []string `json:"tags"`
	Sources        []string `json:"sources"`
	Note           string   `json:"note"`
	PassiveDNS     []string `json:"passive_dns"`
}

type searchPage struct {
	Items      []searchItem `json:"items"`
	NextCursor string       `json:"next_cursor"`
}

// exports fetches every export format with query and returns the JSON rows,
// the NDJSON rows, the CSV lines and the ClickHouse lines (headers
// included), the last two split into fields.
func (b *testBundle) exports(t *testing.T, query string) (js, nd []searchItem, csvLines, ch [][]string) {
	t.Helper()
	get := func(path string) string {
		status, raw := b.do(t, b.reader, http.MethodGet, "/api/v1/export/"+path+query, "", nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", path, raw)
		return string(raw)
	}
	require.NoError(t, json.Unmarshal([]byte(get("ips.json")), &js))
	for _, line := range strings.Split(strings.TrimSpace(get("ips.ndjson")), "\n") {
		if line == "" {
			continue
		}
		var it searchItem
		require.NoError(t, json.Unmarshal([]byte(line), &it))
		nd = append(nd, it)
	}
	csvLines, err := csv.NewReader(strings.NewReader(get("ips.csv"))).ReadAll()
	require.NoError(t, err)
	for _, l := range strings.Split(strings.TrimSpace(get("clickhouse.tsv")), "\n") {
		ch = append(ch, strings.Split(l, "\t"))
	}
	return js, nd, csvLines, ch
}

// column returns field i of each record, the header skipped.
func column(records [][]string, i int) []string {
	var out []string
	for _, r := range records[1:] {
		out = append(out, r[i])
	}
	return out
}

// TestSuppressionIsOneTruth is issue 10's suppression case: a manual
// suppress on 192.0.2.0/24 hides the automatic tag supx asserted on the /24,
// on a /26 inside it and on a /32 inside it, in every answer.
func TestSuppressionIsOneTruth(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"192.0.2.0/24","source":"a","tags":["supx"]}`+"\n"+
		`{"ip":"192.0.2.64/26","source":"b","tags":["supx"]}`+"\n"+
		`{"ip":"192.0.2.5","source":"c","tags":["supx"]}`+"\n")
	b.putRuleset(t, "ruleset supr\n  block tag supx\n", http.StatusCreated)
	status, before, _ := b.getRender(t, "supr", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []string{"192.0.2.0/24"}, before.Rules[0].V4)

	var put view
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/192.0.2.0/24/override", map[string]any{"suppress_tags": []string{"supx"}}, http.StatusOK, &put)
	require.Empty(t, put.Tags)

	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.70", nil, http.StatusOK, &v)
	require.Empty(t, v.Tags)
	require.Equal(t, []struct{ Name string }{{"supx"}, {"supx"}}, v.Suppressed, "the /26's and the /24's")
	require.Equal(t, []string{"ingest:a", "ingest:b", "manual:t-writer"}, v.Sources)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.5", nil, http.StatusOK, &v)
	require.Empty(t, v.Tags)

	after := b.waitVersion(t, "supr", before.Version)
	require.Empty(t, after.Rules[0].V4, "the render holds no supx prefix")
	var deny struct{ V4, V6 []string }
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/supr/deny?format=json", nil, http.StatusOK, &deny)
	require.Empty(t, deny.V4)
	require.Empty(t, deny.V6)

	for _, ip := range []string{"192.0.2.70", "192.0.2.5"} {
		var ex struct {
			Decided int  `json:"decided"`
			Rule    int  `json:"rule"`
			Blocked bool `json:"blocked"`
		}
		b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/supr/explain?ip="+ip, nil, http.StatusOK, &ex)
		require.Equal(t, -1, ex.Decided, ip)
		require.Equal(t, 0, ex.Rule, "the default decides %s", ip)
		require.False(t, ex.Blocked, ip)
	}

	var page searchPage
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?tag=supx", nil, http.StatusOK, &page)
	require.Empty(t, page.Items)
	require.Empty(t, page.NextCursor)

	want := []searchItem{
		{Prefix: "192.0.2.0/24", Classification: "unknown", Tags: []string{}, Sources: []string{"ingest:a", "manual:t-writer"}},
		{Prefix: "192.0.2.5/32", Classification: "unknown", Tags: []string{}, Sources: []string{"ingest:a", "ingest:c", "manual:t-writer"}},
		{Prefix: "192.0.2.64/26", Classification: "unknown", Tags: []string{}, Sources: []string{"ingest:a", "ingest:b", "manual:t-writer"}},
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips", nil, http.StatusOK, &page)
	require.Equal(t, want, page.Items)
	js, nd, csvRows, ch := b.exports(t, "")
	require.Equal(t, want, js)
	require.Equal(t, want, nd)
	require.Equal(t, []string{"192.0.2.0/24", "192.0.2.5/32", "192.0.2.64/26"}, column(csvRows, 0))
	require.Equal(t, []string{"", "", ""}, column(csvRows, 2), "no tags in the CSV")
	require.Equal(t, []string{"192.0.2.0/24", "192.0.2.5/32", "192.0.2.64/26"}, column(ch, 0))
	require.Equal(t, []string{"", "", ""}, column(ch, 3), "no tags in the ClickHouse rows")
	js, _, _, _ = b.exports(t, "?tag=supx")
	require.Empty(t, js)
}

// TestNoteIsOneTruth is issue 10's notes case: two sources note "first" then
// "second" on one address; every answer says "second".
func TestNoteIsOneTruth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"198.51.100.9","source":"one","note":"first","seen_at":"2026-01-01T00:00:00Z"}`+"\n")
	b.ingest(t, `{"ip":"198.51.100.9","source":"two","note":"second","seen_at":"2026-01-02T00:00:00Z"}`+"\n")
	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.9", nil, http.StatusOK, &v)
	require.Equal(t, "second", v.Note)
	var page searchPage
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips", nil, http.StatusOK, &page)
	want := []searchItem{{Prefix: "198.51.100.9/32", Classification: "unknown", Tags: []string{}, Sources: []string{"ingest:one", "ingest:two"}, Note: "second"}}
	require.Equal(t, want, page.Items)
	js, nd, csvRows, _ := b.exports(t, "")
	require.Equal(t, want, js)
	require.Equal(t, want, nd)
	require.Equal(t, []string{"second"}, column(csvRows, 4))
}

// TestDeletedOverrideLeavesNoGhost is issue 10's ghost case: an override put
// and deleted on a fresh address leaves nothing in any answer.
func TestDeletedOverrideLeavesNoGhost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"203.0.113.0/25","source":"s","tags":["other"]}`+"\n")
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.200/override", map[string]any{"add_tags": []string{"mine"}}, http.StatusOK, nil)
	var page searchPage
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?within=203.0.113.0/24", nil, http.StatusOK, &page)
	require.Len(t, page.Items, 2, "read-your-writes: the override is listed at once")
	b.json(t, b.writer, http.MethodDelete, "/api/v1/ips/203.0.113.200/override", nil, http.StatusNoContent, nil)

	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/203.0.113.200", nil, http.StatusNotFound, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/203.0.113.128/25", nil, http.StatusNotFound, nil)
	var n view
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/203.0.113.0/24", nil, http.StatusNotFound, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/203.0.113.0/25", nil, http.StatusOK, &n)
	require.Equal(t, []struct {
		Prefix string `json:"prefix"`
	}{{"203.0.113.0/25"}}, n.Prefixes)
	want := []searchItem{{Prefix: "203.0.113.0/25", Classification: "unknown", Tags: []string{"other"}, Sources: []string{"ingest:s"}}}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?within=203.0.113.0/24", nil, http.StatusOK, &page)
	require.Equal(t, want, page.Items)
	js, nd, csvRows, ch := b.exports(t, "")
	require.Equal(t, want, js)
	require.Equal(t, want, nd)
	require.Equal(t, []string{"203.0.113.0/25"}, column(csvRows, 0))
	require.Equal(t, []string{"203.0.113.0/25"}, column(ch, 0))
}

// TestSearchCursorIsAddressOrder: pages follow address order (address, then
// length, IPv4 first) and the cursor is the last prefix listed.
func TestSearchCursorIsAddressOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"2001:db8::1","source":"s"}`+"\n"+`{"ip":"198.51.100.0/24","source":"s"}`+"\n"+
		`{"ip":"192.0.2.9","source":"s"}`+"\n"+`{"ip":"198.51.100.7","source":"s"}`+"\n")
	var got, cursors []string
	path := "/api/v1/ips?limit=1"
	for {
		var page searchPage
		b.json(t, b.reader, http.MethodGet, path, nil, http.StatusOK, &page)
		for _, it := range page.Items {
			got = append(got, it.Prefix)
		}
		if page.NextCursor == "" {
			break
		}
		cursors = append(cursors, page.NextCursor)
		path = "/api/v1/ips?limit=1&cursor=" + page.NextCursor
	}
	require.Equal(t, []string{"192.0.2.9/32", "198.51.100.0/24", "198.51.100.7/32", "2001:db8::1/128"}, got)
	require.Equal(t, []string{"192.0.2.9/32", "198.51.100.0/24", "198.51.100.7/32"}, cursors)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?cursor=17", nil, http.StatusBadRequest, nil)
}

// TestListPrefixesFromIndex: a named list compiles over the index's
// effective views, is cached per snapshot and says so in its ETag; the deny
// list's ETag is the render version it was derived from.
func TestListPrefixesFromIndex(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"192.0.2.0/24","source":"a","tags":["lx"]}`+"\n")
	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/lx", map[string]any{"selector": "tag lx"}, http.StatusOK, nil)
	get := func() (string, string) {
		status, raw, hdr := b.getWithHeader(t, "/api/v1/lists/lx/prefixes")
		require.Equal(t, http.StatusOK, status, "%s", raw)
		return string(raw), hdr.Get("ETag")
	}
	body1, etag1 := get()
	require.Equal(t, "192.0.2.0/24\n", body1)
	require.NotEmpty(t, etag1)
	body, etag := get()
	require.Equal(t, body1, body)
	require.Equal(t, etag1, etag)

	b.ingest(t, `{"ip":"2001:db8::/48","source":"a","tags":["lx"]}`+"\n")
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/192.0.2.128/25/override", map[string]any{"suppress_tags": []string{"lx"}}, http.StatusOK, nil)
	body, etag = get()
	require.Equal(t, "192.0.2.0/25\n2001:db8::/48\n", body)
	require.NotEqual(t, etag1, etag)

	b.putRuleset(t, "ruleset dl\n  block list lx\n", http.StatusCreated)
	status, r, _ := b.getRender(t, "dl", "")
	require.Equal(t, http.StatusOK, status)
	r = b.renderAtLeast(t, "dl", r, []string{"192.0.2.0/25"})
	status, raw, hdr := b.getWithHeader(t, "/api/v1/rulesets/dl/deny")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "192.0.2.0/25\n2001:db8::/48\n", string(raw))
	require.Equal(t, fmt.Sprint(r.Version), hdr.Get("X-Muninn-Render-Version"))
	require.NotEmpty(t, hdr.Get("ETag"))
}

// getWithHeader GETs path as the reader and returns status, body and headers.
func (b *testBundle) getWithHeader(t *testing.T, path string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw, resp.Header
}

// renderAtLeast long-polls from r until rule 1's IPv4 set is v4.
func (b *renderBundle) renderAtLeast(t *testing.T, name string, r renderDoc, v4 []string) renderDoc {
	t.Helper()
	for !slices.Equal(r.Rules[0].V4, v4) {
		b.waitVersion(t, name, r.Version)
		var status int
		status, r, _ = b.getRender(t, name, "")
		require.Equal(t, http.StatusOK, status)
	}
	return r
}
