package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

type testBundle struct {
	srv                   *httptest.Server
	store                 *store.Store
	ix                    *index.Index
	admin, writer, reader string
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	return setupWith(t, apitest.ValidateResponses(t))
}

// setupWith is setup with wrap around the handler (nil: none, for
// benchmarks that measure the server alone).
func setupWith(t testing.TB, wrap func(http.Handler) http.Handler, opts ...func(*httpserver.Deps)) *testBundle {
	t.Helper()
	st := storetest.Store(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ix := indextest.Start(t, st, log, nil)
	deps := httpserver.Deps{Store: st, Index: ix, Logger: log, Now: time.Now, Registry: prometheus.NewRegistry(), MaxIngestBytes: 1 << 20,
		Wrap: wrap}
	for _, o := range opts {
		o(&deps)
	}
	h, err := httpserver.New(deps)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := &testBundle{srv: srv, store: st, ix: ix}
	for role, dst := range map[string]*string{api.RoleAdmin: &b.admin, api.RoleWriter: &b.writer, api.RoleReader: &b.reader} {
		_, secret, err := api.CreateToken(context.Background(), st, "t-"+role, role, nil, "test")
		require.NoError(t, err)
		*dst = secret
	}
	return b
}

// do sends a request with a bearer token and returns the status and body.
func (b *testBundle) do(t testing.TB, token, method, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	if token == "" {
		return b.doWith(t, "", "", method, path, contentType, body)
	}
	return b.doWith(t, "Authorization", "Bearer "+token, method, path, contentType, body)
}

// doWith sends a request with one credential header and returns the status and body.
func (b *testBundle) doWith(t testing.TB, header, value, method, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, body)
	require.NoError(t, err)
	if header != "" {
		req.Header.Set(header, value)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func (b *testBundle) json(t *testing.T, token, method, path string, in any, wantStatus int, out any) []byte {
	t.Helper()
	var body io.Reader
	ct := ""
	if in != nil {
		raw, err := json.Marshal(in)
		require.NoError(t, err)
		body, ct = bytes.NewReader(raw), "application/json"
	}
	status, raw := b.do(t, token, method, path, ct, body)
	require.Equal(t, wantStatus, status, "body: %s", raw)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "body: %s", raw)
	}
	return raw
}

