package worker_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
)

// deliveryWait bounds the waits for a delivery or an event. A delivery
// takes well under a second; the bound is a minute because the alert jobs
// run on River, whose queries give up after 10 s and retry, and a shared
// PostgreSQL under the whole suite's load (hundreds of test databases, their
// checkpoints, embedded servers' initdb) has stalled for 20 s.
const deliveryWait = time.Minute

// request is one request a loopback receiver got.
type request struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// receiver is a loopback HTTP server standing in for a notification
// service: it records every request, answers the service's JSON, and can
// fail (500) or hang the first requests.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []request
	ok  chan request // successful deliveries
	// abandoned gets one value for each hung request its client gave up
	// on (closed the connection).
	abandoned chan struct{}
	fail      int // answer 500 to this many more requests
	hang      int // hang this many more requests (until the test ends)
}

func newReceiver(t *testing.T, answer string) *receiver {
	t.Helper()
	rc := &receiver{ok: make(chan request, 100), abandoned: make(chan struct{}, 100)}
	release := make(chan struct{})
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)}
		rc.mu.Lock()
		rc.got = append(rc.got, req)
		fail, hang := rc.fail > 0, rc.fail == 0 && rc.hang > 0
		if fail {
			rc.fail--
		} else if hang {
			rc.hang--
		}
		rc.mu.Unlock()
		switch {
		case fail:
			http.Error(w, "try later", http.StatusInternalServerError)
		case hang:
			select {
			case <-release:
			case <-r.Context().Done():
				rc.abandoned <- struct{}{}
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, answer)
			rc.ok <- req
		}
	}))
	t.Cleanup(rc.srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: hung handlers return, then Close
	return rc
}

func (rc *receiver) hostPort() string { return strings.TrimPrefix(rc.srv.URL, "http://") }

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

// next waits for the next successful delivery.
func (rc *receiver) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-rc.ok:
		return r
	case <-time.After(deliveryWait):
		t.Fatalf("no message arrived at %s within %s", rc.srv.URL, deliveryWait)
		return request{}
	}
}

// smtpServer is a minimal SMTP server (RFC 5321 without extensions) that
// hands each message's DATA to a channel.
type smtpServer struct {
	ln   net.Listener
	msgs chan string
}

