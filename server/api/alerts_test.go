package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
)

var testAlertKey = make([]byte, 32)

func testSealer(t testing.TB) *alert.Sealer {
	t.Helper()
	s, err := alert.NewSealer(testAlertKey)
	require.NoError(t, err)
	return s
}

// hookServer is a loopback generic-webhook receiver that counts messages
// and can answer 500.
type hookServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
	got    chan time.Time
	status int
}

func newHookServer(t testing.TB) *hookServer {
	h := &hookServer{got: make(chan time.Time, 100), status: http.StatusOK}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(body))
		status := h.status
		h.mu.Unlock()
		w.WriteHeader(status)
		h.got <- time.Now()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) url(secret string) string {
	return "generic://" + strings.TrimPrefix(h.srv.URL, "http://") + "/hook?template=json&disabletls=yes&@Authorization=Bearer+" + secret
}

func (h *hookServer) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...)
}

func TestEventsListFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	require.NoError(t, b.store.AppendEvents(context.Background(), []store.Event{
		{At: at, Kind: "feed.failed", SubjectType: "feed", Subject: "spamhaus", Details: map[string]any{"error": "404"}},
		{At: at.Add(time.Minute), Kind: "honeypot", SubjectType: "address", Subject: "192.0.2.7", Details: map[string]any{"port": 23}},
		{At: at.Add(2 * time.Minute), Kind: "honeypot", SubjectType: "address", Subject: "192.0.2.8"},
	}))
	type page struct {
		Items []struct {
			ID          int64          `json:"id"`
			At          time.Time      `json:"at"`
			Kind        string         `json:"kind"`
			SubjectType string         `json:"subject_type"`
			Subject     string         `json:"subject"`
			Details     map[string]any `json:"details"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	var p page
	b.json(t, b.reader, http.MethodGet, "/api/v1/events?kind=honeypot&limit=1", nil, http.StatusOK, &p)
	require.Len(t, p.Items, 1)
	require.Equal(t, "192.0.2.8", p.Items[0].Subject)
	require.NotEmpty(t, p.NextCursor)
	cursor := p.NextCursor
	p = page{}
	b.json(t, b.reader, http.MethodGet, "/api/v1/events?kind=honeypot&limit=1&cursor="+cursor, nil, http.StatusOK, &p)
	require.Len(t, p.Items, 1)
	require.Equal(t, "192.0.2.7", p.Items[0].Subject)
	require.Equal(t, map[string]any{"port": float64(23)}, p.Items[0].Details)
	require.True(t, at.Add(time.Minute).Equal(p.Items[0].At))
	require.Empty(t, p.NextCursor)

	p = page{}
	b.json(t, b.reader, http.MethodGet, "/api/v1/events?subject_type=feed&subject=spamhaus", nil, http.StatusOK, &p)
	require.Len(t, p.Items, 1)
	require.Equal(t, "feed.failed", p.Items[0].Kind)
	p = page{}
	b.json(t, b.reader, http.MethodGet, "/api/v1/events?since=2026-11-30T10:01:30Z", nil, http.StatusOK, &p)
	require.Len(t, p.Items, 1)

	var prob problem
	b.json(t, b.reader, http.MethodGet, "/api/v1/events?cursor=x1", nil, http.StatusBadRequest, &prob)
	require.Equal(t, "the event query is invalid", prob.Detail)
	require.Equal(t, "cursor", prob.Errors[0].Field)
}

func TestAlertChannelSecretsAreNeverShownAgain(t *testing.T) {
	t.Parallel()
	hook := newHookServer(t)
	b := setupWith(t, apitest.ValidateResponses(t), func(d *httpserver.Deps) { d.AlertSealer = testSealer(t) })
	const secret = "hunter2-token-xyz"
	raw := hook.url(secret)
	var ch struct {
		Name, Service, URL string
	}
	out := b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/channels/ops", map[string]string{"url": raw}, http.StatusCreated, &ch)
	require.NotContains(t, string(out), secret)
	require.Equal(t, "generic", ch.Service)
	require.Equal(t, "generic://"+strings.TrimPrefix(hook.srv.URL, "http://")+"/hook?%40Authorization=REDACTED&disabletls=yes&template=json", ch.URL)
	b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/channels/ops", map[string]string{"url": raw}, http.StatusOK, nil)

	for _, path := range []string{"/api/v1/alerts/channels", "/api/v1/audit"} {
		_, body := b.do(t, b.admin, http.MethodGet, path, "", nil)
		require.NotContains(t, string(body), secret, path)
		require.Contains(t, string(body), "REDACTED", path)
	}
	stored, err := b.store.AlertChannelByName(context.Background(), "ops")
	require.NoError(t, err)
	require.NotContains(t, string(stored.URLSealed), secret)

	// A refused URL is not echoed back.
	var prob problem
	out = b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/channels/bad", map[string]string{"url": "nosuch://" + secret + "@host/x"}, http.StatusUnprocessableEntity, &prob)
	require.NotContains(t, string(out), secret)
	require.Equal(t, problem{Status: 422, Detail: "the channel URL is not one shoutrrr accepts; nothing was stored",
		Errors: []struct{ Field, Reason string }{{"/url", `unknown service "nosuch"`}}}, prob)
	b.json(t, b.writer, http.MethodPut, "/api/v1/alerts/channels/w", map[string]string{"url": raw}, http.StatusForbidden, nil)

	// The test button: one attempt, the outcome said, secrets kept.
	var res struct {
		Delivered bool   `json:"delivered"`
		Error     string `json:"error"`
	}
	b.json(t, b.admin, http.MethodPost, "/api/v1/alerts/channels/ops/test", nil, http.StatusOK, &res)
	require.True(t, res.Delivered)
	require.Equal(t, []string{`{"message":"This is a test message from muninn: alerts sent to channel ops arrive here.","title":"[muninn] test: channel ops works"}`}, hook.messages())
	hook.mu.Lock()
	hook.status = http.StatusInternalServerError
	hook.mu.Unlock()
	out = b.json(t, b.admin, http.MethodPost, "/api/v1/alerts/channels/ops/test", nil, http.StatusOK, &res)
	require.False(t, res.Delivered)
	require.Contains(t, res.Error, "500")
	require.NotContains(t, string(out), secret)
	b.json(t, b.admin, http.MethodPost, "/api/v1/alerts/channels/nope/test", nil, http.StatusNotFound, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/alerts/channels/ops", nil, http.StatusNoContent, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/alerts/channels/ops", nil, http.StatusNotFound, nil)
}

func TestAlertChannelsNeedTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var prob problem
	b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/channels/ops", map[string]string{"url": "ntfy://ntfy.sh/x"}, http.StatusServiceUnavailable, &prob)
	require.Contains(t, prob.Detail, "MUNINN_ALERT_KEY")
}

func TestAlertRulesAreCheckedAndListed(t *testing.T) {
	t.Parallel()
	b := setupWith(t, apitest.ValidateResponses(t), func(d *httpserver.Deps) { d.AlertSealer = testSealer(t) })
	var rules []map[string]any
	b.json(t, b.reader, http.MethodGet, "/api/v1/alerts/rules", nil, http.StatusOK, &rules)
	names := []string{}
	for _, r := range rules {
		names = append(names, r["name"].(string))
	}
	require.Equal(t, []string{"bouncer-silent", "feed-failed", "guard-removal"}, names, "the default set")

	var prob problem
	b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/rules/hits", map[string]any{"kind": "honeypot", "channels": []string{"phone"},
		"group_wait": "soon", "quiet_start": "23:00", "quiet_tz": "Mars/Olympus"}, http.StatusUnprocessableEntity, &prob)
	require.Equal(t, problem{Status: 422, Detail: "the alert rule is invalid; nothing was stored", Errors: []struct{ Field, Reason string }{
		{"/group_wait", "must be a Go duration such as 30s or 5m"},
		{"/channels/0", `no channel named "phone"`},
		{"/quiet_end", "quiet_start and quiet_end go together"},
		{"/quiet_tz", `unknown time zone "Mars/Olympus" (IANA names such as Europe/Berlin)`},
	}}, prob)

	b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/channels/phone", map[string]string{"url": "ntfy://ntfy.example.org/muninn"}, http.StatusCreated, nil)
	in := map[string]any{"kind": "honeypot", "filters": map[string]any{"ruleset": "edge", "country": "nl", "min_count": 2}, "channels": []string{"phone"},
		"group_wait": "30s", "group_threshold": 10, "rate_per_hour": 20, "quiet_start": "23:00", "quiet_end": "07:00", "quiet_tz": "Europe/Berlin"}
	var got map[string]any
	b.json(t, b.admin, http.MethodPut, "/api/v1/alerts/rules/hits", in, http.StatusCreated, &got)
	delete(got, "created_at")
	delete(got, "updated_at")
	require.Equal(t, map[string]any{"name": "hits", "kind": "honeypot", "filters": map[string]any{"ruleset": "edge", "country": "NL", "min_count": float64(2)},
		"channels": []any{"phone"}, "group_wait": "30s", "group_threshold": float64(10), "rate_per_hour": float64(20),
		"quiet_start": "23:00", "quiet_end": "07:00", "quiet_tz": "Europe/Berlin", "enabled": true}, got)
	b.json(t, b.writer, http.MethodPut, "/api/v1/alerts/rules/hits", in, http.StatusForbidden, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/alerts/rules/hits", nil, http.StatusNoContent, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/alerts/rules/hits", nil, http.StatusNotFound, nil)
}

// startAlertWorkers runs River with the alert jobs on st, reading facts
// from the bundle's index.
// With defaults false the matcher runs every 100 ms, else at the
// production defaults (every second, River's fetch defaults).
func startAlertWorkers(t testing.TB, b *renderBundle, st *store.Store, defaults bool) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	d := worker.Deps{Store: st, Logger: log, Now: time.Now, FetchPollInterval: 50 * time.Millisecond,
		Alerts: &worker.AlertDeps{Sealer: testSealer(t), BaseURL: "https://muninn.example", Period: 100 * time.Millisecond, CheckPeriod: time.Hour,
			Facts: func(_ context.Context, p netip.Prefix) (alert.Facts, error) {
				return alert.SnapFacts(b.ix.Snapshot(), p), nil
			},
			Sync: b.ix.CatchUp}}
	if defaults {
		d.FetchPollInterval, d.Alerts.Period = 0, 0
	}
	rc, err := worker.NewClient(d, true)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	require.NoError(t, rc.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.Stop(sctx)
		stop()
	})
}

// honeypotAlertSetup is a serve process with alert workers, a ruleset with
// a honeypot, bouncer fw1, a webhook channel and a rule on honeypot hits.
func honeypotAlertSetup(t testing.TB, defaults bool) (*renderBundle, *hookServer, string) {
	t.Helper()
	st := storetest.Store(t)
	b := setupRenderWith(t, st, func(d *httpserver.Deps) { d.AlertSealer = testSealer(t) })
	hook := newHookServer(t)
	status, body := b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", "text/plain", strings.NewReader("ruleset edge\n  hook input\n  honeypot tcp 23\n  block tag honeypot\n"))
	require.Equal(t, http.StatusCreated, status, "%s", body)
	status, body = b.do(t, b.admin, http.MethodPost, "/api/v1/bouncers", "application/json", strings.NewReader(`{"name":"fw1","rulesets":["edge"]}`))
	require.Equal(t, http.StatusCreated, status, "%s", body)
	var created struct{ Key string }
	require.NoError(t, json.Unmarshal(body, &created))
	status, body = b.do(t, b.admin, http.MethodPut, "/api/v1/alerts/channels/hook", "application/json", strings.NewReader(fmt.Sprintf(`{"url":%q}`, hook.url("s3cret"))))
	require.Equal(t, http.StatusCreated, status, "%s", body)
	status, body = b.do(t, b.admin, http.MethodPut, "/api/v1/alerts/rules/hits", "application/json", strings.NewReader(`{"kind":"honeypot","channels":["hook"]}`))
	require.Equal(t, http.StatusCreated, status, "%s", body)
	startAlertWorkers(t, b, st, defaults)
	return b, hook, created.Key
}

// postHit reports one honeypot hit of ip on tcp/23 at at as bouncer key.
func postHit(t testing.TB, b *renderBundle, key, ip string, at time.Time) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/bouncer/reports", strings.NewReader(
		fmt.Sprintf(`{"honeypot":[{"ip":%q,"ruleset":"edge","port":23,"protocol":"tcp","seen_at":%q}]}`, ip, at.Format(time.RFC3339))))
	require.NoError(t, err)
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
}

// alertsSettled waits until no event waits for the matcher and no delivery
// job is left to run.
func alertsSettled(t testing.TB, st *store.Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sum, err := st.JobSummary(context.Background(), 0)
		require.NoError(t, err)
		busy := false
		for _, c := range sum.Counts {
			if (c.Kind == "alert_deliver" || c.Kind == "alert_match") && c.State != "completed" && c.State != "cancelled" && c.State != "discarded" {
				busy = busy || c.Kind == "alert_deliver"
			}
		}
		var pending int
		require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM alert_pending`).Scan(&pending))
		if !busy && pending == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "alerts still busy after 20 s")
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

