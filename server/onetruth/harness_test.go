package onetruth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/server/ui"
)

// server is a muninn serve assembled in process as main assembles it: store,
// index, running render hub, the HTTP surface (every /api/v1 response
// validated against the contract) and the UI, all on one test clock.
type server struct {
	clock         *clock
	url           string
	st            *store.Store
	ix            *index.Index
	admin, writer string
}

// clock is the server's clock: it stands still until the test advances it, so
// assertions expire exactly between rounds and never during a check.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

// startServer starts a server on a new database with a writer and an admin
// token and a UI writer.
func startServer(t *testing.T) *server {
	t.Helper()
	s := serve(t, storetest.Store(t), &clock{at: time.Now()})
	for role, dst := range map[string]*string{api.RoleAdmin: &s.admin, api.RoleWriter: &s.writer} {
		_, secret, err := api.CreateToken(context.Background(), s.st, role, role, nil, "bootstrap")
		require.NoError(t, err)
		*dst = secret
	}
	// The UI's writer has the writer token's name, so both write as manual:writer.
	hash, err := ui.HashPassword(uiPassword)
	require.NoError(t, err)
	_, err = s.st.CreateUser(context.Background(), "writer", "writer", hash, "bootstrap")
	require.NoError(t, err)
	return s
}

// peer starts a second server process on s's database and clock, as a
// second muninn serve would run: its own index, render hub and HTTP surface.
func (s *server) peer(t *testing.T) *server {
	t.Helper()
	p := serve(t, s.st, s.clock)
	p.admin, p.writer = s.admin, s.writer
	return p
}

// serve assembles one server process on st.
func serve(t *testing.T, st *store.Store, clk *clock) *server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ix := indextest.Start(t, st, log, clk.now)
	hub := render.NewHub(st, log, clk.now, render.Options{Source: ix.RenderSource()})
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-hubDone })
	webUI, err := ui.New(ui.Deps{Store: st, Index: ix, Logger: log, Now: clk.now, FlowAlertTags: []string{flowAlertTag}})
	require.NoError(t, err)
	h, err := httpserver.New(httpserver.Deps{Store: st, Index: ix, Logger: log, Now: clk.now, Registry: prometheus.NewRegistry(),
		MaxIngestBytes: 1 << 20, FlowAlertTags: []string{flowAlertTag}, Render: hub, HoneypotTTL: time.Hour, Wrap: apitest.ValidateResponses(t),
		Mount: []func(chi.Router){webUI.Mount}})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &server{clock: clk, url: srv.URL, st: st, ix: ix}
}

// call sends a request with one credential header ("" for none) and returns the
// status and body.
func (s *server) call(t *testing.T, header, value, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
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

// get sends an authenticated GET and returns the status and body.
func (s *server) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	return s.call(t, "Authorization", "Bearer "+s.admin, http.MethodGet, path, "", nil)
}

// mustGet sends an authenticated GET that must answer 200.
func (s *server) mustGet(t *testing.T, path string) []byte {
	t.Helper()
	status, body := s.get(t, path)
	require.Equal(t, http.StatusOK, status, "GET %s: %s", path, body)
	return body
}

// send sends a body with a token and requires the status.
func (s *server) send(t *testing.T, token, method, path, contentType string, body []byte, want int) []byte {
	t.Helper()
	status, out := s.call(t, "Authorization", "Bearer "+token, method, path, contentType, body)
	require.Equal(t, want, status, "%s %s %s: %s", method, path, body, out)
	return out
}

