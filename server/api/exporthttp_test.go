package api_test

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store/storetest"
)

// send makes a request as the reader with optional If-None-Match and
// returns the status, the body and the headers.
func (b *renderBundle) send(t *testing.T, method, path, inm string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	req.Header.Set("Accept-Encoding", "identity") // lengths as sent
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

// exportPaths are every GET export and list endpoint (with a ruleset edge
// and a list bad).
var exportPaths = []string{
	"/api/v1/export/ips.csv", "/api/v1/export/ips.json", "/api/v1/export/ips.ndjson", "/api/v1/export/clickhouse.tsv",
	"/api/v1/export/muninn.mmdb", "/api/v1/export/zeek-intel.txt", "/api/v1/export/suricata/iprep/categories.txt",
	"/api/v1/export/suricata/iprep/reputation.list", "/api/v1/export/suricata/dataset.lst",
	"/api/v1/rulesets/edge/deny", "/api/v1/rulesets/edge/allow", "/api/v1/rulesets/edge/render",
	"/api/v1/lists", "/api/v1/lists/bad", "/api/v1/lists/bad/prefixes",
}

// TestExportsHeadAndConditional: HEAD answers every GET export and list
// endpoint as GET does, without a body (it answered 405); If-None-Match
// "*", lists and weak tags answer 304 where there is an ETag; an unknown
// query parameter on every export answers 400 naming it.
func TestExportsHeadAndConditional(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["bad"],"classification":"malicious"}
{"ip":"2001:db8::7","source":"feed","tags":["bad"],"classification":"malicious"}
`)
	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/bad", map[string]string{"selector": "tag bad"}, http.StatusOK, nil)
	b.putRuleset(t, "ruleset edge\n  block list bad\n", http.StatusCreated)

	withETag := 0
	for _, path := range exportPaths {
		status, body, get := b.send(t, http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, status, "GET %s: %s", path, body)
		require.NotEmpty(t, body, "GET %s", path)
		status, headBody, head := b.send(t, http.MethodHead, path, "")
		require.Equal(t, http.StatusOK, status, "HEAD %s", path)
		require.Empty(t, headBody, "HEAD %s", path)
		for _, h := range []string{"Content-Type", "ETag", "X-Muninn-Prefixes"} {
			require.Equal(t, get.Get(h), head.Get(h), "HEAD %s: %s", path, h)
		}
		etag := get.Get("ETag")
		if etag == "" {
			// Streamed: net/http counted a short GET body itself.
			require.Empty(t, head.Get("Content-Length"), "HEAD %s", path)
			continue
		}
		// Served from a cache or a file: the length is known.
		require.Equal(t, get.Get("Content-Length"), head.Get("Content-Length"), "HEAD %s", path)
		withETag++
		for inm, want := range map[string]int{
			etag:                            http.StatusNotModified,
			"*":                             http.StatusNotModified,
			`"other", ` + etag:              http.StatusNotModified,
			"W/" + etag:                     http.StatusNotModified,
			`W/"other",W/` + etag + `, "x"`: http.StatusNotModified,
			`"other"`:                       http.StatusOK,
			`"other", W/"x"`:                http.StatusOK,
			strings.Trim(etag, `"`):         http.StatusOK, // not an entity tag
		} {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				status, body, hdr := b.send(t, m, path, inm)
				require.Equal(t, want, status, "%s %s If-None-Match: %s", m, path, inm)
				require.Equal(t, etag, hdr.Get("ETag"), "%s %s If-None-Match: %s", m, path, inm)
				if status == http.StatusNotModified || m == http.MethodHead {
					require.Empty(t, body)
				}
			}
		}
	}
	require.Equal(t, 5, withETag, "mmdb, deny, allow, render, list prefixes")

	// HEAD of something missing answers like its GET; a method no operation has lists HEAD.
	status, _, _ := b.send(t, http.MethodHead, "/api/v1/lists/none/prefixes", "")
	require.Equal(t, http.StatusNotFound, status)
	status, _, hdr := b.send(t, http.MethodPost, "/api/v1/export/ips.csv", "")
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.Equal(t, "GET, HEAD", hdr.Get("Allow"))

	// Every export is a closed query: a misspelt filter is a 400 naming it.
	for _, path := range exportPaths {
		if !strings.HasPrefix(path, "/api/v1/export/") {
			continue
		}
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			status, body, hdr := b.send(t, m, path+"?clasification=malicious", "")
			require.Equal(t, http.StatusBadRequest, status, "%s %s", m, path)
			require.Equal(t, "application/problem+json", hdr.Get("Content-Type"), "%s %s", m, path)
			if m == http.MethodGet {
				require.Contains(t, body, `{"field":"clasification","reason":"is not a parameter of this operation"}`, path)
			}
		}
	}
}

// TestMMDBRebuildInterval: under MUNINN_MMDB_REBUILD a change of the data
// within the interval gets the last build (same file, same ETag, 304 for
// it); once the interval has passed the next request builds anew.
func TestMMDBRebuildInterval(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	b := setupRenderWith(t, storetest.Store(t), func(d *httpserver.Deps) {
		d.Now = now
		d.MMDBRebuild = time.Minute
	})
	found := func(body, addr string) bool {
		db, err := maxminddb.OpenBytes([]byte(body))
		require.NoError(t, err)
		return db.Lookup(netip.MustParseAddr(addr)).Found()
	}
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","classification":"malicious"}`+"\n")
	status, body1, hdr := b.send(t, http.MethodGet, "/api/v1/export/muninn.mmdb", "")
	require.Equal(t, http.StatusOK, status)
	etag := hdr.Get("ETag")
	require.True(t, found(body1, "198.51.100.7"))
	require.True(t, found(body1, "::ffff:198.51.100.7"))

	b.ingest(t, `{"ip":"203.0.113.9","source":"feed","classification":"malicious"}`+"\n")
	clock.Add(int64(59 * time.Second))
	status, body2, hdr := b.send(t, http.MethodGet, "/api/v1/export/muninn.mmdb", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, etag, hdr.Get("ETag"), "within the interval: the last build")
	require.Equal(t, body1, body2)
	status, _, _ = b.send(t, http.MethodGet, "/api/v1/export/muninn.mmdb", etag)
	require.Equal(t, http.StatusNotModified, status)

	clock.Add(int64(time.Second))
	status, body3, hdr := b.send(t, http.MethodGet, "/api/v1/export/muninn.mmdb", etag)
	require.Equal(t, http.StatusOK, status, "a minute after the last build: built anew")
	require.NotEqual(t, etag, hdr.Get("ETag"))
	require.True(t, found(body3, "203.0.113.9"))
	require.True(t, found(body3, "198.51.100.7"))
}