func TestHoneypotHitSendsExactlyOneAlert(t *testing.T) {
	t.Parallel()
	b, hook, key := honeypotAlertSetup(t, false)
	at := time.Now().UTC().Truncate(time.Second)
	postHit(t, b, key, "203.0.113.9", at)
	select {
	case <-hook.got:
	case <-time.After(20 * time.Second):
		t.Fatal("no alert within 20 s")
	}
	alertsSettled(t, b.store)
	msgs := hook.messages()
	require.Len(t, msgs, 1)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(msgs[0]), &m))
	require.Equal(t, "[muninn] honeypot: 203.0.113.9 touched tcp/23 on fw1", m["title"])
	require.Equal(t, `honeypot: 203.0.113.9 touched tcp/23 on fw1
at: `+at.Format("2006-01-02 15:04:05Z")+`
classification: unknown
tags: honeypot
reason: tag honeypot from bouncer:fw1 on 203.0.113.9/32
https://muninn.example/ui/ips/203.0.113.9`, m["message"])
	var evs struct {
		Items []struct{ Kind, Subject string } `json:"items"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/events?kind=honeypot", nil, http.StatusOK, &evs)
	require.Equal(t, []struct{ Kind, Subject string }{{"honeypot", "203.0.113.9"}}, evs.Items)
}

// BenchmarkHoneypotHitToAlert measures the time from a honeypot report to
// the message arriving at a webhook (ns/op; ms/alert as well) with the
// production defaults: the matcher every second.
func BenchmarkHoneypotHitToAlert(b *testing.B) {
	rb, hook, key := honeypotAlertSetup(b, true)
	var total time.Duration
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		postHit(b, rb, key, fmt.Sprintf("203.0.113.%d", i%250+1), start)
		select {
		case at := <-hook.got:
			total += at.Sub(start)
		case <-time.After(20 * time.Second):
			b.Fatal("no alert within 20 s")
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(i), "ms/alert")
}
