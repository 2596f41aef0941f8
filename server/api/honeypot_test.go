package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store/storetest"
)

type hit struct {
	IP       string `json:"ip"`
	Ruleset  string `json:"ruleset"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	SeenAt   string `json:"seen_at"`
}

// report posts hits with a bouncer key and returns the status, the
// Retry-After header and the body.
func (b *testBundle) report(t *testing.T, key string, hits ...hit) (int, string, []byte) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"honeypot": hits})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/bouncer/reports", strings.NewReader(string(raw)))
	require.NoError(t, err)
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}

func TestHoneypotReportsOnlyForTheBouncersOwnPorts(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.putRuleset(t, "ruleset edge\n  hook input\n  honeypot tcp 23,2323\n  honeypot udp 161\n  block tag honeypot\n", http.StatusCreated)
	b.putRuleset(t, "ruleset other\n  hook input\n  honeypot tcp 22\n  block tag honeypot\n", http.StatusCreated)
	key := b.createBouncer(t, "fw1", "edge")
	at := time.Now().UTC().Format(time.RFC3339)
	const ports = "(honeypot tcp 23,2323; udp 161)"

	for _, c := range []struct {
		hits   []hit
		status int
		detail string
		errs   []struct{ Field, Reason string }
	}{
		{[]hit{{"192.0.2.50", "edge", 22, "tcp", at}}, 422, "the report names ports outside its rulesets' honeypot lists; nothing was stored",
			[]struct{ Field, Reason string }{{"/honeypot/0/port", "tcp port 22 is not a honeypot port of ruleset edge " + ports}}},
		{[]hit{{"192.0.2.50", "edge", 23, "udp", at}}, 422, "the report names ports outside its rulesets' honeypot lists; nothing was stored",
			[]struct{ Field, Reason string }{{"/honeypot/0/port", "udp port 23 is not a honeypot port of ruleset edge " + ports}}},
		{[]hit{{"192.0.2.50", "other", 22, "tcp", at}}, 403, "the report names rulesets this bouncer does not enforce; nothing was stored",
			[]struct{ Field, Reason string }{{"/honeypot/0/ruleset", `bouncer fw1 does not enforce ruleset "other"`}}},
		// One bad hit refuses the whole report.
		{[]hit{{"192.0.2.51", "edge", 23, "tcp", at}, {"192.0.2.52", "edge", 8080, "tcp", at}, {"192.0.2.53", "nope", 23, "tcp", at}}, 403,
			"the report names rulesets this bouncer does not enforce; nothing was stored",
			[]struct{ Field, Reason string }{{"/honeypot/2/ruleset", `bouncer fw1 does not enforce ruleset "nope"`}}},
		{[]hit{{"192.0.2.51", "edge", 23, "tcp", at}, {"192.0.2.52", "edge", 8080, "tcp", at}}, 422,
			"the report names ports outside its rulesets' honeypot lists; nothing was stored",
			[]struct{ Field, Reason string }{{"/honeypot/1/port", "tcp port 8080 is not a honeypot port of ruleset edge " + ports}}},
	} {
		status, _, raw := b.report(t, key, c.hits...)
		require.Equal(t, c.status, status, "%s", raw)
		var p problem
		require.NoError(t, json.Unmarshal(raw, &p))
		require.Equal(t, problem{Status: c.status, Detail: c.detail, Errors: c.errs}, p)
	}
	for _, ip := range []string{"192.0.2.50", "192.0.2.51", "192.0.2.52", "192.0.2.53"} {
		b.json(t, b.reader, http.MethodGet, "/api/v1/ips/"+ip, nil, http.StatusNotFound, nil)
	}

	status, _, raw := b.report(t, key, hit{"192.0.2.51", "edge", 2323, "tcp", at}, hit{"2001:db8::51", "edge", 161, "udp", at})
	require.Equal(t, http.StatusAccepted, status, "%s", raw)
	require.JSONEq(t, `{"accepted":2}`, string(raw))
	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/2001:db8::51", nil, http.StatusOK, &v)
	require.Equal(t, []string{"honeypot"}, v.tagNames())
	require.Equal(t, "bouncer:fw1", v.Tags[0].Source)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestHoneypotReportsAreRateLimitedPerBouncer(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	b := setupRenderWith(t, storetest.Store(t), func(d *httpserver.Deps) { d.Now, d.HoneypotRate = clock.Now, 2 })
	b.putRuleset(t, "ruleset edge\n  hook input\n  honeypot tcp 23\n  block tag honeypot\n", http.StatusCreated)
	fw1 := b.createBouncer(t, "fw1", "edge")
	fw2 := b.createBouncer(t, "fw2", "edge")
	at := "2026-11-30T09:59:00Z"

	// A full report (10,000 hits, the contract's maximum) empties the bucket.
	full := make([]hit, 10000)
	for i := range full {
		full[i] = hit{fmt.Sprintf("2001:db8::%x", i+1), "edge", 23, "tcp", at}
	}
	status, _, raw := b.report(t, fw1, full...)
	require.Equal(t, http.StatusAccepted, status, "%.300s", raw)
	require.JSONEq(t, `{"accepted":10000}`, string(raw))

	one := hit{"192.0.2.60", "edge", 23, "tcp", at}
	status, retry, raw := b.report(t, fw1, one, one, one)
	require.Equal(t, http.StatusTooManyRequests, status, "%s", raw)
	require.Equal(t, "2", retry, "3 hits at 2 per second")
	var p problem
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, problem{Status: 429, Detail: "bouncer fw1 is over its honeypot report rate (2 hits per second, bursts of 10000); nothing was stored",
		Errors: []struct{ Field, Reason string }{{"/honeypot", "3 hits; try again in 2 s"}}}, p)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.60", nil, http.StatusNotFound, nil)

	// Another bouncer has its own bucket.
	status, _, raw = b.report(t, fw2, one)
	require.Equal(t, http.StatusAccepted, status, "%s", raw)

	clock.Add(1500 * time.Millisecond)
	status, _, raw = b.report(t, fw1, hit{"192.0.2.61", "edge", 23, "tcp", at}, hit{"192.0.2.62", "edge", 23, "tcp", at}, hit{"192.0.2.63", "edge", 23, "tcp", at})
	require.Equal(t, http.StatusAccepted, status, "%s", raw)
	status, retry, _ = b.report(t, fw1, one)
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, "1", retry)
}