type ingestResult struct {
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Errors   []struct {
		Line   int64  `json:"line"`
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"errors"`
}

func (b *testBundle) ingest(t testing.TB, ndjson string) ingestResult {
	t.Helper()
	status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", strings.NewReader(ndjson))
	require.Equal(t, http.StatusOK, status, "body: %s", raw)
	var res ingestResult
	require.NoError(t, json.Unmarshal(raw, &res))
	return res
}

type view struct {
	Address        string   `json:"address"`
	Network        string   `json:"network"`
	Classification string   `json:"classification"`
	ClsSource      string   `json:"classification_source"`
	Sources        []string `json:"sources"`
	Note           string   `json:"note"`
	Sightings      int64    `json:"sightings"`
	Tags           []struct {
		Name, Source, Prefix string
	} `json:"tags"`
	Suppressed []struct{ Name string } `json:"suppressed_tags"`
	Prefixes   []struct {
		Prefix string `json:"prefix"`
	} `json:"prefixes"`
}

func (v view) tagNames() []string {
	var out []string
	for _, t := range v.Tags {
		out = append(out, t.Name)
	}
	return out
}

type problem struct {
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field, Reason string
	} `json:"errors"`
}

// TestIngestLineErrorsNameTheField: a line that is JSON but not an
// observation is answered with the field (a JSON pointer) and what it must
// be, in the contract's words: no Go type names or time layouts (a trial
// saw `parsing time "yesterday" as "2006-01-02T15:04:05Z07:00"`), and a
// seen_at before 2000 is refused (a trial's 1970 showed as 0001-01-01).
func TestIngestLineErrorsNameTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct{ line, field, reason string }{
		{`{"ip":"198.51.100.1","seen_at":"yesterday"}`, "/seen_at", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"},
		{`{"ip":"198.51.100.1","seen_at":1767225600}`, "/seen_at", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"},
		{`{"ip":"198.51.100.1","seen_at":"2026-13-01T00:00:00Z"}`, "/seen_at", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"},
		{`{"ip":"198.51.100.1","seen_at":"1970-01-01T00:00:00Z"}`, "/seen_at", "is before 2000-01-01T00:00:00Z"},
		{`{"ip":"198.51.100.1","seen_at":"0001-01-01T00:00:00Z"}`, "/seen_at", "is before 2000-01-01T00:00:00Z"},
		{`{"ip":"198.51.100.1","foo":1}`, "/foo", "is not a field of an observation (ip, source, tags, classification, seen_at, ttl, note)"},
		{`{"ip":5}`, "/ip", "must be a string, not a JSON number"},
		{`{"ip":"198.51.100.1","tags":"scanner"}`, "/tags", "must be an array of tag names, not a JSON string"},
		{`{"ip":"198.51.100.1","tags":[1]}`, "/tags/0", "must be a tag name (a string), not a JSON number"},
		{`{"ip":"198.51.100.1","tags":["ok",null]}`, "/tags/1", "must be a tag name (a string), not a JSON null"},
		// encoding/json matches keys ignoring case and keeps the last of
		// two: a new-user trial stored {"IP":...} and the second "ip".
		{`{"IP":"198.51.100.1"}`, "/IP", "is not a field of an observation (ip, source, tags, classification, seen_at, ttl, note)"},
		{`{"ip":"198.51.100.1","ip":"198.51.100.2"}`, "/ip", "is given more than once"},
		{`{"ip":"198.51.100.1","a/b~c":1}`, "/a~1b~0c", "is not a field of an observation (ip, source, tags, classification, seen_at, ttl, note)"},
		{`{"ip":"198.51.100.1","` + strings.Repeat("k", 200) + `":1}`, "/" + strings.Repeat("k", 63) + "…", "is not a field of an observation (ip, source, tags, classification, seen_at, ttl, note)"},
		{`null`, "", "must be a JSON object (an observation)"},
		{`{"ip":"198.51.100.1","ttl":"1ns"}`, "/ttl", "must be at least 1 second and at most 10 years"},
		{`{"ip":"198.51.100.1","seen_at":"2099-01-01T00:00:00Z"}`, "/seen_at", "is more than 5 minutes in the future"},
		{`{"ip":"198.51.100.1","source":{}}`, "/source", "must be a string, not a JSON object"},
		{`[{"ip":"198.51.100.1"}]`, "", "must be a JSON object (an observation)"},
		{`{"ip":"198.51.100.1",}`, "", "malformed JSON at column 22: invalid character '}' looking for beginning of object key string"},
		{`{"ip":"198.51.100.1"} {}`, "", "malformed JSON: unexpected data after the object"},
		{`{"ip":"198.51.100.1"}}`, "", "malformed JSON: unexpected data after the object"},
	}
	var body []string
	for _, c := range cases {
		body = append(body, c.line)
	}
	res := b.ingest(t, strings.Join(body, "\n"))
	require.EqualValues(t, 0, res.Accepted)
	require.EqualValues(t, len(cases), res.Rejected)
	require.Len(t, res.Errors, len(cases))
	for i, c := range cases {
		e := res.Errors[i]
		require.EqualValues(t, i+1, e.Line, c.line)
		require.Equal(t, c.field, e.Field, c.line)
		require.Equal(t, c.reason, e.Reason, c.line)
	}
	status, _ := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.1", "", nil)
	require.Equal(t, http.StatusNotFound, status, "nothing of a rejected line is stored")
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.2", "", nil)
	require.Equal(t, http.StatusNotFound, status, "nothing of a rejected line is stored")

	// A reason that quotes the line's value is bounded: a megabyte ip
	// is not echoed back a thousand times.
	res = b.ingest(t, `{"ip":"`+strings.Repeat("1", 100_000)+`"}`)
	require.EqualValues(t, 1, res.Rejected)
	require.Equal(t, "/ip", res.Errors[0].Field)
	require.LessOrEqual(t, len(res.Errors[0].Reason), 512+len("…"))
}

// A JSON array body is the whole body: what follows its closing bracket is
// reported, not dropped (a trial's second array and NDJSON lines after an
// array were answered 200 and never stored).
func TestIngestDataAfterTheArrayIsReported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, c := range []struct{ body, next string }{
		{`[{"ip":"198.51.100.3"}]` + "\n" + `[{"ip":"198.51.100.4"}]`, "'['"},
		{`[{"ip":"198.51.100.3"}] {"ip":"198.51.100.4"}`, "'{'"},
		{`[{"ip":"198.51.100.3"},{"ip":"198.51.100.5"}]xyz`, "'x'"},
	} {
		status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/json", strings.NewReader(c.body))
		require.Equal(t, http.StatusOK, status, "%s", raw)
		var res ingestResult
		require.NoError(t, json.Unmarshal(raw, &res))
		n := int64(strings.Count(c.body, "},{") + 1)
		require.Equal(t, n, res.Accepted, c.body)
		require.EqualValues(t, 1, res.Rejected, c.body)
		require.Equal(t, n+1, res.Errors[0].Line, c.body)
		require.Equal(t, "unexpected data after the array: a body is one JSON array or NDJSON lines, and nothing after the array was read ("+c.next+")",
			res.Errors[0].Reason, c.body)
		status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.4", "", nil)
		require.Equal(t, http.StatusNotFound, status, c.body)
	}
	// White space after the array is fine.
	res := b.ingest(t, "[{\"ip\":\"198.51.100.6\"}]\n\n  \n")
	require.EqualValues(t, 1, res.Accepted)
	require.Empty(t, res.Errors)
}

func TestIngestNDJSONReportsBadLinesAndStoresGoodOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.ingest(t, strings.Join([]string{
		`{"ip":"198.51.100.7","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious","note":"from the honeypot"}`,
		``,
		`{"ip":"203.0.113.77/24","source":"netflow","tags":["scanner"],"ttl":"24h"}`,
		`{"ip":"198.51.100.300"}`,
		`{"ip":"198.51.100.8","colour":"red"}`,
		`not json`,
		`{"ip":"::ffff:198.51.100.9","classification":"evil"}`,
		`{"ip":"::ffff:198.51.100.9","tags":["x"],"ttl":-5}`,
		`{"ip":"2001:db8::1","source":"zeek","tags":["dns-tunnel"],"seen_at":"2026-01-02T03:04:05Z"}`,
		`{"ip":"::ffff:198.51.100.10"}`,
	}, "\n"))
	require.EqualValues(t, 4, res.Accepted)
	require.EqualValues(t, 5, res.Rejected)
	lines := map[int64]string{}
	for _, e := range res.Errors {
		lines[e.Line] = e.Field + ": " + e.Reason
	}
	require.Contains(t, lines[4], "/ip: ")
	require.Equal(t, "/colour: is not a field of an observation (ip, source, tags, classification, seen_at, ttl, note)", lines[5])
	require.Equal(t, ": malformed JSON at column 2: invalid character 'o' in literal null (expecting 'u')", lines[6])
	require.Contains(t, lines[7], "classification")
	require.Contains(t, lines[8], "ttl")

	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.7", nil, 200, &v)
	require.Equal(t, "malicious", v.Classification)
	require.Equal(t, "ingest:cowrie", v.ClsSource)
	require.Equal(t, []string{"ssh-bruteforce"}, v.tagNames())
	require.Equal(t, "from the honeypot", v.Note)
	require.EqualValues(t, 1, v.Sightings)

	// An address inside the /24 inherits its tag; the /24 was stored canonical.
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/203.0.113.5", nil, 200, &v)
	require.Equal(t, []string{"scanner"}, v.tagNames())
	require.Equal(t, "203.0.113.0/24", v.Prefixes[0].Prefix)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/203.0.113.0/24", nil, 200, &v)
	require.Equal(t, "203.0.113.0/24", v.Network)

	// IPv4-mapped IPv6 is unmapped on the way in and on lookup.
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.10", nil, 200, &v)
	require.Equal(t, "198.51.100.10", v.Address)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/::ffff:198.51.100.10", nil, 200, &v)
	require.Equal(t, "198.51.100.10", v.Address)

	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/2001:db8::1", nil, 200, &v)
	require.Equal(t, []string{"dns-tunnel"}, v.tagNames())

	var p problem
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.200", nil, 404, &p)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.256", nil, 400, &p)
	require.Equal(t, "address", p.Errors[0].Field)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/203.0.113.1/24", nil, 400, &p)
	require.Contains(t, p.Errors[0].Reason, "host bits")
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/203.0.113.0/33", nil, 400, &p)
	require.Equal(t, "bits", p.Errors[0].Field)
}

func TestIngestJSONArray(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/json",
		strings.NewReader(`[{"ip":"198.51.100.1","tags":["a"]}, {"ip":"nope"}, {"ip":"198.51.100.2","tags":["a"]}]`))
	require.Equal(t, 200, status, "%s", raw)
	var res ingestResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.EqualValues(t, 2, res.Accepted)
	require.EqualValues(t, 1, res.Rejected)
	require.EqualValues(t, 2, res.Errors[0].Line)

	// A broken array keeps what came before the break.
	status, raw = b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/json",
		strings.NewReader(`[{"ip":"198.51.100.3"}, {"ip": ]`))
	require.Equal(t, 200, status, "%s", raw)
	require.NoError(t, json.Unmarshal(raw, &res))
	require.EqualValues(t, 1, res.Accepted)
	require.EqualValues(t, 1, res.Rejected)

	status, raw = b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "text/plain", strings.NewReader(`198.51.100.4`))
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%s", raw)
	for _, empty := range []string{"", "  \n"} {
		status, raw = b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", strings.NewReader(empty))
		require.Equal(t, 400, status, "%s", raw)
		require.Contains(t, string(raw), "empty")
	}
}

func TestIngestBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	line := `{"ip":"198.51.100.1","tags":["a"]}` + "\n"
	big := strings.Repeat(line, (1<<20)/len(line)+10)
	// With a Content-Length over the limit nothing is read or stored.
	status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", strings.NewReader(big))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", raw)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.1", "", nil)
	require.Equal(t, 404, status)
	// A chunked body over the limit stops at the limit and says so.
	status, raw = b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", io.MultiReader(strings.NewReader(big)))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", raw)
	var p ingestProblem
	require.NoError(t, json.Unmarshal(raw, &p))
	stored := int64((1 << 20) / len(line)) // every whole line before the limit
	require.Equal(t, ingestProblem{Status: 413, Accepted: stored, Rejected: 0, StoppedAtLine: stored + 1}, p.counts())
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"203.0.113.0/24","source":"feedish","tags":["scanner"],"classification":"malicious"}`)

	var v view
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.7/override",
		map[string]any{"classification": "benign", "suppress_tags": []string{"scanner"}, "add_tags": []string{"friend"}, "note": "our monitor"}, 200, &v)
	require.Equal(t, "benign", v.Classification, "a manual classification beats every automatic one")
	require.Equal(t, "manual:t-writer", v.ClsSource)
	require.Equal(t, []string{"friend"}, v.tagNames())
	require.Len(t, v.Suppressed, 1)
	require.Equal(t, "our monitor", v.Note)

	// The neighbour is untouched.
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/203.0.113.8", nil, 200, &v)
	require.Equal(t, "malicious", v.Classification)
	require.Equal(t, []string{"scanner"}, v.tagNames())

	// A network override, and PUT replaces rather than merges.
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/203.0.113.0/24/override", map[string]any{"classification": "suspicious"}, 200, &v)
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/203.0.113.0/24/override", map[string]any{"add_tags": []string{"reviewed"}}, 200, &v)
	require.Equal(t, "malicious", v.Classification, "the second PUT dropped the manual classification")

	var p problem
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.7/override", map[string]any{"classification": "evil"}, 400, &p)
	require.Equal(t, "/classification", p.Errors[0].Field)
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.7/override", map[string]any{"add_tags": []string{"a,b"}}, 400, &p)
	require.Equal(t, "/add_tags/0", p.Errors[0].Field)
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.7/override", map[string]any{"expires_at": "2001-01-01T00:00:00Z"}, 400, &p)
	require.Equal(t, "/expires_at", p.Errors[0].Field)
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.7/override", map[string]any{"surprise": 1}, 400, &p)
	require.Equal(t, "/surprise", p.Errors[0].Field)
	b.json(t, b.reader, http.MethodPut, "/api/v1/ips/203.0.113.7/override", map[string]any{"classification": "benign"}, 403, &p)

	b.json(t, b.writer, http.MethodDelete, "/api/v1/ips/203.0.113.7/override", nil, 204, nil)
	b.json(t, b.writer, http.MethodDelete, "/api/v1/ips/203.0.113.7/override", nil, 404, &p)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/203.0.113.7", nil, 200, &v)
	require.Equal(t, "malicious", v.Classification)
	require.ElementsMatch(t, []string{"scanner", "reviewed"}, v.tagNames())

	// Every change is in the audit log, newest first, with before and after.
	var audit struct {
		Items []struct {
			Actor, Action, Object string
			Before, After         map[string]any
		} `json:"items"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/audit?object=prefix/203.0.113.7/32", nil, 200, &audit)
	require.Len(t, audit.Items, 2)
	require.Equal(t, "override.delete", audit.Items[0].Action)
	require.Equal(t, "benign", audit.Items[0].Before["classification"])
	require.Nil(t, audit.Items[0].After)
	require.Equal(t, "override.put", audit.Items[1].Action)
	require.Equal(t, "t-writer", audit.Items[1].Actor)
}

func TestOverrideExpires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"198.51.100.20","tags":["scanner"],"classification":"malicious"}`)
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	require.NoError(t, b.store.PutOverride(ctx, mustPrefix("198.51.100.20/32"), store.Override{Classification: "benign", ExpiresAt: &past}, "test", time.Now().Add(-time.Hour)))
	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.20", nil, 200, &v)
	require.Equal(t, "malicious", v.Classification, "an expired override no longer counts")
}

func TestSearchPaginatesWhileIngestRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var sb strings.Builder
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&sb, `{"ip":"198.51.%d.%d","tags":["bulk"],"classification":"suspicious"}`+"\n", 100+i/200, i%200)
	}
	b.ingest(t, sb.String())
	b.ingest(t, `{"ip":"192.0.2.1","tags":["other"]}`)

	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		var res struct {
			Items []struct {
				Prefix         string   `json:"prefix"`
				Tags           []string `json:"tags"`
				Classification string   `json:"classification"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		b.json(t, b.reader, http.MethodGet, "/api/v1/ips?tag=bulk&limit=100&cursor="+cursor, nil, 200, &res)
		for _, it := range res.Items {
			require.False(t, seen[it.Prefix], "duplicate %s", it.Prefix)
			require.Equal(t, "suspicious", it.Classification)
			seen[it.Prefix] = true
		}
		if page == 0 {
			// New matching rows arrive mid-pagination: they come after the cursor.
			b.ingest(t, `{"ip":"198.51.102.1","tags":["bulk"],"classification":"suspicious"}`)
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
	}
	require.Len(t, seen, 251)

	var res struct {
		Items []struct{ Prefix string } `json:"items"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?within=192.0.2.0/24", nil, 200, &res)
	require.Len(t, res.Items, 1)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?source=ingest:t-*&classification=suspicious&limit=1000", nil, 200, &res)
	require.Len(t, res.Items, 251)
	var p problem
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?within=300.0.0.0/8", nil, 400, &p)
	require.Equal(t, "within", p.Errors[0].Field)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?limit=1001", nil, 400, &p)
	require.Equal(t, "limit", p.Errors[0].Field)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips?cursor=abc", nil, 400, &p)
	require.Equal(t, "cursor", p.Errors[0].Field)
}

func TestAuthAndRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var p problem
	b.json(t, "", http.MethodGet, "/api/v1/tags", nil, 401, &p)
	require.Contains(t, p.Detail, "Bearer")
	b.json(t, "mnn_wrong", http.MethodGet, "/api/v1/tags", nil, 401, &p)
	status, _ := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", strings.NewReader(`{"ip":"192.0.2.1"}`))
	require.Equal(t, 200, status)
	status, _ = b.do(t, b.reader, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", strings.NewReader(`{"ip":"192.0.2.1"}`))
	require.Equal(t, 403, status)
	b.json(t, b.writer, http.MethodGet, "/api/v1/tokens", nil, 403, &p)
	require.Contains(t, p.Detail, "admin")

	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
		Role  string `json:"role"`
	}
	b.json(t, b.admin, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "pipeline", "role": "writer"}, 201, &created)
	require.True(t, strings.HasPrefix(created.Token, api.TokenPrefix))
	b.json(t, created.Token, http.MethodGet, "/api/v1/tags", nil, 200, nil)
	raw := b.json(t, b.admin, http.MethodGet, "/api/v1/tokens", nil, 200, nil)
	require.NotContains(t, string(raw), created.Token, "secrets are shown once")
	b.json(t, b.admin, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "pipeline", "role": "writer"}, 409, &p)
	b.json(t, b.admin, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "x", "role": "root"}, 400, &p)
	require.Equal(t, "/role", p.Errors[0].Field)
	b.json(t, b.admin, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "x y", "role": "reader"}, 400, &p)
	b.json(t, b.admin, http.MethodDelete, fmt.Sprintf("/api/v1/tokens/%d", created.ID), nil, 204, nil)
	b.json(t, created.Token, http.MethodGet, "/api/v1/tags", nil, 401, &p)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/tokens/999999", nil, 404, &p)

	// An expired token is refused with a reason.
	past := time.Now().Add(-time.Second)
	_, err := b.store.CreateToken(context.Background(), "old", "admin", &past, store.HashSecret("mnn_expired"), "test")
	require.NoError(t, err)
	b.json(t, "mnn_expired", http.MethodGet, "/api/v1/tags", nil, 401, &p)
	require.Contains(t, p.Detail, "expired")
}

