package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// renderBundle is a testBundle whose server has a running render hub.
type renderBundle struct {
	*testBundle
	hub *render.Hub
}

func setupRender(t testing.TB) *renderBundle {
	t.Helper()
	return setupRenderWith(t, storetest.Store(t), nil)
}

// setupRenderOn starts a serve process (index, render hub, HTTP server) on
// st: called again on the same store it is a second process, or a restart.
func setupRenderOn(t testing.TB, st *store.Store, now func() time.Time) *renderBundle {
	t.Helper()
	return setupRenderWith(t, st, func(d *httpserver.Deps) { d.Now = now })
}

// setupRenderClocks is setupRender with the API's and the hub's clock now.
func setupRenderClocks(t testing.TB, now func() time.Time) *renderBundle {
	t.Helper()
	return setupRenderHub(t, storetest.Store(t), now, func(d *httpserver.Deps) { d.Now = now })
}

// setupRenderWith starts a serve process on st with tweak applied to the
// server's dependencies (a clock, limits) before it starts.
func setupRenderWith(t testing.TB, st *store.Store, tweak func(*httpserver.Deps)) *renderBundle {
	t.Helper()
	return setupRenderHub(t, st, time.Now, tweak)
}

// setupRenderHub is setupRenderWith with the hub's clock hubNow.
func setupRenderHub(t testing.TB, st *store.Store, hubNow func() time.Time, tweak func(*httpserver.Deps)) *renderBundle {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ix := indextest.Start(t, st, log, nil)
	hub := render.NewHub(st, log, hubNow, render.Options{Debounce: 20 * time.Millisecond, Source: ix.RenderSource()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deps := httpserver.Deps{Store: st, Index: ix, Logger: log, Now: time.Now, Registry: prometheus.NewRegistry(),
		MaxIngestBytes: 1 << 20, Render: hub, HoneypotTTL: time.Hour, Wrap: apitest.ValidateResponses(t)}
	if tweak != nil {
		tweak(&deps)
	}
	h, err := httpserver.New(deps)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := &testBundle{srv: srv, store: st, ix: ix}
	for role, dst := range map[string]*string{api.RoleAdmin: &b.admin, api.RoleWriter: &b.writer, api.RoleReader: &b.reader} {
		name := "t-" + role
		toks, err := st.Tokens(context.Background())
		require.NoError(t, err)
		if slices.ContainsFunc(toks, func(tok store.Token) bool { return tok.Name == name }) {
			name = fmt.Sprintf("%s-%d", name, len(toks)) // a second process on the store
		}
		_, secret, err := api.CreateToken(context.Background(), st, name, role, nil, "test")
		require.NoError(t, err)
		*dst = secret
	}
	return &renderBundle{testBundle: b, hub: hub}
}

func (b *renderBundle) putRuleset(t testing.TB, text string, want int) []byte {
	t.Helper()
	name := strings.Fields(text)[1]
	status, body := b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/"+name, "text/plain", strings.NewReader(text))
	require.Equal(t, want, status, "body: %s", body)
	return body
}

type renderRule struct {
	ID     int      `json:"id"`
	Action string   `json:"action"`
	Text   string   `json:"text"`
	V4     []string `json:"v4"`
	V6     []string `json:"v6"`
	AddV4  []string `json:"add_v4"`
	DelV4  []string `json:"del_v4"`
}

type renderDoc struct {
	Ruleset      string       `json:"ruleset"`
	Version      int64        `json:"version"`
	Hash         string       `json:"hash"`
	Delta        bool         `json:"delta"`
	BaseVersion  int64        `json:"base_version"`
	Hook         string       `json:"hook"`
	Rules        []renderRule `json:"rules"`
	GuardRemoved []struct {
		Prefix string `json:"prefix"`
		Rule   int    `json:"rule"`
		Reason string `json:"reason"`
	} `json:"guard_removed"`
}

// getRender fetches a render; status 304 leaves the doc empty.
func (b *renderBundle) getRender(t *testing.T, name, query string) (int, renderDoc, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/api/v1/rulesets/"+name+"/render"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var doc renderDoc
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(raw, &doc), "body: %s", raw)
	}
	return resp.StatusCode, doc, resp.Header
}

// waitVersion long-polls until the render is above version.
func (b *renderBundle) waitVersion(t *testing.T, name string, version int64) renderDoc {
	t.Helper()
	status, doc, _ := b.getRender(t, name, fmt.Sprintf("?since=%d&wait=20s", version))
	require.Equal(t, http.StatusOK, status)
	return doc
}