func newSMTPServer(t *testing.T) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &smtpServer{ln: ln, msgs: make(chan string, 10)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	say("220 mail.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 mail.test")
		case strings.HasPrefix(cmd, "MAIL FROM"), strings.HasPrefix(cmd, "RCPT TO"), strings.HasPrefix(cmd, "RSET"), strings.HasPrefix(cmd, "NOOP"):
			say("250 OK")
		case cmd == "DATA":
			say("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			s.msgs <- b.String()
			say("250 OK queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}

type alertBundle struct {
	st   *store.Store
	deps worker.Deps
	ctx  context.Context
}

// testFacts are the facts the alert tests' index would give.
func testFacts(_ context.Context, p netip.Prefix) (alert.Facts, error) {
	if p != netip.MustParsePrefix("203.0.113.9/32") {
		return alert.Facts{}, nil
	}
	return alert.Facts{Known: true, Classification: "malicious", Tags: []string{"honeypot", "scanner"}, Country: "NL", ASN: 64500, ASOrg: "Example Net",
		Reasons: []string{"tag honeypot from bouncer:fw1 on 203.0.113.9/32"}}, nil
}

func setupAlerts(t *testing.T, tune func(*worker.AlertDeps)) alertBundle {
	t.Helper()
	st := storetest.Store(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := alert.NewSealer(key)
	require.NoError(t, err)
	a := &worker.AlertDeps{Sealer: sealer, Facts: testFacts, BaseURL: "https://muninn.example/", Period: 50 * time.Millisecond,
		SendTimeout: 2 * time.Second, RetryBase: 20 * time.Millisecond, MaxAttempts: 4, CheckPeriod: time.Hour}
	if tune != nil {
		tune(a)
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := alertBundle{st: st, ctx: context.Background(),
		deps: worker.Deps{Store: st, Logger: log, Now: time.Now, Alerts: a, FetchPollInterval: 20 * time.Millisecond}}
	// The default rules would match nothing here; they go so tests count
	// only their own rules' messages.
	rules, err := st.AlertRules(b.ctx)
	require.NoError(t, err)
	for _, r := range rules {
		require.NoError(t, st.DeleteAlertRule(b.ctx, r.Name, "test"))
	}
	return b
}

func (b alertBundle) channel(t *testing.T, name, raw string) {
	t.Helper()
	sealed, err := b.deps.Alerts.Sealer.Seal(raw)
	require.NoError(t, err)
	service, err := alert.Service(raw)
	require.NoError(t, err)
	_, _, err = b.st.PutAlertChannel(b.ctx, store.AlertChannel{Name: name, Service: service, URLSealed: sealed, URLRedacted: alert.Redact(raw)}, "test")
	require.NoError(t, err)
}

func (b alertBundle) rule(t *testing.T, r store.AlertRule) {
	t.Helper()
	r.Enabled = true
	_, _, err := b.st.PutAlertRule(b.ctx, r, "test")
	require.NoError(t, err)
}

func (b alertBundle) start(t *testing.T) {
	t.Helper()
	startClient(t, testBundle{st: b.st, deps: b.deps, ctx: b.ctx})
}

var hitAt = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func honeypotHit(ip string) store.Event {
	return store.Event{At: hitAt, Kind: store.EventHoneypot, SubjectType: "address", Subject: ip,
		Details: map[string]any{"ruleset": "edge", "bouncer": "fw1", "protocol": "tcp", "port": 23}}
}

const wantTitle = "[muninn] honeypot: 203.0.113.9 touched tcp/23 on fw1"

const wantBody = `honeypot: 203.0.113.9 touched tcp/23 on fw1
at: 2026-11-30 10:00:00Z
classification: malicious
tags: honeypot, scanner
country/ASN: NL AS64500 Example Net
reason: tag honeypot from bouncer:fw1 on 203.0.113.9/32
https://muninn.example/ui/ips/203.0.113.9`

// waitEvents polls until kind has n events and returns them.
func (b alertBundle) waitEvents(t *testing.T, kind string, n int) []store.Event {
	t.Helper()
	deadline := time.Now().Add(deliveryWait)
	for {
		evs, err := b.st.ListEvents(b.ctx, store.EventFilter{Kind: kind})
		require.NoError(t, err)
		if len(evs) >= n {
			require.Len(t, evs, n)
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s events after %s, want %d", len(evs), kind, deliveryWait, n)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
}

func TestAlertMessageReachesEachServiceExactly(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, nil)
	hook := newReceiver(t, `{}`)
	ntfy := newReceiver(t, `{"id":"m1","time":1764496800,"event":"message","topic":"muninn"}`)
	gotify := newReceiver(t, `{"id":1,"appid":1,"message":"m","title":"t","priority":5,"date":"2026-11-30T10:00:00Z"}`)
	smtp := newSMTPServer(t)
	b.channel(t, "hook", "generic://"+hook.hostPort()+"/hooks/muninn?template=json&disabletls=yes&@Authorization=Bearer+hook-secret-1")
	b.channel(t, "ntfy", "ntfy://:ntfy-secret-2@"+ntfy.hostPort()+"/muninn?disabletls=yes")
	b.channel(t, "gotify", "gotify://"+gotify.hostPort()+"/AGotifySecret3x?disabletls=yes")
	b.channel(t, "mail", "smtp://"+smtp.ln.Addr().String()+"/?from=muninn@example.org&to=ops@example.org&encryption=None&usestarttls=no&auth=None")
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot})
	b.start(t)
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))

	r := hook.next(t)
	require.Equal(t, "POST", r.Method)
	require.Equal(t, "/hooks/muninn", r.Path)
	require.Equal(t, "Bearer hook-secret-1", r.Header.Get("Authorization"))
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	var hookBody map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.Body), &hookBody))
	require.Equal(t, map[string]string{"title": wantTitle, "message": wantBody}, hookBody)

	r = ntfy.next(t)
	require.Equal(t, "POST", r.Method)
	// ntfy's publish-as-body shape: POST /<topic>, the text as the body,
	// the title in a header.
	require.Equal(t, "/muninn", r.Path)
	require.Equal(t, wantTitle, r.Header.Get("Title"))
	require.Equal(t, wantBody, r.Body)
	user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
	require.True(t, ok)
	require.Equal(t, "", user)
	require.Equal(t, "ntfy-secret-2", pass)

	r = gotify.next(t)
	require.Equal(t, "/message", r.Path)
	var gotifyBody struct {
		Title, Message string
	}
	require.NoError(t, json.Unmarshal([]byte(r.Body), &gotifyBody))
	require.Equal(t, wantTitle, gotifyBody.Title)
	require.Equal(t, wantBody, gotifyBody.Message)
	require.Contains(t, r.Query+r.Header.Get("X-Gotify-Key")+r.Header.Get("Authorization"), "AGotifySecret3x")

	select {
	case raw := <-smtp.msgs:
		m, err := mail.ReadMessage(strings.NewReader(raw))
		require.NoError(t, err)
		require.Equal(t, wantTitle, m.Header.Get("Subject"))
		require.Equal(t, "ops@example.org", m.Header.Get("To"))
		body, err := io.ReadAll(m.Body)
		require.NoError(t, err)
		require.Equal(t, wantBody, strings.TrimRight(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n"))
	case <-time.After(deliveryWait):
		t.Fatalf("no mail within %s", deliveryWait)
	}
	for _, rc := range []*receiver{hook, ntfy, gotify} {
		require.Len(t, rc.requests(), 1)
	}
}

func hookURL(rc *receiver) string {
	return "generic://" + rc.hostPort() + "/hook?template=json&disabletls=yes"
}

func titleOf(t *testing.T, r request) string {
	t.Helper()
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.Body), &m))
	return m["title"]
}

