package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The reasons of issue 12's smallest inputs, exactly.
const (
	wideV4Reason = "0.0.0.0/0 is wider than /8, the widest IPv4 prefix accepted (it covers all of IPv4); an admin may accept it with allow_wide=true"
	wideV6Reason = "::/0 is wider than /32, the widest IPv6 prefix accepted (it covers all of IPv6); an admin may accept it with allow_wide=true"
)

type lineErr struct {
	Line   int64  `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

type ingestAnswer struct {
	Accepted int64     `json:"accepted"`
	Rejected int64     `json:"rejected"`
	Errors   []lineErr `json:"errors"`
}

func (b *testBundle) ingestAs(t *testing.T, token, query, body string, want int) ingestAnswer {
	t.Helper()
	status, raw := b.do(t, token, http.MethodPost, "/api/v1/ingest"+query, "application/x-ndjson", strings.NewReader(body))
	require.Equal(t, want, status, "body: %s", raw)
	var res ingestAnswer
	if want == http.StatusOK {
		require.NoError(t, json.Unmarshal(raw, &res))
	}
	return res
}

type auditItem struct {
	Action string          `json:"action"`
	Object string          `json:"object"`
	Actor  string          `json:"actor"`
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// audit returns the audit log, oldest first, read through the API (so the
// contract checks every entry).
func (b *testBundle) audit(t *testing.T) []auditItem {
	t.Helper()
	var page struct {
		Items []auditItem `json:"items"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/audit?limit=1000", nil, 200, &page)
	out := make([]auditItem, 0, len(page.Items))
	for i := len(page.Items) - 1; i >= 0; i-- {
		out = append(out, page.Items[i])
	}
	return out
}