func problemOf(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(raw, &p), "body: %s", raw)
	return p
}

func TestRulesetCRUDAndValidation(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	text := "ruleset edge\n  hook input\n  scope tcp dport 80,443\n  default allow\n  block classification malicious\n  allow country US\n"
	created := b.putRuleset(t, text, http.StatusCreated)
	var rs struct {
		Name    string         `json:"name"`
		Text    string         `json:"text"`
		Version int64          `json:"version"`
		Policy  map[string]any `json:"policy"`
	}
	require.NoError(t, json.Unmarshal(created, &rs))
	require.Equal(t, "edge", rs.Name)
	require.EqualValues(t, 1, rs.Version)
	require.Equal(t, "input", rs.Policy["hook"])

	// The JSON form round-trips and bumps the version.
	rs.Policy["default"] = "block"
	var again struct {
		Text    string `json:"text"`
		Version int64  `json:"version"`
	}
	b.json(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", rs.Policy, http.StatusOK, &again)
	require.EqualValues(t, 2, again.Version)
	require.Contains(t, again.Text, "default block")

	// The JSON form is typed in the contract: a bad condition is named by its JSON Pointer.
	status, raw := b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", "application/json", strings.NewReader(
		`{"name":"edge","hook":"input","rules":[{"action":"block","conds":[{"kind":"tag","values":["x"]},{"kind":"colour","values":["red"]}]}]}`))
	require.Equal(t, http.StatusBadRequest, status, "%s", raw)
	bad := problemOf(t, raw)["errors"].([]any)[0].(map[string]any)
	require.Equal(t, "/rules/0/conds/1/kind", bad["field"], "%s", raw)
	status, raw = b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", "application/xml", strings.NewReader(`<ruleset/>`))
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%s", raw)

	var list []struct{ Name string }
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets", nil, http.StatusOK, &list)
	require.Len(t, list, 1)

	// Syntax errors carry line and column.
	status, raw = b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", "text/plain", strings.NewReader("ruleset edge\n  block colour red\n"))
	require.Equal(t, http.StatusBadRequest, status, "%s", raw)
	errs := problemOf(t, raw)["errors"].([]any)[0].(map[string]any)
	require.Equal(t, "", errs["field"], "the whole text body")
	require.EqualValues(t, 2, errs["line"])
	require.EqualValues(t, 9, errs["column"])
	require.Contains(t, errs["reason"], "colour")

	for name, body := range map[string]string{
		"empty":         "",
		"name mismatch": "ruleset other\n  block tag x\n",
		"unknown list":  "ruleset edge\n  block list nope\n",
		"bad hook":      "ruleset edge\n  hook output\n",
	} {
		status, raw := b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", "text/plain", strings.NewReader(body))
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", name, raw)
	}
	// Unknown JSON fields are refused.
	b.json(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", map[string]any{"name": "edge", "rules": []any{}, "colour": 1}, http.StatusBadRequest, nil)

	big := "ruleset edge\n" + strings.Repeat("  block tag x\n", 20000)
	status, raw = b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge", "text/plain", strings.NewReader(big))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", raw)

	// Roles: a reader cannot write, no token is 401.
	status, _ = b.do(t, b.reader, http.MethodPut, "/api/v1/rulesets/edge", "text/plain", strings.NewReader(text))
	require.Equal(t, http.StatusForbidden, status)
	status, _ = b.do(t, "", http.MethodGet, "/api/v1/rulesets/edge", "", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/render", "", nil)
	require.Equal(t, http.StatusOK, status)

	b.json(t, b.admin, http.MethodDelete, "/api/v1/rulesets/edge", nil, http.StatusNoContent, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge", nil, http.StatusNotFound, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/rulesets/edge", nil, http.StatusNotFound, nil)

	var audit struct {
		Items []struct{ Action string } `json:"items"`
	}
	b.json(t, b.admin, http.MethodGet, "/api/v1/audit", nil, http.StatusOK, &audit)
	var actions []string
	for _, a := range audit.Items {
		actions = append(actions, a.Action)
	}
	require.Contains(t, actions, "ruleset.put")
	require.Contains(t, actions, "ruleset.delete")
}