func TestTagsAndDefaultTTL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var tag struct {
		Name       string `json:"name"`
		DefaultTTL string `json:"default_ttl"`
		Prefixes   int64  `json:"prefixes"`
	}
	b.json(t, b.writer, http.MethodPut, "/api/v1/tags/honeypot", map[string]any{"description": "hit a honeypot", "color": "#c0392b", "default_ttl": "1h"}, 200, &tag)
	require.Equal(t, "1h0m0s", tag.DefaultTTL)
	b.ingest(t, `{"ip":"198.51.100.1","tags":["honeypot"],"seen_at":"`+time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339)+`"}`+"\n"+`{"ip":"198.51.100.2","tags":["honeypot"]}`)
	b.json(t, b.reader, http.MethodGet, "/api/v1/tags/honeypot", nil, 200, &tag)
	require.EqualValues(t, 1, tag.Prefixes, "the observation two hours old expired after the tag's default TTL")
	var p problem
	b.json(t, b.writer, http.MethodPut, "/api/v1/tags/honeypot", map[string]any{"color": "red"}, 400, &p)
	require.Equal(t, "/color", p.Errors[0].Field)
	b.json(t, b.writer, http.MethodPut, "/api/v1/tags/honeypot", map[string]any{"default_ttl": "soon"}, 400, &p)
	require.Equal(t, "/default_ttl", p.Errors[0].Field)
	b.json(t, b.writer, http.MethodDelete, "/api/v1/tags/honeypot", nil, 204, nil)
	b.json(t, b.writer, http.MethodDelete, "/api/v1/tags/honeypot", nil, 404, &p)
	var all []struct{ Name string }
	b.json(t, b.reader, http.MethodGet, "/api/v1/tags", nil, 200, &all)
	require.Empty(t, all)
}

