package feeds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
)

type testBundle struct {
	st     *store.Store
	srv    *httptest.Server
	tokens map[string]string
}

// setup serves the whole API as muninn serve does, every response validated
// against the contract, with a token per role.
func setup(t *testing.T) testBundle {
	t.Helper()
	st := storetest.Store(t)
	log := slog.New(slog.DiscardHandler)
	rc, err := worker.NewClient(worker.Deps{Store: st, Logger: log}, false)
	require.NoError(t, err)
	h, err := httpserver.New(httpserver.Deps{Store: st, Index: indextest.Start(t, st, log, nil), Logger: log, Now: time.Now, Registry: prometheus.NewRegistry(),
		Jobs: rc, Wrap: apitest.ValidateResponses(t)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := testBundle{st: st, srv: srv, tokens: map[string]string{}}
	for _, role := range []string{api.RoleReader, api.RoleWriter, api.RoleAdmin} {
		_, secret, err := api.CreateToken(context.Background(), st, role+"-token", role, nil, "test")
		require.NoError(t, err)
		b.tokens[role] = secret
	}
	return b
}

func (b testBundle) do(t *testing.T, role, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, b.srv.URL+"/api/v1"+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.tokens[role])
	if body != "" && !strings.HasPrefix(body, `{"url":"https://e.org/","format":"list"}`) {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	}
	return resp.StatusCode, out
}

func TestFeedsCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"url":"https://example.org/list.txt","format":"ipsum","options":{"min_count":3},"tag":"ipsum",
		"classification":"suspicious","schedule":"6h","ttl":"48h","enabled":true,"max_drop_share":0.3}`
	code, out := b.do(t, "admin", http.MethodPut, "/feeds/ipsum", body)
	require.Equal(t, http.StatusCreated, code, out)
	require.Equal(t, "6h0m0s", out["schedule"])
	require.Equal(t, "48h0m0s", out["ttl"])
	require.EqualValues(t, 3, out["options"].(map[string]any)["min_count"])
	code, _ = b.do(t, "admin", http.MethodPut, "/feeds/ipsum", body)
	require.Equal(t, http.StatusOK, code)

	code, out = b.do(t, "reader", http.MethodGet, "/feeds", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, out["feeds"], 1)
	code, out = b.do(t, "reader", http.MethodGet, "/feeds/ipsum", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 0.3, out["max_drop_share"])

	code, out = b.do(t, "reader", http.MethodGet, "/feeds/catalog", "")
	require.Equal(t, http.StatusOK, code)
	cat := out["feeds"].([]any)
	require.NotEmpty(t, cat)
	added := 0
	for _, c := range cat {
		if c.(map[string]any)["added"] == true {
			added++
		}
	}
	require.Equal(t, 1, added, "ipsum is in the catalogue and was added")

	code, out = b.do(t, "admin", http.MethodPost, "/feeds/ipsum/refresh?force=true", "")
	require.Equal(t, http.StatusAccepted, code, out)
	require.Equal(t, false, out["duplicate"])
	require.Equal(t, true, out["force"])
	code, out = b.do(t, "admin", http.MethodPost, "/feeds/ipsum/refresh", "")
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, true, out["duplicate"])

	code, out = b.do(t, "reader", http.MethodGet, "/jobs", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []any{map[string]any{"kind": "feed_refresh", "state": "available", "count": float64(1)}}, out["counts"])

	code, out = b.do(t, "reader", http.MethodGet, "/feeds/ipsum/runs?limit=5", "")
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, out["runs"])

	code, _ = b.do(t, "admin", http.MethodDelete, "/feeds/ipsum", "")
	require.Equal(t, http.StatusNoContent, code)
	for _, p := range []string{"/feeds/ipsum", "/feeds/ipsum/runs"} {
		code, out = b.do(t, "reader", http.MethodGet, p, "")
		require.Equal(t, http.StatusNotFound, code, p)
		require.Equal(t, "no feed named ipsum", out["detail"])
	}
	code, _ = b.do(t, "admin", http.MethodDelete, "/feeds/ipsum", "")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = b.do(t, "admin", http.MethodPost, "/feeds/ipsum/refresh", "")
	require.Equal(t, http.StatusNotFound, code)
}

func TestFeedsValidationAndRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fields := func(out map[string]any) []string {
		var fs []string
		for _, e := range out["errors"].([]any) {
			fs = append(fs, e.(map[string]any)["field"].(string))
		}
		return fs
	}
	// Schema: unknown field, bad enum.
	code, out := b.do(t, "admin", http.MethodPut, "/feeds/x", `{"url":"https://e.org/","format":"list","tag":"x","colour":"red"}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	require.Equal(t, []string{"/colour"}, fields(out), out)
	code, out = b.do(t, "admin", http.MethodPut, "/feeds/x", `{"url":"https://e.org/","format":"xml","tag":"x"}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	require.Equal(t, []string{"/format"}, fields(out))
	code, out = b.do(t, "admin", http.MethodPut, "/feeds/x", `{"url":"https://e.org/","format":"list"}`)
	require.Equal(t, http.StatusUnsupportedMediaType, code, out)
	// Semantics: durations, options for the wrong format, no tag, bad scheme.
	code, out = b.do(t, "admin", http.MethodPut, "/feeds/x", `{"url":"ftp://e.org/","format":"list","schedule":"10s","ttl":"soon","options":{"min_count":2}}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	require.ElementsMatch(t, []string{"/url", "/tag", "/schedule", "/ttl", "/options"}, fields(out))
	require.Equal(t, "about:blank", out["type"], "one problem type for every handler")
	code, _ = b.do(t, "admin", http.MethodPut, "/feeds/Bad%20Name", `{"url":"https://e.org/","format":"list","tag":"x"}`)
	require.Equal(t, http.StatusBadRequest, code)

	// Roles: readers read, only admins write.
	code, out = b.do(t, "writer", http.MethodPut, "/feeds/x", `{"url":"https://e.org/","format":"list","tag":"x"}`)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, out["detail"], "admin")
	code, _ = b.do(t, "", http.MethodGet, "/feeds", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = b.do(t, "reader", http.MethodPost, "/feeds/x/refresh", "")
	require.Equal(t, http.StatusForbidden, code)
}