func TestAlertGroupsEventsIntoOneMessage(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, nil)
	hook := newReceiver(t, `{}`)
	b.channel(t, "hook", hookURL(hook))
	// A group goes at 3 events, or 300 ms after its first.
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot, GroupThreshold: 3, GroupWait: 300 * time.Millisecond})
	b.start(t)
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9"), honeypotHit("203.0.113.10"), honeypotHit("203.0.113.11")}))
	r := hook.next(t)
	require.Equal(t, "[muninn] honeypot: 3 events", titleOf(t, r))
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.Body), &m))
	require.Equal(t, 3, strings.Count(m["message"], "honeypot: 203.0.113."))

	// One more event waits for group_wait, then goes alone.
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
	r = hook.next(t)
	require.Equal(t, wantTitle, titleOf(t, r))
	require.Len(t, hook.requests(), 2)
}

func TestAlertRateLimitDropsMessagesOverIt(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, nil)
	hook := newReceiver(t, `{}`)
	b.channel(t, "hook", hookURL(hook))
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot, RatePerHour: 2})
	b.start(t)
	for i := range 2 {
		require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
		hook.next(t)
		require.Len(t, hook.requests(), i+1)
	}
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
	evs := b.waitEvents(t, store.EventAlertSuppressed, 1)
	require.Equal(t, "hits", evs[0].Subject)
	require.Equal(t, map[string]any{"events": float64(1), "rate_per_hour": float64(2)}, evs[0].Details)
	require.Len(t, hook.requests(), 2)
}

func TestAlertDeliveryRetriesAfter500(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, nil)
	hook := newReceiver(t, `{}`)
	hook.fail = 2
	b.channel(t, "hook", hookURL(hook))
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot})
	b.start(t)
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
	r := hook.next(t)
	require.Equal(t, wantTitle, titleOf(t, r))
	got := hook.requests()
	require.Len(t, got, 3, "two 500s, then the delivery")
	for _, g := range got {
		require.Equal(t, r.Body, g.Body, "every attempt sends the same message")
	}
	evs, err := b.st.ListEvents(b.ctx, store.EventFilter{Kind: store.EventAlertDeliveryFailed})
	require.NoError(t, err)
	require.Empty(t, evs)
}

func TestAlertDeliveryRetriesAfterTimeout(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, func(a *worker.AlertDeps) { a.SendTimeout = 300 * time.Millisecond })
	hook := newReceiver(t, `{}`)
	hook.hang = 1
	b.channel(t, "hook", hookURL(hook))
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot})
	b.start(t)
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
	r := hook.next(t)
	require.Equal(t, wantTitle, titleOf(t, r))
	require.Len(t, hook.requests(), 2, "one hung past the timeout, then the delivery")
	// The hung request itself ends at http.DefaultClient's bound (TestMain:
	// as muninn's main sets it): no goroutine waits on the receiver forever.
	select {
	case <-hook.abandoned:
	case <-time.After(20 * time.Second):
		t.Fatal("the hung request was never abandoned")
	}
}

func TestAlertDeliveryFailureIsAnEventThatAlertsNothing(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, func(a *worker.AlertDeps) { a.MaxAttempts = 2 })
	hook := newReceiver(t, `{}`)
	hook.fail = 1000
	b.channel(t, "hook", hookURL(hook))
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot})
	// A rule on delivery failures would loop if they were matched.
	b.rule(t, store.AlertRule{Name: "failures", Kind: store.EventAlertDeliveryFailed})
	b.start(t)
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
	evs := b.waitEvents(t, store.EventAlertDeliveryFailed, 1)
	require.Equal(t, "channel", evs[0].SubjectType)
	require.Equal(t, "hook", evs[0].Subject)
	require.Equal(t, "hits", evs[0].Details["rule"])
	require.Equal(t, wantTitle, evs[0].Details["title"])
	require.Equal(t, float64(2), evs[0].Details["attempts"])
	require.Contains(t, evs[0].Details["error"], "500")
	require.Len(t, hook.requests(), 2)
}