func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// ingest stores NDJSON observations; every line must be accepted.
func (s *server) ingest(t *testing.T, lines []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(jsonOf(t, l))
		buf.WriteByte('\n')
	}
	out := s.send(t, s.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", buf.Bytes(), http.StatusOK)
	var res struct {
		Accepted int `json:"accepted"`
		Rejected int `json:"rejected"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	require.Equal(t, len(lines), res.Accepted, "ingest: %s", out)
}

// overridePath is the override endpoint of p.
func overridePath(p netip.Prefix) string {
	if p.IsSingleIP() {
		return "/api/v1/ips/" + p.Addr().String() + "/override"
	}
	return "/api/v1/networks/" + p.String() + "/override"
}

// networkPath is the lookup endpoint of a network.
func networkPath(p netip.Prefix) string { return "/api/v1/networks/" + p.String() }

// settle makes the index apply every recorded change: after it, every answer
// read from the index reflects the writes made so far.
func (s *server) settle(t *testing.T) {
	t.Helper()
	require.NoError(t, s.ix.CatchUp(context.Background()))
}

// advance moves the clock of s and its peers on by d and has each index
// publish what expired meanwhile, as its Run does when the next expiry comes
// (its timer runs on real time, the clock does not).
func (s *server) advance(d time.Duration, peers ...*server) {
	s.clock.advance(d)
	s.ix.Expire()
	for _, p := range peers {
		p.ix.Expire()
	}
}

// model is what PostgreSQL holds, resolved by the one resolver.
type model struct {
	now      time.Time
	prefixes []resolve.Prefix // every stored prefix with its live assertions
}

// loadModel reads every stored prefix with its assertions live at now straight
// from the store.
func loadModel(t *testing.T, st *store.Store, now time.Time) *model {
	t.Helper()
	m := &model{now: now}
	_, err := st.LoadAll(context.Background(), now, func(p resolve.Prefix) error {
		p.Assertions = slices.Clone(p.Assertions)
		m.prefixes = append(m.prefixes, p)
		return nil
	}, func(store.GeoNetwork) error { return nil })
	require.NoError(t, err)
	sort.Slice(m.prefixes, func(i, j int) bool { return prefixLess(m.prefixes[i].Prefix, m.prefixes[j].Prefix) })
	return m
}

// prefixLess orders v4 before v6, then by bits (wider first), then by address.
func prefixLess(a, b netip.Prefix) bool {
	if a.Addr().Is4() != b.Addr().Is4() {
		return a.Addr().Is4()
	}
	if a.Bits() != b.Bits() {
		return a.Bits() < b.Bits()
	}
	return a.Addr().Less(b.Addr())
}

// view is the model's effective view of target (an address as a /32 or /128,
// or a network).
func (m *model) view(target netip.Prefix) resolve.View {
	var in []resolve.Prefix
	for _, p := range m.prefixes {
		if p.Prefix.Bits() <= target.Bits() && p.Prefix.Addr().Is4() == target.Addr().Is4() && p.Prefix.Contains(target.Addr()) {
			in = append(in, p)
		}
	}
	return resolve.Resolve(target, in, m.now)
}

// assertions counts the live assertions.
func (m *model) assertions() int {
	n := 0
	for _, p := range m.prefixes {
		n += len(p.Assertions)
	}
	return n
}

// existing are the stored prefixes that exist for outputs, least specific first.
func (m *model) existing() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range m.prefixes {
		if p.Exists(m.now) {
			out = append(out, p.Prefix)
		}
	}
	return out
}

// stored reports whether p is a stored prefix (existing or ghost).
func (m *model) stored(p netip.Prefix) bool {
	for _, q := range m.prefixes {
		if q.Prefix == p {
			return true
		}
	}
	return false
}

// apiView is the part of the contract's View the test compares.
type apiView struct {
	FirstSeen            time.Time `json:"first_seen"`
	LastSeen             time.Time `json:"last_seen"`
	Sightings            int64     `json:"sightings"`
	Classification       string    `json:"classification"`
	ClassificationSource string    `json:"classification_source"`
	Tags                 []apiFact `json:"tags"`
	Suppressed           []apiFact `json:"suppressed_tags"`
	Sources              []string  `json:"sources"`
	Note                 string    `json:"note"`
	Prefixes             []struct {
		Prefix string `json:"prefix"`
	} `json:"prefixes"`
}

type apiFact struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Prefix string `json:"prefix"`
}

// facts renders tag facts as sorted "name source prefix" strings.
func facts(fs []resolve.TagFact) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Name+" "+f.Source+" "+f.Prefix.String())
	}
	slices.Sort(out)
	return out
}

func apiFacts(fs []apiFact) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Name+" "+f.Source+" "+f.Prefix)
	}
	slices.Sort(out)
	return out
}

// nonNil returns s, or an empty slice for nil, so that nil and empty compare equal.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// viewDiff lists how an API view differs from the model's view; empty when they agree.
func viewDiff(got apiView, want resolve.View) []string {
	var d []string
	diff := func(field string, g, w any) {
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if !bytes.Equal(gj, wj) {
			d = append(d, field+": got "+string(gj)+", model "+string(wj))
		}
	}
	diff("classification", got.Classification, want.Classification)
	diff("classification_source", got.ClassificationSource, want.ClassificationSource)
	diff("tags", apiFacts(got.Tags), facts(want.Tags))
	diff("suppressed_tags", apiFacts(got.Suppressed), facts(want.Suppressed))
	diff("sources", nonNil(got.Sources), nonNil(want.Sources))
	diff("note", got.Note, want.Note)
	diff("first_seen last_seen sightings", seenOf(got.FirstSeen, got.LastSeen, got.Sightings, true), seenOf(want.FirstSeen, want.LastSeen, want.Sightings, true))
	var gp, wp []string
	for _, p := range got.Prefixes {
		gp = append(gp, p.Prefix)
	}
	for _, p := range want.Prefixes {
		wp = append(wp, p.String())
	}
	diff("prefixes", nonNil(gp), nonNil(wp))
	return d
}

// summary is the compact form of a view every bulk output shows.
type summary struct {
	Classification string   `json:"classification"`
	Tags           []string `json:"tags"`
	Sources        []string `json:"sources"`
	Note           string   `json:"note,omitempty"`
	// Seen is first and last seen (to the second) and, where the output has
	// it, the sighting count.
	Seen string `json:"seen"`
}

// summaryOf is the row of a view in an output with or without notes and
// sighting counts.
func summaryOf(v resolve.View, withNote, withSightings bool) summary {
	s := summary{Classification: v.Classification, Tags: nonNil(v.TagNames()), Sources: nonNil(slices.Clone(v.Sources)),
		Seen: seenOf(v.FirstSeen, v.LastSeen, v.Sightings, withSightings)}
	if withNote {
		s.Note = v.Note
	}
	return s
}

// seenOf words first and last seen to the second, and the sightings.
func seenOf(first, last time.Time, sightings int64, withSightings bool) string {
	const layout = "2006-01-02T15:04:05Z"
	out := first.UTC().Format(layout) + " " + last.UTC().Format(layout)
	if withSightings {
		out += fmt.Sprintf(" %d", sightings)
	}
	return out
}

// parseTime reads a time in RFC 3339 or ClickHouse's "YYYY-MM-DD hh:mm:ss" (UTC).
func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	if at, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return at
	}
	at, err := time.Parse(time.DateTime, s)
	require.NoError(t, err, "time %q", s)
	return at
}

// normalized sorts the lists of s so that order never decides equality.
func (s summary) normalized() summary {
	s.Tags, s.Sources = nonNil(slices.Clone(s.Tags)), nonNil(slices.Clone(s.Sources))
	slices.Sort(s.Tags)
	slices.Sort(s.Sources)
	return s
}

func (s summary) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// splitList splits a comma-joined export column.
func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
