package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
)

// ingestProblem is the problem of an ingest that stopped part-way.
type ingestProblem struct {
	Status        int   `json:"status"`
	Accepted      int64 `json:"accepted"`
	Rejected      int64 `json:"rejected"`
	StoppedAtLine int64 `json:"stopped_at_line"`
	Errors        []struct {
		Field, Reason string
	} `json:"errors"`
}

// counts is p without its errors, to compare with an expected value.
func (p ingestProblem) counts() ingestProblem {
	p.Errors = nil
	return p
}

func withIngest(maxBytes int64, batch int) func(*httpserver.Deps) {
	return func(d *httpserver.Deps) {
		d.MaxIngestBytes = maxBytes
		d.IngestBatch = batch
	}
}

// hostLine is a good observation of a distinct address of 2001:db8::/32.
func hostLine(i int) string {
	return fmt.Sprintf(`{"ip":"2001:db8::%x","tags":["scanner"]}`, i)
}

func (b *testBundle) prefixCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM prefixes`).Scan(&n))
	return n
}

// A NUL in a note used to reach PostgreSQL, fail the second batch with a 500
// and leave the first 20,000 observations stored without a count. Now the line
// is rejected before the database and every good line is stored.
func TestIngestNULInNoteIsARejectedLine(t *testing.T) {
	t.Parallel()
	b := setupWith(t, nil, withIngest(8<<20, 0)) // the default batch of 20,000
	lines := make([]string, 0, 25001)
	for i := 1; i <= 25001; i++ {
		if i == 20001 {
			lines = append(lines, `{"ip":"198.51.100.1","note":"a\u0000b"}`)
			continue
		}
		lines = append(lines, hostLine(i))
	}
	res := b.ingest(t, strings.Join(lines, "\n"))
	require.EqualValues(t, 25000, res.Accepted)
	require.EqualValues(t, 1, res.Rejected)
	require.Len(t, res.Errors, 1)
	require.Equal(t, int64(20001), res.Errors[0].Line)
	require.Equal(t, "/note", res.Errors[0].Field)
	require.Equal(t, "must not contain NUL characters", res.Errors[0].Reason)
	require.Equal(t, 25000, b.prefixCount(t))
}

func TestIngestRejectsTextThatIsNotText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.ingest(t, strings.Join([]string{
		`{"ip":"198.51.100.1","tags":["a\u0000b"]}`,
		"{\"ip\":\"198.51.100.2\",\"note\":\"caf\xe9\"}", // Latin-1, not UTF-8
		`{"ip":"198.51.100.3","note":"\ud800 a lone surrogate decodes to U+FFFD"}`,
	}, "\n"))
	require.EqualValues(t, 1, res.Accepted)
	require.EqualValues(t, 2, res.Rejected)
	require.Equal(t, int64(1), res.Errors[0].Line)
	require.Equal(t, "/tags/0", res.Errors[0].Field)
	require.Equal(t, "must not contain NUL characters", res.Errors[0].Reason)
	require.Equal(t, int64(2), res.Errors[1].Line)
	require.Equal(t, "", res.Errors[1].Field)
	require.Equal(t, "is not valid UTF-8", res.Errors[1].Reason)
}

// When the database fails after some batches were stored, the answer says
// how many were stored and the line to resend from (PostgreSQL restarting
// mid-stream; here a trigger fails the second batch).
func TestIngestDatabaseFailureSaysWhereItStopped(t *testing.T) {
	t.Parallel()
	b := setupWith(t, nil, withIngest(8<<20, 10000))
	_, err := b.store.Pool().Exec(context.Background(), `
		CREATE FUNCTION fail_boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.source = 'ingest:boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER fail_boom BEFORE INSERT ON assertions FOR EACH ROW EXECUTE FUNCTION fail_boom();`)
	require.NoError(t, err)
	lines := make([]string, 0, 25000)
	for i := 1; i <= 25000; i++ {
		switch i {
		case 5:
			lines = append(lines, `{"ip":"nope"}`)
		case 15000:
			lines = append(lines, `{"ip":"198.51.100.1","source":"boom","tags":["boom"]}`)
		default:
			lines = append(lines, hostLine(i))
		}
	}
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/ingest", strings.NewReader(strings.Join(lines, "\n")))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.writer)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", raw)
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	var p ingestProblem
	require.NoError(t, json.Unmarshal(raw, &p))
	// The first batch: lines 1–10001, 10,000 rows and the bad line 5.
	require.Equal(t, ingestProblem{Status: 503, Accepted: 10000, Rejected: 1, StoppedAtLine: 10002}, p)
	require.Equal(t, 10000, b.prefixCount(t))
}