func (b *testBundle) auditOf(t *testing.T, action string) []auditItem {
	t.Helper()
	var out []auditItem
	for _, e := range b.audit(t) {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func TestIngestRefusesWidePrefixes(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	res := b.ingestAs(t, b.writer, "", strings.Join([]string{
		`{"ip":"0.0.0.0/0","source":"x","tags":["scanner"]}`,
		`{"ip":"::/0","source":"x","tags":["scanner"]}`,
		`{"ip":"::ffff:0:0/96","source":"x","tags":["scanner"]}`,
		`{"ip":"192.0.0.0/7","source":"x","tags":["scanner"]}`,
		`{"ip":"2001:db8::/31","source":"x","tags":["scanner"]}`,
		`{"ip":"::ffff:192.0.0.0/103","source":"x","tags":["scanner"]}`,
		// The widest accepted: /8 and /32 (and a mapped /104, which is a /8).
		`{"ip":"192.0.0.0/8","source":"x","tags":["scanner"]}`,
		`{"ip":"2001:db8::/32","source":"x","tags":["scanner"]}`,
		`{"ip":"::ffff:198.0.0.0/104","source":"x","tags":["scanner"]}`,
	}, "\n"), 200)
	require.Equal(t, ingestAnswer{Accepted: 3, Rejected: 6, Errors: []lineErr{
		{1, "/ip", wideV4Reason},
		{2, "/ip", wideV6Reason},
		{3, "/ip", wideV4Reason},
		{4, "/ip", "192.0.0.0/7 is wider than /8, the widest IPv4 prefix accepted (it covers 1/128 of IPv4, 33554432 addresses); an admin may accept it with allow_wide=true"},
		{5, "/ip", "2001:db8::/31 is wider than /32, the widest IPv6 prefix accepted (it covers 1/2147483648 of IPv6, 2^97 addresses); an admin may accept it with allow_wide=true"},
		{6, "/ip", "192.0.0.0/7 is wider than /8, the widest IPv4 prefix accepted (it covers 1/128 of IPv4, 33554432 addresses); an admin may accept it with allow_wide=true"},
	}}, res)
	var p problem
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/0.0.0.0/0", nil, 404, &p)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/198.0.0.0/8", nil, 200, nil)
	require.Empty(t, b.auditOf(t, "width.lift"), "nothing was lifted")
}

func TestAllowWideIsAdminOnlyAndAudited(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	line := `{"ip":"0.0.0.0/0","source":"x","tags":["scanner"]}`
	// Sending the flag at all needs admin, whatever its value.
	for _, q := range []string{"?allow_wide=true", "?allow_wide=false"} {
		status, raw := b.do(t, b.writer, http.MethodPost, "/api/v1/ingest"+q, "application/x-ndjson", strings.NewReader(line))
		require.Equal(t, http.StatusForbidden, status, "body: %s", raw)
		var p problem
		require.NoError(t, json.Unmarshal(raw, &p))
		require.Equal(t, "allow_wide needs the admin role; t-writer has writer", p.Detail)
		require.Len(t, p.Errors, 1)
		require.Equal(t, "allow_wide", p.Errors[0].Field)
		require.Equal(t, "only the admin role may send allow_wide", p.Errors[0].Reason)
	}
	// An admin without the flag is held to the limit like everyone.
	res := b.ingestAs(t, b.admin, "", line, 200)
	require.Equal(t, ingestAnswer{Rejected: 1, Errors: []lineErr{{1, "/ip", wideV4Reason}}}, res)
	// With it, the line is stored and the lift audited in the same transaction.
	res = b.ingestAs(t, b.admin, "?allow_wide=true", line+"\n"+`{"ip":"::ffff:0:0/96","source":"x"}`+"\n"+`{"ip":"198.51.100.1","source":"x"}`, 200)
	require.Equal(t, ingestAnswer{Accepted: 3, Errors: []lineErr{}}, res)
	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/0.0.0.0/0", nil, 200, &v)
	require.Equal(t, []string{"scanner"}, v.tagNames())
	lifts := b.auditOf(t, "width.lift")
	require.Len(t, lifts, 1)
	require.Equal(t, "ingest", lifts[0].Object)
	require.Equal(t, "t-admin", lifts[0].Actor)
	require.JSONEq(t, `{"prefixes":["0.0.0.0/0"]}`, string(lifts[0].After))
	require.Nil(t, lifts[0].Before)
}

func TestNetworkOverrideRefusesWidePrefixes(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	body := map[string]any{"classification": "malicious", "add_tags": []string{"scanner"}}
	for _, c := range []struct{ path, reason string }{
		{"/api/v1/networks/0.0.0.0/0/override", wideV4Reason},
		{"/api/v1/networks/::/0/override", wideV6Reason},
		{"/api/v1/networks/::ffff:0:0/96/override", wideV4Reason},
	} {
		var p problem
		b.json(t, b.writer, http.MethodPut, c.path, body, 400, &p)
		require.Equal(t, problem{Status: 400, Detail: "the prefix is wider than the limit", Errors: []struct{ Field, Reason string }{{"bits", c.reason}}}, p, c.path)
		// An admin is refused the same without the flag.
		b.json(t, b.admin, http.MethodPut, c.path, body, 400, &p)
	}
	var p problem
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/0.0.0.0/0", nil, 404, &p)
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/0.0.0.0/0/override?allow_wide=true", body, 403, &p)
	require.Equal(t, "allow_wide needs the admin role; t-writer has writer", p.Detail)
	require.Empty(t, b.auditOf(t, "override.put"))

	// The widest accepted.
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/198.0.0.0/8/override", body, 200, nil)
	b.json(t, b.writer, http.MethodPut, "/api/v1/networks/2001:db8::/32/override", body, 200, nil)

	var v view
	b.json(t, b.admin, http.MethodPut, "/api/v1/networks/::ffff:0:0/96/override?allow_wide=true", body, 200, &v)
	require.Equal(t, "0.0.0.0/0", v.Network)
	require.Equal(t, "malicious", v.Classification)
	lifts := b.auditOf(t, "width.lift")
	require.Len(t, lifts, 1)
	require.Equal(t, "prefix/0.0.0.0/0", lifts[0].Object)
	require.JSONEq(t, `{"prefixes":["0.0.0.0/0"]}`, string(lifts[0].After))
	// Removing a wide override needs no flag.
	status, raw := b.do(t, b.writer, http.MethodDelete, "/api/v1/networks/0.0.0.0/0/override", "", nil)
	require.Equal(t, http.StatusNoContent, status, "body: %s", raw)
}

func TestGuardRefusesWidePrefixes(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	in := map[string]any{"entries": []map[string]any{
		{"prefix": "192.0.2.0/24", "reason": "office"},
		{"prefix": "0.0.0.0/0", "reason": "oops"},
		{"prefix": "::ffff:0:0/96"},
		{"prefix": "::/0"},
	}}
	var p problem
	b.json(t, b.admin, http.MethodPut, "/api/v1/guard", in, 400, &p)
	require.Equal(t, problem{Status: 400, Detail: "the guard is invalid", Errors: []struct{ Field, Reason string }{
		{"/entries/1/prefix", wideV4Reason},
		{"/entries/2/prefix", wideV4Reason},
		{"/entries/3/prefix", wideV6Reason},
	}}, p)
	var g struct {
		Entries []struct{ Prefix string } `json:"entries"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/guard", nil, 200, &g)
	require.Empty(t, g.Entries, "nothing was stored")

	// The same prefix twice is a field error, not a fault.
	b.json(t, b.admin, http.MethodPut, "/api/v1/guard?allow_wide=true", in, 400, &p)
	require.Equal(t, problem{Status: 400, Detail: "the guard is invalid", Errors: []struct{ Field, Reason string }{
		{"/entries/2/prefix", "0.0.0.0/0 is /entries/1/prefix again"},
	}}, p)
	in["entries"] = []map[string]any{{"prefix": "192.0.2.0/24", "reason": "office"}, {"prefix": "::ffff:0:0/96"}, {"prefix": "::/0"}}
	b.json(t, b.admin, http.MethodPut, "/api/v1/guard?allow_wide=true", in, 200, &g)
	require.Len(t, g.Entries, 3)
	lifts := b.auditOf(t, "width.lift")
	require.Len(t, lifts, 1)
	require.Equal(t, "guard", lifts[0].Object)
	require.JSONEq(t, `{"prefixes":["0.0.0.0/0","::/0"]}`, string(lifts[0].After))
}

func TestRulesetAndListCIDRsRefuseWidePrefixes(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	text := "ruleset edge\n  hook input\n  block tag scanner\n  block cidr 192.0.2.0/24, 0.0.0.0/0 and not cidr ::/0\n  allow cidr ::ffff:0:0/96\n"
	var p problem
	raw := b.putRuleset(t, text, 400)
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, problem{Status: 400, Detail: "the ruleset is invalid", Errors: []struct{ Field, Reason string }{
		{"/rules/1/conds/0/values/1", "rule 2: cidr " + wideV4Reason},
		{"/rules/1/conds/1/values/0", "rule 2: cidr " + wideV6Reason},
		{"/rules/2/conds/0/values/0", "rule 3: cidr " + wideV4Reason},
	}}, p)
	b.json(t, b.reader, http.MethodGet, "/api/v1/rulesets/edge", nil, 404, &p)

	status, body := b.do(t, b.admin, http.MethodPut, "/api/v1/rulesets/edge?allow_wide=true", "text/plain", strings.NewReader(text))
	require.Equal(t, http.StatusCreated, status, "body: %s", body)
	lifts := b.auditOf(t, "width.lift")
	require.Len(t, lifts, 1)
	require.Equal(t, "ruleset/edge", lifts[0].Object)
	require.JSONEq(t, `{"prefixes":["0.0.0.0/0","::/0","0.0.0.0/0"]}`, string(lifts[0].After))

	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/everything", map[string]string{"selector": "cidr ::/0"}, 400, &p)
	require.Equal(t, problem{Status: 400, Detail: "the list is invalid", Errors: []struct{ Field, Reason string }{
		{"/selector", "cidr " + wideV6Reason},
	}}, p)
	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/everything?allow_wide=true", map[string]string{"selector": "cidr ::/0"}, 200, nil)
	lifts = b.auditOf(t, "width.lift")
	require.Len(t, lifts, 2)
	require.Equal(t, "list/everything", lifts[1].Object)
}
