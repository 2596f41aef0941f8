package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store/storetest"
)

// A long poll whose wait outlasts the read timeout used to end at the read
// timeout as if its client had gone (an empty 200), and the connection was
// spoilt: every later request on it failed at once. The bouncer's default
// wait (30 s) equals the default read timeout, so 10,000 bouncers in
// muninn-fanout failed 700,000 times. Now the poll answers 304 at its wait
// and the same connection serves the next request.
func TestLongPollOutlastsReadTimeout(t *testing.T) {
	t.Parallel()
	rb := setupRenderWith(t, storetest.Store(t), func(d *httpserver.Deps) { d.ReadTimeout = 200 * time.Millisecond })
	rb.putRuleset(t, "ruleset rt\n  hook input\n  scope tcp dport 22\n  block tag rt\n", http.StatusCreated)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	var reused []bool
	get := func(query string) (int, []byte) {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, rb.srv.URL+"/api/v1/rulesets/rt/render"+query, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+rb.reader)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, body
	}
	var version int64
	require.Eventually(t, func() bool {
		status, body := get("")
		var doc struct {
			Version int64 `json:"version"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &doc) != nil {
			return false
		}
		version = doc.Version
		return version > 0
	}, 10*time.Second, 20*time.Millisecond)
	reused = nil
	status, body := get(fmt.Sprintf("?since=%d&wait=1s", version))
	require.Equal(t, http.StatusNotModified, status, "%s", body)
	status, body = get("")
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Contains(t, string(body), fmt.Sprintf(`"version":%d`, version))
	require.Equal(t, []bool{true, true}, reused, "both on the connection already open")
}
