package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/store"
)

type eventsResult struct {
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Events   int64 `json:"events"`
	Errors   []struct {
		Line   int64  `json:"line"`
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"errors"`
}

func (b *testBundle) postEvents(t *testing.T, header, value, query, contentType, body string) eventsResult {
	t.Helper()
	status, raw := b.doWith(t, header, value, http.MethodPost, "/api/v1/events"+query, contentType, strings.NewReader(body))
	require.Equal(t, http.StatusOK, status, "body: %s", raw)
	var res eventsResult
	require.NoError(t, json.Unmarshal(raw, &res))
	return res
}

type viewTags struct {
	Tags []struct {
		Name   string `json:"name"`
		Source string `json:"source"`
	} `json:"tags"`
	Sightings int64 `json:"sightings"`
}

func (b *testBundle) viewOf(t *testing.T, addr string) viewTags {
	t.Helper()
	var v viewTags
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/"+addr, nil, http.StatusOK, &v)
	return v
}

func sshFailure(at time.Time, addr string, port int) string {
	return fmt.Sprintf("%s gw sshd[812]: Failed password for invalid user admin from %s port %d ssh2\n", at.UTC().Format(time.RFC3339Nano), addr, port)
}

// TestEventsSSHBruteforce: four failures are sightings, the fifth within ten
// minutes fires ssh-bruteforce: the address carries the tag from source
// sensor:ssh-bruteforce and a "detection" event is stored.
func TestEventsSSHBruteforce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auth := "Bearer " + b.writer
	now := time.Now().Add(-time.Minute)
	var body strings.Builder
	for i := range 4 {
		body.WriteString(sshFailure(now.Add(time.Duration(i)*time.Second), "203.0.113.9", 50000+i))
	}
	res := b.postEvents(t, "Authorization", auth, "?format=sshd", "text/plain", body.String())
	require.Equal(t, eventsResult{Accepted: 4, Events: 4, Errors: res.Errors}, res)
	require.Empty(t, res.Errors)
	v := b.viewOf(t, "203.0.113.9")
	require.Empty(t, v.Tags)
	require.EqualValues(t, 4, v.Sightings)

	res = b.postEvents(t, "Authorization", auth, "?format=sshd", "text/plain", sshFailure(now.Add(5*time.Second), "203.0.113.9", 50005))
	require.EqualValues(t, 1, res.Events)
	v = b.viewOf(t, "203.0.113.9")
	require.Len(t, v.Tags, 1)
	require.Equal(t, "ssh-bruteforce", v.Tags[0].Name)
	require.Equal(t, "sensor:ssh-bruteforce", v.Tags[0].Source)

	evs, err := b.store.ListEvents(context.Background(), store.EventFilter{Kind: "detection", Subject: "203.0.113.9"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "address", evs[0].SubjectType)
	require.Equal(t, "ssh-bruteforce", evs[0].Details["detection"])
	require.EqualValues(t, 1, evs[0].Details["fires"])
	require.EqualValues(t, 300, evs[0].Details["ttl_seconds"])

	offs, err := b.store.OffendersOf(context.Background(), netip.MustParseAddr("203.0.113.9"), time.Now())
	require.NoError(t, err)
	require.Len(t, offs, 1)
	require.Equal(t, 1, offs[0].Fires)
	require.Equal(t, 20*time.Minute, offs[0].NextTTL)

	lines, err := b.store.SensorLinesOf(context.Background(), netip.MustParseAddr("203.0.113.9"), 10)
	require.NoError(t, err)
	require.Len(t, lines, 5)
	require.Equal(t, "ssh-auth-failure", lines[0].Kind)
	require.Equal(t, "gw", lines[0].Host)
	require.Equal(t, strings.TrimSuffix(sshFailure(now.Add(5*time.Second), "203.0.113.9", 50005), "\n"), lines[0].Line)
}

// TestEventsPrivateNeverTagged: a private address is counted, never tagged.
func TestEventsPrivateNeverTagged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().Add(-time.Minute)
	var body strings.Builder
	for i := range 6 {
		body.WriteString(sshFailure(now.Add(time.Duration(i)*time.Second), "10.1.2.3", 40000+i))
	}
	res := b.postEvents(t, "Authorization", "Bearer "+b.writer, "?format=sshd", "text/plain", body.String())
	require.EqualValues(t, 6, res.Events)
	v := b.viewOf(t, "10.1.2.3")
	require.Empty(t, v.Tags)
	require.EqualValues(t, 6, v.Sightings)
}

// TestEventsNDJSONPerLineErrors: EventLine objects of several formats, with
// the bad lines reported by number and the good ones stored; a honeypot
// connection fires at once.
func TestEventsNDJSONPerLineErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Now().Add(-time.Minute).UTC().Format("2006-01-02T15:04:05.000000Z")
	body := strings.Join([]string{
		`{"format":"cowrie","line":"{\"eventid\":\"cowrie.session.connect\",\"src_ip\":\"198.51.100.77\",\"sensor\":\"pot1\",\"timestamp\":\"` + at + `\"}"}`,
		`{"format":"sshd","line":"{\"MESSAGE\":\"x\"}"}`,
		`{"format":"nope","line":"x"}`,
		`not json`,
		``,
		`{"format":"dnsmasq","host":"gw","line":"` + time.Now().Add(-time.Minute).UTC().Format(time.RFC3339) + ` gw dnsmasq[1]: 3 192.168.1.10/5353 reply updates.example.net is 198.51.100.20"}`,
	}, "\n")
	res := b.postEvents(t, "Authorization", "Bearer "+b.writer, "", "application/x-ndjson", body)
	require.EqualValues(t, 2, res.Accepted)
	require.EqualValues(t, 3, res.Rejected)
	require.EqualValues(t, 2, res.Events)
	require.Len(t, res.Errors, 3)
	require.Equal(t, int64(2), res.Errors[0].Line)
	require.Equal(t, `journald JSON: __REALTIME_TIMESTAMP must be microseconds since the epoch`, res.Errors[0].Reason)
	require.Equal(t, int64(3), res.Errors[1].Line)
	require.Equal(t, "/format", res.Errors[1].Field)
	require.Equal(t, `unknown format "nope" (one of cowrie, sshd, nginx, traefik, caddy, fail2ban, dnsmasq, zeek-dns, zeek-conn, regex)`, res.Errors[1].Reason)
	require.Equal(t, int64(4), res.Errors[2].Line)

	v := b.viewOf(t, "198.51.100.77")
	require.Len(t, v.Tags, 1)
	require.Equal(t, "honeypot", v.Tags[0].Name)
	require.Equal(t, "sensor:honeypot", v.Tags[0].Source)

	pd := b.ix.Snapshot().PassiveDNS(netip.MustParseAddr("198.51.100.20"))
	require.Len(t, pd, 1)
	require.Equal(t, "updates.example.net", pd[0].Name)
	require.Equal(t, netip.MustParseAddr("192.168.1.10"), pd[0].Client)
	require.EqualValues(t, 1, pd[0].Seen)
}

// TestEventsBouncerKeyOwnHost: a bouncer key may send; its lines are its own
// host's whatever they say; a reader token may not.
func TestEventsBouncerKeyOwnHost(t *testing.T) {
	t.Parallel()
	rb := setupRender(t)
	key := rb.createBouncer(t, "fw1")
	line := sshFailure(time.Now().Add(-time.Minute), "203.0.113.10", 1)
	res := rb.postEvents(t, "X-Api-Key", key, "?format=sshd&host=other", "text/plain", line)
	require.EqualValues(t, 1, res.Events)
	lines, err := rb.store.SensorLinesOf(context.Background(), netip.MustParseAddr("203.0.113.10"), 10)
	require.NoError(t, err)
	require.Len(t, lines, 1)
	require.Equal(t, "fw1", lines[0].Host)

	status, raw := rb.do(t, rb.reader, http.MethodPost, "/api/v1/events?format=sshd", "text/plain", strings.NewReader(line))
	require.Equal(t, http.StatusForbidden, status, "%s", raw)
	status, raw = rb.doWith(t, "X-Api-Key", "mnb_nope", http.MethodPost, "/api/v1/events?format=sshd", "text/plain", strings.NewReader(line))
	require.Equal(t, http.StatusUnauthorized, status, "%s", raw)
}

// TestEventsRegexNeedsIPGroup: a pattern without (?P<ip>) is a 400 naming it.
func TestEventsRegexNeedsIPGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/events?format=regex&pattern=from+(%5CS%2B)", "text/plain", strings.NewReader("from 203.0.113.1\n"))
	require.Equal(t, http.StatusBadRequest, status, "%s", raw)
	require.Contains(t, string(raw), `"field":"pattern","reason":"the pattern needs a named group (?P\u003cip\u003e...)"`)

	res := b.postEvents(t, "Authorization", "Bearer "+b.writer, "?format=regex&kind=app-bad-token&pattern="+
		"bad+token+from+%28%3FP%3Cip%3E%5CS%2B%29", "text/plain", "bad token from 203.0.113.11\nfine\n")
	require.Equal(t, eventsResult{Accepted: 2, Events: 1, Errors: res.Errors}, res)
}

// TestDetectionsAPI: the defaults are listed; an admin replaces one.
func TestDetectionsAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ds []map[string]any
	b.json(t, b.reader, http.MethodGet, "/api/v1/detections", nil, http.StatusOK, &ds)
	names := []string{}
	for _, d := range ds {
		names = append(names, d["name"].(string))
	}
	require.Equal(t, []string{"honeypot", "http-probing", "ssh-bruteforce"}, names)
	var out map[string]any
	b.json(t, b.admin, http.MethodPut, "/api/v1/detections/ssh-bruteforce", map[string]any{
		"kinds": []string{"ssh-auth-failure"}, "threshold": 3, "window": "5m", "tag": "ssh-bruteforce", "ttl": "1h"}, http.StatusOK, &out)
	require.Equal(t, map[string]any{"name": "ssh-bruteforce", "kinds": []any{"ssh-auth-failure"}, "instant_kinds": []any{}, "threshold": 3.0,
		"window": "5m0s", "tag": "ssh-bruteforce", "ttl": "1h0m0s", "max_ttl": "720h0m0s", "quiet": "168h0m0s", "include_private": false, "enabled": true}, out)
	b.json(t, b.admin, http.MethodPut, "/api/v1/detections/x", map[string]any{
		"kinds": []string{}, "threshold": 3, "window": "5m", "tag": "x", "ttl": "1h"}, http.StatusBadRequest, nil)
	b.json(t, b.writer, http.MethodPut, "/api/v1/detections/x", map[string]any{
		"kinds": []string{"a"}, "threshold": 3, "window": "5m", "tag": "x", "ttl": "1h"}, http.StatusForbidden, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/detections/nope", nil, http.StatusNotFound, nil)
}

// TestBouncerWatchShipsToDetection: the bouncer's Watcher tails a real file
// and ships it with its own client and key; the fifth failure tags the
// address.
func TestBouncerWatchShipsToDetection(t *testing.T) {
	t.Parallel()
	rb := setupRender(t)
	key := rb.createBouncer(t, "web1")
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	client := bouncer.NewClient(rb.srv.URL, key, nil)
	w := &bouncer.Watcher{Watch: bouncer.Watch{Path: path, Format: "sshd"}, PosFile: bouncer.PosFileFor(dir, path), Send: client.SendEvents,
		Poll: 5 * time.Millisecond, Backoff: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	at := time.Now().Add(-time.Minute)
	for i := range 5 {
		_, err := f.WriteString(sshFailure(at.Add(time.Duration(i)*time.Second), "203.0.113.30", 1000+i))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		status, raw := rb.do(t, rb.reader, http.MethodGet, "/api/v1/ips/203.0.113.30", "", nil)
		var v viewTags
		if status != http.StatusOK || json.Unmarshal(raw, &v) != nil {
			return false
		}
		return len(v.Tags) == 1 && v.Tags[0].Name == "ssh-bruteforce" && v.Tags[0].Source == "sensor:ssh-bruteforce"
	}, 10*time.Second, 20*time.Millisecond)
	lines, err := rb.store.SensorLinesOf(context.Background(), netip.MustParseAddr("203.0.113.30"), 10)
	require.NoError(t, err)
	require.Len(t, lines, 5)
	require.Equal(t, "web1", lines[0].Host)
}

// TestEventLineErrorsNameTheField: an EventLine that is not one is answered
// like an ingest line, with the field and what it must be (a trial saw Go
// type names and a "sensor:" prefix); a second object on a line, or a
// line's time before 2000, is refused, not dropped or stored; an empty
// body is a 400, whatever its media type.
func TestEventLineErrorsNameTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := `{"format":"sshd","line":"2026-01-12T11:15:58+00:00 gw sshd[1]: Failed password for root from 203.0.113.81 port 1 ssh2"}`
	cases := []struct{ line, field, reason string }{
		{`{"format":"sshd","line":5}`, "/line", "must be a string, not a JSON number"},
		{`[1,2]`, "", "must be a JSON object (an EventLine)"},
		{`"x"`, "", "must be a JSON object (an EventLine)"},
		{`{"format":"sshd","line":"x","foo":1}`, "/foo", "is not a field of an EventLine (format, line, host)"},
		{`{"Format":"sshd","LINE":"x"}`, "/Format", "is not a field of an EventLine (format, line, host)"},
		{`{"format":"bogus","line":"x"}`, "/format", `unknown format "bogus" (one of cowrie, sshd, nginx, traefik, caddy, fail2ban, dnsmasq, zeek-dns, zeek-conn, regex)`},
		{good + good, "", "malformed JSON: unexpected data after the object"},
	}
	var body []string
	for _, c := range cases {
		body = append(body, c.line)
	}
	res := b.postEvents(t, "Authorization", "Bearer "+b.writer, "", "application/x-ndjson", strings.Join(body, "\n"))
	require.EqualValues(t, 0, res.Accepted)
	require.Len(t, res.Errors, len(cases))
	for i, c := range cases {
		require.EqualValues(t, i+1, res.Errors[i].Line, c.line)
		require.Equal(t, c.field, res.Errors[i].Field, c.line)
		require.Equal(t, c.reason, res.Errors[i].Reason, c.line)
	}
	status, _ := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/203.0.113.81", "", nil)
	require.Equal(t, http.StatusNotFound, status, "nothing of a rejected line is stored")

	res = b.postEvents(t, "Authorization", "Bearer "+b.writer, "?format=sshd", "text/plain",
		"1999-12-31T23:59:59+00:00 gw sshd[1]: Failed password for root from 203.0.113.51 port 1 ssh2\n")
	require.EqualValues(t, 1, res.Rejected)
	require.Equal(t, "its time 1999-12-31T23:59:59Z is before 2000-01-01T00:00:00Z", res.Errors[0].Reason)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/ips/203.0.113.51", "", nil)
	require.Equal(t, http.StatusNotFound, status)

	for _, body := range []string{"", "\n", " \n\n"} {
		status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/events?format=sshd", "text/plain", strings.NewReader(body))
		require.Equal(t, http.StatusBadRequest, status, "%q: %s", body, raw)
		require.Contains(t, string(raw), `"detail":"the body is empty;`, "%q", body)
	}
}