func TestIngestSkipsByteOrderMark(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bom := "\ufeff"
	res := b.ingest(t, bom+`{"ip":"198.51.100.1","tags":["a"]}`+"\n"+`{"ip":"198.51.100.2","tags":["a"]}`)
	require.Equal(t, ingestResult{Accepted: 2, Rejected: 0, Errors: res.Errors}, res)
	require.Empty(t, res.Errors)

	status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest", "application/json",
		strings.NewReader(bom+`[{"ip":"198.51.100.3","tags":["a"]},{"ip":"198.51.100.4","tags":["a"]}]`))
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.JSONEq(t, `{"accepted":2,"rejected":0,"errors":[]}`, string(raw))
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func (b *testBundle) postEncoded(t *testing.T, encoding, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/ingest", body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.writer)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Content-Encoding", encoding)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// Log shippers send gzip: it used to be answered 200 with every line rejected.
func TestIngestGzipBody(t *testing.T) {
	t.Parallel()
	b := setup(t) // 1 MiB limit
	status, raw := b.postEncoded(t, "gzip", "application/x-ndjson",
		bytes.NewReader(gzipped(t, `{"ip":"198.51.100.1","tags":["a"]}`+"\n"+`{"ip":"198.51.100.2","tags":["a"]}`+"\n")))
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.JSONEq(t, `{"accepted":2,"rejected":0,"errors":[]}`, string(raw))

	status, raw = b.postEncoded(t, "gzip", "application/json", bytes.NewReader(gzipped(t, `[{"ip":"198.51.100.3","tags":["a"]}]`)))
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.JSONEq(t, `{"accepted":1,"rejected":0,"errors":[]}`, string(raw))

	// The limit counts decompressed bytes: 2 MiB of lines in ~10 KB of gzip.
	line := `{"ip":"198.51.100.9","tags":["a"]}` + "\n"
	big := gzipped(t, strings.Repeat(line, (2<<20)/len(line)))
	require.Less(t, len(big), 1<<20)
	status, raw = b.postEncoded(t, "gzip", "application/x-ndjson", bytes.NewReader(big))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", raw)
	var p ingestProblem
	require.NoError(t, json.Unmarshal(raw, &p))
	stored := int64((1 << 20) / len(line))
	require.Equal(t, ingestProblem{Status: 413, Accepted: stored, StoppedAtLine: stored + 1}, p.counts())

	// A body that is not gzip is unreadable, not a line to reject.
	status, raw = b.postEncoded(t, "gzip", "application/x-ndjson", strings.NewReader(`{"ip":"198.51.100.4"}`))
	require.Equal(t, http.StatusBadRequest, status, "%s", raw)
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, ingestProblem{Status: 400, Accepted: 0, StoppedAtLine: 1}, p.counts())
	require.Equal(t, "unreadable", p.Errors[0].Reason)
	var detail struct{ Detail string }
	require.NoError(t, json.Unmarshal(raw, &detail))
	require.Equal(t, "the body could not be read: gzip: invalid header; 0 observations were stored and 0 lines rejected before line 1, nothing from it on was stored", detail.Detail, "the error names gzip once")

	status, raw = b.postEncoded(t, "br", "application/x-ndjson", strings.NewReader(`{"ip":"198.51.100.4"}`))
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%s", raw)
	require.Contains(t, string(raw), `"field":"Content-Encoding"`)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.4", "", nil)
	require.Equal(t, http.StatusNotFound, status)
}

// NUL or invalid UTF-8 in a parameter used to reach PostgreSQL and answer 500.
func TestParametersMustBeText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, c := range []struct{ path, field, reason string }{
		{"/api/v1/ips?tag=%FF", "tag", "must be valid UTF-8"},
		{"/api/v1/tags/a%00b", "name", "must not contain NUL characters"},
		{"/api/v1/tags/a%FFb", "name", "must be valid UTF-8"},
		{"/api/v1/ips?source=x%00", "source", "must not contain NUL characters"},
		{"/api/v1/ips?%FF=1", "\ufffd", "the name must be valid UTF-8"}, // JSON carries the bad byte as U+FFFD
	} {
		status, raw := b.do(t, b.reader, http.MethodGet, c.path, "", nil)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", c.path, raw)
		var p problem
		require.NoError(t, json.Unmarshal(raw, &p), c.path)
		require.Len(t, p.Errors, 1, c.path)
		require.Equal(t, c.field, p.Errors[0].Field, c.path)
		require.Equal(t, c.reason, p.Errors[0].Reason, c.path)
	}
}

// 30 concurrent heavy searches made an unrelated request take 17.7 s: search
// and exports now take turns, and one that finds no turn in time is a 503
// with Retry-After.
func TestHeavyOperationsTakeTurns(t *testing.T) {
	t.Parallel()
	lim := api.NewLimiter(1, 0)
	b := setupWith(t, apitest.ValidateResponses(t), func(d *httpserver.Deps) { d.Heavy = lim })
	release, ok := lim.Acquire(context.Background())
	require.True(t, ok)
	for _, path := range []string{"/api/v1/ips", "/api/v1/export/ips.csv", "/api/v1/export/ips.json", "/api/v1/export/ips.ndjson", "/api/v1/export/clickhouse.tsv"} {
		req, err := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+b.reader)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %s", path, raw)
		require.Equal(t, "5", resp.Header.Get("Retry-After"), path)
	}
	// Lookups are not heavy.
	status, _ := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.1", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	release()
	status, raw := b.do(t, b.reader, http.MethodGet, "/api/v1/ips", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", raw)
}

// With IngestVisibleWithin the answer comes once the observations are durable
// (the merger is idle, so its lag is under the bound) and lookups find them
// within the bound: the same answer as a synchronous ingest, then the same view.
func TestIngestVisibleWithinAnswersDurableThenVisible(t *testing.T) {
	t.Parallel()
	b := setupWith(t, apitest.ValidateResponses(t), func(d *httpserver.Deps) { d.IngestVisibleWithin = time.Minute })
	res := b.ingest(t, strings.Join([]string{
		`{"ip":"198.51.100.7","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious"}`,
		`{"ip":"198.51.100.300"}`,
	}, "\n"))
	require.EqualValues(t, 1, res.Accepted)
	require.EqualValues(t, 1, res.Rejected)
	require.Eventually(t, func() bool {
		status, raw := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.7", "", nil)
		if status != http.StatusOK {
			return false
		}
		var v view
		require.NoError(t, json.Unmarshal(raw, &v))
		return v.Classification == "malicious" && slices.Equal(v.tagNames(), []string{"ssh-bruteforce"}) && v.Sightings == 1
	}, 30*time.Second, 10*time.Millisecond)
}
