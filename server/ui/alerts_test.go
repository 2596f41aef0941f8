package ui_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/store"
)

func TestEventsPageListsEventsWithLinks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.store.AppendEvents(context.Background(), []store.Event{
		{At: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), Kind: store.EventHoneypot, SubjectType: "address", Subject: "203.0.113.9",
			Details: map[string]any{"bouncer": "fw1", "protocol": "tcp", "port": 23}},
		{Kind: store.EventFeedFailed, SubjectType: "feed", Subject: "spamhaus", Details: map[string]any{"error": "HTTP 404"}},
	}))
	c := b.client(t)
	c.mustLogin("reader")
	resp, body := c.get("/ui/events")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "203.0.113.9 touched tcp/23 on fw1")
	require.Contains(t, body, `<a href="/ui/ips/203.0.113.9">203.0.113.9</a>`)
	require.Contains(t, body, "feed spamhaus failed: HTTP 404")
	_, body = c.get("/ui/events?kind=feed.failed")
	require.NotContains(t, body, "touched")
}

func TestAlertsPageStoresAChannelRedactedAndTestsIt(t *testing.T) {
	t.Parallel()
	got := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer hook.Close()
	sealer, err := alert.NewSealer(make([]byte, 32))
	require.NoError(t, err)
	b := setup(t, testOpts{sealer: sealer})
	c := b.client(t)
	c.mustLogin("admin")
	_, page := c.get("/ui/alerts")
	require.Contains(t, page, "bouncer-silent", "the default rules are listed")
	csrf := csrfOf(t, page)
	const secret = "very-secret-token"
	raw := "generic://" + strings.TrimPrefix(hook.URL, "http://") + "/hook?template=json&disabletls=yes&@Authorization=Bearer+" + secret
	resp, _ := c.post("/ui/alerts/channels", url.Values{"csrf": {csrf}, "name": {"ops"}, "url": {raw}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, page = c.get("/ui/alerts")
	require.NotContains(t, page, secret)
	require.Contains(t, html.UnescapeString(page), "%40Authorization=REDACTED")

	resp, _ = c.post("/ui/alerts/channels/ops/test", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.JSONEq(t, `{"title":"[muninn] test: channel ops works","message":"This is a test message from muninn: alerts sent to channel ops arrive here."}`, <-got)
	_, page = c.get("/ui/alerts")
	require.Contains(t, page, "Test message sent to ops.")

	resp, page = c.post("/ui/alerts/rules", url.Values{"csrf": {csrf}, "name": {"hits"}, "kind": {"honeypot"}, "channels": {"ops, nope"}, "group_wait": {"later"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, html.UnescapeString(page), `no channel named "nope"`)
	require.Contains(t, page, "must be a Go duration such as 30s or 5m")
	resp, _ = c.post("/ui/alerts/rules", url.Values{"csrf": {csrf}, "name": {"hits"}, "kind": {"honeypot"}, "channels": {"ops"}, "group_wait": {"30s"},
		"quiet_start": {"23:00"}, "quiet_end": {"07:00"}, "quiet_tz": {"Europe/Berlin"}, "asn": {"AS64500"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	r, err := b.store.AlertRuleByName(context.Background(), "hits")
	require.NoError(t, err)
	require.Equal(t, []string{"ops"}, r.Channels)
	require.Equal(t, 30*time.Second, r.GroupWait)
	require.Equal(t, int64(64500), r.Filters.ASN)
	require.Equal(t, 23*60, r.QuietStart)

	// A reader sees the page but no forms.
	rc := b.client(t)
	rc.mustLogin("reader")
	_, page = rc.get("/ui/alerts")
	require.Contains(t, page, "hits")
	require.NotContains(t, page, "Send test message")
	require.NotContains(t, page, secret)
}