func TestListsAndGuard(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["ipsum"]}
{"ip":"192.0.2.9","source":"feed","tags":["other"]}
`)
	var l struct{ Name, Selector string }
	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/bad", map[string]string{"selector": "tag   ipsum"}, http.StatusOK, &l)
	require.Equal(t, "tag ipsum", l.Selector)
	b.json(t, b.reader, http.MethodGet, "/api/v1/lists/bad", nil, http.StatusOK, &l)

	// Self and cyclic references are refused.
	raw := b.json(t, b.admin, http.MethodPut, "/api/v1/lists/loop", map[string]string{"selector": "list loop"}, http.StatusBadRequest, nil)
	require.Contains(t, string(raw), "cycle")
	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/a", map[string]string{"selector": "list bad"}, http.StatusOK, nil)
	raw = b.json(t, b.admin, http.MethodPut, "/api/v1/lists/bad", map[string]string{"selector": "list a"}, http.StatusBadRequest, nil)
	require.Contains(t, string(raw), "cycle")
	raw = b.json(t, b.admin, http.MethodPut, "/api/v1/lists/x", map[string]string{"selector": "tag"}, http.StatusBadRequest, nil)
	require.Contains(t, string(raw), `"line":1`)
	b.json(t, b.writer, http.MethodPut, "/api/v1/lists/x", map[string]string{"selector": "tag a"}, http.StatusForbidden, nil)
	// A list in use cannot be deleted.
	b.json(t, b.admin, http.MethodDelete, "/api/v1/lists/bad", nil, http.StatusConflict, nil)

	for format, want := range map[string]string{"txt": "198.51.100.0/24\n", "csv": "prefix,family\n198.51.100.0/24,ipv4\n"} {
		status, body := b.do(t, b.reader, http.MethodGet, "/api/v1/lists/a/prefixes?format="+format, "", nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, want, string(body))
	}
	var js struct{ V4, V6 []string }
	b.json(t, b.reader, http.MethodGet, "/api/v1/lists/a/prefixes?format=json", nil, http.StatusOK, &js)
	require.Equal(t, []string{"198.51.100.0/24"}, js.V4)
	b.json(t, b.reader, http.MethodGet, "/api/v1/lists/a/prefixes?format=xml", nil, http.StatusBadRequest, nil)

	// The operator's guard entries come out of block sets and are reported.
	var g struct {
		Entries []struct{ Prefix, Reason string }
		Builtin int
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/guard", nil, http.StatusOK, &g)
	require.Empty(t, g.Entries)
	require.Positive(t, g.Builtin)
	b.json(t, b.admin, http.MethodPut, "/api/v1/guard", map[string]any{"entries": []map[string]string{{"prefix": "198.51.100.128/25", "reason": "office"}}}, http.StatusOK, &g)
	require.Equal(t, "198.51.100.128/25", g.Entries[0].Prefix)
	b.json(t, b.admin, http.MethodPut, "/api/v1/guard", map[string]any{"entries": []map[string]string{{"prefix": "nope"}}}, http.StatusBadRequest, nil)

	b.putRuleset(t, "ruleset edge\n  block list a\n", http.StatusCreated)
	_, doc, _ := b.getRender(t, "edge", "")
	require.Equal(t, []string{"198.51.100.0/25"}, doc.Rules[0].V4)
	require.Len(t, doc.GuardRemoved, 1)
	require.Equal(t, "198.51.100.128/25", doc.GuardRemoved[0].Prefix)
	require.Equal(t, 1, doc.GuardRemoved[0].Rule)
	require.Contains(t, doc.GuardRemoved[0].Reason, "office")

	status, body := b.do(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/deny?format=txt", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "198.51.100.0/25\n", string(body))

	// Explain says the rule matched but the guard keeps the address unblocked.
	var ex struct {
		Rule    int     `json:"rule"`
		Action  string  `json:"action"`
		Guarded *string `json:"guarded"`
		Blocked bool    `json:"blocked"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/explain?ip=198.51.100.200", nil, http.StatusOK, &ex)
	require.Equal(t, 1, ex.Rule)
	require.Equal(t, "block", ex.Action)
	require.False(t, ex.Blocked)
	require.NotNil(t, ex.Guarded)
	require.Contains(t, *ex.Guarded, "office")

	var all []struct{ Name string }
	b.json(t, b.reader, http.MethodGet, "/api/v1/lists", nil, http.StatusOK, &all)
	require.Len(t, all, 2)

	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/rulesets/none/render", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/render?since=x", "", nil)
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/render?since=1&wait=1h", "", nil)
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = b.do(t, b.reader, http.MethodGet, "/api/v1/lists/none/prefixes", "", nil)
	require.Equal(t, http.StatusNotFound, status)
}