func TestFeedsDropShareBounds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, share := range []string{"0", "1.5", "-0.1"} {
		code, out := b.do(t, "admin", http.MethodPut, "/feeds/x", `{"url":"https://e.org/","format":"list","tag":"x","max_drop_share":`+share+`}`)
		require.Equal(t, http.StatusBadRequest, code, out)
	}
	code, out := b.do(t, "admin", http.MethodPut, "/feeds/x", `{"url":"https://e.org/","format":"list","tag":"x","max_drop_share":1}`)
	require.Equal(t, http.StatusCreated, code, out)
	require.InDelta(t, 1.0, out["max_drop_share"], 0)
}

// Query-string secrets in feed URLs (?license_key=…) were shown to readers.
func TestFeedURLsAreRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, out := b.do(t, "admin", http.MethodPut, "/feeds/keyed", `{"url":"https://user:pa55@e.org/list?license_key=topsecret&edition=lite","format":"list","tag":"x"}`)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	require.Equal(t, "https://xxxxx:xxxxx@e.org/list?edition=xxxxx&license_key=xxxxx", out["url"])
	code, out = b.do(t, "reader", http.MethodGet, "/feeds/keyed", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "https://xxxxx:xxxxx@e.org/list?edition=xxxxx&license_key=xxxxx", out["url"])
	code, out = b.do(t, "reader", http.MethodGet, "/feeds", "")
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, fmt.Sprint(out), "topsecret")
	require.NotContains(t, fmt.Sprint(out), "pa55")
}

// TestFeedRunsListRejectedLines: a run's rejected lines (line, text,
// reason) come out of GET /feeds/{name}/runs as stored, and a run without
// any has an empty list.
func TestFeedRunsListRejectedLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.st.PutFeed(ctx, store.Feed{Name: "f", URL: "https://e.org/f", Format: "list", Tag: "f", Enabled: true}, "test")
	require.NoError(t, err)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	_, err = b.st.RecordFeedRun(ctx, store.FeedRun{Feed: "f", StartedAt: at, FinishedAt: at, Status: store.RunNotModified})
	require.NoError(t, err)
	_, err = b.st.RecordFeedRun(ctx, store.FeedRun{Feed: "f", StartedAt: at, FinishedAt: at, Status: store.RunFailed, Lines: 3, Rejected: 2,
		Error:         `worker: refresh feed f: no line accepted: 2 rejected; line 1: invalid address "a"; line 3: invalid address "b"`,
		RejectedLines: []store.RejectedLine{{Line: 1, Text: "a", Reason: `invalid address "a"`}, {Line: 3, Text: "b", Reason: `invalid address "b"`}}})
	require.NoError(t, err)
	code, out := b.do(t, "reader", http.MethodGet, "/feeds/f/runs", "")
	require.Equal(t, http.StatusOK, code)
	runs := out["runs"].([]any)
	require.Len(t, runs, 2)
	newest := runs[0].(map[string]any)
	require.Equal(t, "failed", newest["status"])
	require.Equal(t, `worker: refresh feed f: no line accepted: 2 rejected; line 1: invalid address "a"; line 3: invalid address "b"`, newest["error"])
	require.Equal(t, []any{
		map[string]any{"line": float64(1), "text": "a", "reason": `invalid address "a"`},
		map[string]any{"line": float64(3), "text": "b", "reason": `invalid address "b"`},
	}, newest["rejected_lines"])
	require.Equal(t, []any{}, runs[1].(map[string]any)["rejected_lines"])
}