func TestExports(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"198.51.100.7","source":"cowrie","tags":["ssh","brute"],"classification":"malicious","note":"tab\there"}`+"\n"+
		`{"ip":"2001:db8::/48","tags":["v6"]}`)

	status, raw := b.do(t, b.reader, http.MethodGet, "/api/v1/export/ips.csv", "", nil)
	require.Equal(t, 200, status)
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3)
	require.Equal(t, "prefix", rows[0][0])
	require.Equal(t, []string{"198.51.100.7/32", "malicious", "brute,ssh"}, rows[1][:3])

	status, raw = b.do(t, b.reader, http.MethodGet, "/api/v1/export/ips.json?tag=v6", "", nil)
	require.Equal(t, 200, status)
	var items []map[string]any
	require.NoError(t, json.Unmarshal(raw, &items))
	require.Len(t, items, 1)
	require.Equal(t, "2001:db8::/48", items[0]["prefix"])

	status, raw = b.do(t, b.reader, http.MethodGet, "/api/v1/export/ips.ndjson", "", nil)
	require.Equal(t, 200, status)
	require.Len(t, strings.Split(strings.TrimSpace(string(raw)), "\n"), 2)

	status, raw = b.do(t, b.reader, http.MethodGet, "/api/v1/export/clickhouse.tsv?classification=malicious", "", nil)
	require.Equal(t, 200, status)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Equal(t, strings.Join(api.ClickHouseColumns, "\t"), lines[0])
	require.Len(t, lines, 2)
	fields := strings.Split(lines[1], "\t")
	require.Len(t, fields, len(api.ClickHouseColumns))
	require.Equal(t, []string{"198.51.100.7/32", "malicious", "100", "brute,ssh", "0"}, fields[:5])
	require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`, fields[8])

	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/export/ips.csv?within=nope", "", nil)
	require.Equal(t, 400, status)
}

func TestOpenAPIAndHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, raw := b.do(t, "", http.MethodGet, "/api/v1/openapi.yaml", "", nil)
	require.Equal(t, 200, status)
	require.Contains(t, string(raw), "openapi: 3.0.3")
	for _, name := range []string{"feeds.yaml", "bouncer.yaml"} {
		status, _ = b.do(t, "", http.MethodGet, "/api/v1/"+name, "", nil)
		require.Equal(t, 404, status, "one contract: %s is gone", name)
	}
	status, raw = b.do(t, "", http.MethodGet, "/readyz", "", nil)
	require.Equal(t, 200, status, "%s", raw)
	status, _ = b.do(t, "", http.MethodGet, "/healthz", "", nil)
	require.Equal(t, 200, status)
	status, raw = b.do(t, "", http.MethodGet, "/metrics", "", nil)
	require.Equal(t, 200, status)
	require.Contains(t, string(raw), "muninn_http_request_duration_seconds")
	status, raw = b.do(t, b.reader, http.MethodGet, "/api/v1/nothing-here", "", nil)
	require.Equal(t, 404, status, "%s", raw)
	require.Contains(t, string(raw), `"status":404`)
}

func TestLookupShowsEnrichment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.ingest(t, `{"ip":"198.51.100.7","tags":["x"]}`)
	ctx := context.Background()
	_, err := b.store.ReplaceGeoNetworks(ctx, "test", func(yield func(store.GeoNetwork, error) bool) {
		_ = yield(store.GeoNetwork{Network: netip.MustParsePrefix("198.51.0.0/16"), Country: "DE", Continent: "EU", ASN: 64500, ASOrg: "Example Hosting"}, nil) &&
			yield(store.GeoNetwork{Network: netip.MustParsePrefix("198.51.100.0/24"), Country: "FR", Continent: "EU", ASN: 64501, ASOrg: "Example Edge"}, nil)
	})
	require.NoError(t, err)
	require.NoError(t, b.store.PutRDAPNetwork(ctx, store.RDAPNetwork{Network: netip.MustParsePrefix("198.51.100.0/24"), Handle: "NET-1", Name: "EXAMPLE-NET",
		Org: "Example Org", Country: "FR", AbuseEmail: "abuse@example.net", Registry: "ripe", FetchedAt: time.Now()}))
	addr := netip.MustParseAddr("198.51.100.7")
	require.NoError(t, b.store.PutHostnames(ctx, addr, "ptr", []string{"old.example.net"}, time.Now().Add(-24*time.Hour)))
	require.NoError(t, b.store.PutHostnames(ctx, addr, "ptr", []string{"scanner.example.net"}, time.Now()))
	// The writers record their changes; the index applies them (the API
	// reads nothing else).
	require.NoError(t, b.ix.CatchUp(ctx))
	var v struct {
		Geo struct {
			Country, Continent, Network string
		} `json:"geo"`
		ASN struct {
			Number       int64  `json:"number"`
			Organization string `json:"organization"`
		} `json:"asn"`
		RDAP struct {
			Org        string `json:"org"`
			AbuseEmail string `json:"abuse_email"`
		} `json:"rdap"`
		Hostnames []struct{ Name string } `json:"hostnames"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.7", nil, 200, &v)
	require.Equal(t, "FR", v.Geo.Country, "the most specific geo network wins")
	require.Equal(t, "198.51.100.0/24", v.Geo.Network)
	require.EqualValues(t, 64501, v.ASN.Number)
	require.Equal(t, "Example Edge", v.ASN.Organization)
	require.Equal(t, "abuse@example.net", v.RDAP.AbuseEmail)
	require.Len(t, v.Hostnames, 2)
	require.Equal(t, "scanner.example.net", v.Hostnames[0].Name, "newest name first")
	// A network view has geo and RDAP but no names.
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/198.51.100.0/24/override", map[string]any{"note": "n"}, 200, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/198.51.100.0/24", nil, 200, &v)
	require.Equal(t, "FR", v.Geo.Country)
}

// TestIPViewEnrichmentStatus: the address view carries the last RDAP and PTR
// attempt (time, outcome, error); an address never tried has none, and the
// network view none at all.
func TestIPViewEnrichmentStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	code, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson",
		strings.NewReader(`{"ip":"198.51.100.20","tags":["a"]}`+"\n"+`{"ip":"198.51.100.21","tags":["a"]}`))
	require.Equal(t, 200, code, "%s", raw)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	addr := netip.MustParseAddr("198.51.100.20")
	require.NoError(t, b.store.RecordEnrichAttempt(ctx, store.EnrichRDAP, addr, at, store.EnrichError, "rdap: query 198.51.100.20 at arin: 503 Service Unavailable"))
	require.NoError(t, b.store.RecordEnrichAttempt(ctx, store.EnrichPTR, addr, at.Add(time.Minute), store.EnrichOK, ""))
	require.NoError(t, b.ix.CatchUp(ctx)) // the index serves the attempts

	type status struct {
		Kind        string    `json:"kind"`
		AttemptedAt time.Time `json:"attempted_at"`
		Outcome     string    `json:"outcome"`
		Error       string    `json:"error"`
	}
	var v struct {
		Enrichment []status `json:"enrichment"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.20", nil, 200, &v)
	require.Equal(t, []status{
		{Kind: "rdap", AttemptedAt: at, Outcome: "error", Error: "rdap: query 198.51.100.20 at arin: 503 Service Unavailable"},
		{Kind: "ptr", AttemptedAt: at.Add(time.Minute), Outcome: "ok"},
	}, v.Enrichment)

	// A retry replaces the attempt.
	require.NoError(t, b.store.RecordEnrichAttempt(ctx, store.EnrichRDAP, addr, at.Add(time.Hour), store.EnrichNotFound, "rdap: no network found"))
	require.NoError(t, b.ix.CatchUp(ctx))
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.20", nil, 200, &v)
	require.Equal(t, status{Kind: "rdap", AttemptedAt: at.Add(time.Hour), Outcome: "not_found", Error: "rdap: no network found"}, v.Enrichment[0])

	v.Enrichment = nil
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.21", nil, 200, &v)
	require.Nil(t, v.Enrichment)
}