// TestRenderEndToEnd is DESIGN §5's example: a /24 tagged by a feed, one /32
// inside it suppressed by a person, renders as the /24 minus the /32: 8 CIDRs;
// the override arrives as a delta; explain agrees.
func TestRenderEndToEnd(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"203.0.113.0/24","source":"feed","tags":["scanner"],"classification":"malicious"}`+"\n")
	b.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 22\n  honeypot tcp 23\n  block tag scanner\n", http.StatusCreated)

	status, first, hdr := b.getRender(t, "edge", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []string{"203.0.113.0/24"}, first.Rules[0].V4)
	require.True(t, strings.HasPrefix(first.Hash, "sha256:"))
	require.Equal(t, `"`+first.Hash+`"`, hdr.Get("ETag"))

	// Long poll: answers at once when newer, 304 at the deadline.
	status, doc, _ := b.getRender(t, "edge", fmt.Sprintf("?since=%d&wait=10s", first.Version-1))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, first.Version, doc.Version)
	status, _, _ = b.getRender(t, "edge", fmt.Sprintf("?since=%d&wait=50ms", first.Version))
	require.Equal(t, http.StatusNotModified, status)
	status, doc, _ = b.getRender(t, "edge", fmt.Sprintf("?since=%d&wait=10s", first.Version+100))
	require.Equal(t, http.StatusOK, status, "a client ahead of the server gets the render at once")
	require.False(t, doc.Delta)
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/api/v1/rulesets/edge/render", nil)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	req.Header.Set("If-None-Match", hdr.Get("ETag"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	// A waiting poll wakes on the override and gets a delta.
	type result struct {
		status int
		doc    renderDoc
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/rulesets/edge/render?since=%d&wait=20s", b.srv.URL, first.Version), nil)
		req.Header.Set("Authorization", "Bearer "+b.reader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{}
			return
		}
		defer resp.Body.Close()
		var d renderDoc
		_ = json.NewDecoder(resp.Body).Decode(&d)
		got <- result{resp.StatusCode, d}
	}()
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/203.0.113.7/override", map[string]any{"suppress_tags": []string{"scanner"}}, http.StatusOK, nil)
	res := <-got
	require.Equal(t, http.StatusOK, res.status)
	require.True(t, res.doc.Delta)
	require.Equal(t, first.Version, res.doc.BaseVersion)
	require.Equal(t, first.Version+1, res.doc.Version)
	require.Equal(t, []string{"203.0.113.0/24"}, res.doc.Rules[0].DelV4)
	require.Len(t, res.doc.Rules[0].AddV4, 8)
	require.NotContains(t, res.doc.Rules[0].AddV4, "203.0.113.7/32")

	status, full, _ := b.getRender(t, "edge", "")
	require.Equal(t, http.StatusOK, status)
	require.Len(t, full.Rules[0].V4, 8)
	require.Contains(t, full.Rules[0].V4, "203.0.113.6/32")
	require.NotEqual(t, first.Hash, full.Hash)

	// gzip when accepted.
	req, _ = http.NewRequest(http.MethodGet, b.srv.URL+"/api/v1/rulesets/edge/render", nil)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))

	// Explain agrees with the render, for the suppressed /32 and its neighbour.
	for ip, want := range map[string]string{"203.0.113.7": "allow-by-default", "203.0.113.8": "block"} {
		var ex struct {
			Decided int    `json:"decided"`
			Rule    int    `json:"rule"`
			Action  string `json:"action"`
			Blocked bool   `json:"blocked"`
		}
		b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/explain?ip="+ip, nil, http.StatusOK, &ex)
		inRender := false
		for _, p := range full.Rules[0].V4 {
			if mustPrefix(p).Contains(mustPrefix(ip + "/32").Addr()) {
				inRender = true
			}
		}
		require.Equal(t, inRender, ex.Blocked, ip)
		require.Equal(t, want == "block", ex.Rule == 1, ip)
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/explain?ip=nope", nil, http.StatusBadRequest, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/none/explain?ip=192.0.2.1", nil, http.StatusNotFound, nil)

	var deny struct{ V4 []string }
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge/deny?format=json", nil, http.StatusOK, &deny)
	require.Equal(t, full.Rules[0].V4, deny.V4)

	// A ruleset-only change (new rule list) is a full render, not a delta.
	b.putRuleset(t, "ruleset edge\n  block tag scanner\n  allow cidr 192.0.2.0/24\n", http.StatusOK)
	next := b.waitVersion(t, "edge", full.Version)
	require.False(t, next.Delta)
	require.Len(t, next.Rules, 2)
}