func TestAlertChecksReportABouncerSilentOnce(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, func(a *worker.AlertDeps) { a.SilentAfter, a.LagAfter = time.Minute, time.Hour })
	_, err := b.st.CreateBouncer(b.ctx, "fw1", []string{}, store.HashSecret("k1"), "test")
	require.NoError(t, err)
	now := time.Now().Add(2 * time.Minute)
	b.deps.Now = func() time.Time { return now }
	w := worker.NewAlertCheckWorker(b.deps)
	for range 2 {
		require.NoError(t, w.Work(b.ctx, nil))
	}
	evs := b.waitEvents(t, store.EventBouncerSilent, 1)
	require.Equal(t, "fw1", evs[0].Subject)
	m, err := alert.Compose(b.ctx, evs, nil, "")
	require.NoError(t, err)
	require.Equal(t, "[muninn] bouncer.silent: fw1 not seen for 2 minutes", m.Title)
}

// TestAlertFromAWorkerOnlyProcessCarriesTheFacts: a process without an
// index (muninn worker) reads an address's facts from the store through
// the resolver: the rule's tag, classification, country and ASN filters
// match, and the message carries the facts and reason lines.
func TestAlertFromAWorkerOnlyProcessCarriesTheFacts(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, nil)
	b.deps.Alerts.Facts = alert.FromIndex(nil, b.st, time.Now)
	now := time.Now()
	exp := now.Add(time.Hour)
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Source: "ingest:feedx", Classification: "malicious", SeenAt: now},
		{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Source: "bouncer:fw1", Tags: []string{"honeypot"}, SeenAt: now, ExpiresAt: &exp},
	}, "test"))
	_, err := b.st.ReplaceGeoNetworks(b.ctx, "test", func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: netip.MustParsePrefix("203.0.113.0/24"), Country: "NL", Continent: "EU", ASN: 64500, ASOrg: "Example Net"}, nil)
	})
	require.NoError(t, err)
	hook := newReceiver(t, `{}`)
	b.channel(t, "hook", hookURL(hook))
	b.rule(t, store.AlertRule{Name: "hits", Kind: store.EventHoneypot,
		Filters: store.AlertFilters{Tag: "honeypot", Classification: "malicious", Country: "NL", ASN: 64500}})
	b.rule(t, store.AlertRule{Name: "elsewhere", Kind: store.EventHoneypot, Filters: store.AlertFilters{Country: "DE"}})
	b.start(t)
	require.NoError(t, b.st.AppendEvents(b.ctx, []store.Event{honeypotHit("203.0.113.9")}))
	r := hook.next(t)
	var got map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.Body), &got))
	require.Equal(t, map[string]string{"title": wantTitle, "message": `honeypot: 203.0.113.9 touched tcp/23 on fw1
at: 2026-11-30 10:00:00Z
classification: malicious
tags: honeypot
country/ASN: NL AS64500 Example Net
reason: classification malicious from ingest:feedx on 203.0.113.0/24
reason: tag honeypot from bouncer:fw1 on 203.0.113.9/32
https://muninn.example/ui/ips/203.0.113.9`}, got)
	require.Len(t, hook.requests(), 1, "the DE rule matched nothing")
}

// A flow.bad_contact is about its outside address: the rule's filters and
// the message's facts are that address's, and the message names both ends.
func TestAlertFlowBadContactIsAboutTheOutsideAddress(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t, nil)
	hook := newReceiver(t, `{}`)
	b.channel(t, "hook", hookURL(hook))
	b.rule(t, store.AlertRule{Name: "contacts", Kind: store.EventFlowBadContact, Filters: store.AlertFilters{Tag: "scanner"}})
	b.start(t)
	host := netip.MustParseAddr("10.0.0.5")
	// 203.0.113.10 has no facts: the tag filter keeps its contact out.
	_, err := b.st.FlowApply(b.ctx, store.FlowBatch{Contacts: []store.FlowContact{
		{Host: host, Remote: netip.MustParseAddr("203.0.113.10"), Hour: hitAt, Classification: "malicious", Tags: []string{}, Bytes: 60},
		{Host: host, Remote: netip.MustParseAddr("203.0.113.9"), Hour: hitAt, Classification: "malicious", Tags: []string{"c2", "scanner"}, Bytes: 1000},
	}})
	require.NoError(t, err)
	r := hook.next(t)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.Body), &m))
	require.Equal(t, "[muninn] flow.bad_contact: inside host 10.0.0.5 talked with 203.0.113.9 (malicious; tags c2, scanner), 1000 bytes in the hour", m["title"])
	require.Equal(t, `flow.bad_contact: inside host 10.0.0.5 talked with 203.0.113.9 (malicious; tags c2, scanner), 1000 bytes in the hour
at: 2026-11-30 10:00:00Z
classification: malicious
tags: honeypot, scanner
country/ASN: NL AS64500 Example Net
reason: tag honeypot from bouncer:fw1 on 203.0.113.9/32
https://muninn.example/ui/ips/203.0.113.9`, m["message"])
	b.waitEvents(t, store.EventFlowBadContact, 2)
	require.Len(t, hook.requests(), 1)
}
