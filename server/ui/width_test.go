package ui_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

func (b *testBundle) auditActions(t *testing.T, action string) []store.AuditEntry {
	t.Helper()
	es, err := b.store.Audit(context.Background(), store.AuditFilter{}, 0, 1000)
	require.NoError(t, err)
	var out []store.AuditEntry
	for _, e := range es {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// TestWideOverrideNeedsAnAdminsConfirmation: the override form takes
// 0.0.0.0/0 only from an admin, after a confirmation that says what it
// would block (issue 12).
func TestWideOverrideNeedsAnAdminsConfirmation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, _, err := b.store.PutRuleset(ctx, "edge", "ruleset edge\n  hook input\n  block tag scanner\n", []byte(`{}`), "admin")
	require.NoError(t, err)
	_, err = b.store.CreateBouncer(ctx, "fw1", []string{"edge"}, []byte("hash"), "admin")
	require.NoError(t, err)

	w := b.client(t)
	w.mustLogin("writer")
	_, page := w.get("/ui/ips/192.0.2.7")
	form := overrideForm(csrfOf(t, page), "0.0.0.0/0")
	form.Set("page", "192.0.2.7/32")
	resp, body := w.post("/ui/override", form)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, body, "0.0.0.0/0 is wider than /8, the widest IPv4 network accepted without an admin&#39;s confirmation: it covers all of IPv4. Only an admin may override a network this wide.")
	form.Set("confirm", "yes")
	form.Set("allow_wide", "yes")
	resp, _ = w.post("/ui/override", form)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "a writer cannot lift it with the form either")

	a := b.client(t)
	a.mustLogin("admin")
	_, page = a.get("/ui/ips/192.0.2.7")
	form = overrideForm(csrfOf(t, page), "0.0.0.0/0")
	form.Set("page", "192.0.2.7/32")
	resp, body = a.post("/ui/override", form)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<div class="error" role="alert" id="wide-warning">`)
	require.Contains(t, body, "<strong>0.0.0.0/0 is wider than /8, the widest IPv4 network accepted without an admin&#39;s confirmation: it covers all of IPv4.</strong>")
	require.Contains(t, body, "Applying it blocks every address in 0.0.0.0/0 wherever these rulesets are enforced:")
	require.Contains(t, body, `<li><a href="/ui/rulesets/edge">edge</a> on bouncers fw1</li>`)
	require.Contains(t, body, `<input type="hidden" name="allow_wide" value="yes">`)
	require.Contains(t, body, "Apply override to all of 0.0.0.0/0")

	// Confirming without the flag the confirmation carries stores nothing.
	form.Set("confirm", "yes")
	resp, _ = a.post("/ui/override", form)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b.catchUp(t)
	_, ok := b.ix.Snapshot().Network(netip.MustParsePrefix("0.0.0.0/0"))
	require.False(t, ok)
	require.Empty(t, b.auditActions(t, "width.lift"))

	form.Set("allow_wide", "yes")
	resp, _ = a.post("/ui/override", form)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	v, ok := b.ix.Snapshot().Network(netip.MustParsePrefix("0.0.0.0/0"))
	require.True(t, ok)
	require.Equal(t, "malicious", v.Classification)
	lifts := b.auditActions(t, "width.lift")
	require.Len(t, lifts, 1)
	require.Equal(t, "prefix/0.0.0.0/0", lifts[0].Object)
	require.Equal(t, "admin", lifts[0].Actor)
	require.JSONEq(t, `{"prefixes":["0.0.0.0/0"]}`, string(lifts[0].After))
}

// TestRulesetEditorConfirmsWideCIDRs: a ruleset with cidr ::/0 is saved
// only with the box ticked that its warning shows.
func TestRulesetEditorConfirmsWideCIDRs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.client(t)
	a.mustLogin("admin")
	_, page := a.get("/ui/rulesets/new")
	form := url.Values{"csrf": {csrfOf(t, page)}, "action": {"save"},
		"text": {"ruleset edge\n  hook input\n  block cidr ::/0, 2001:db8::/32\n  block cidr ::ffff:0:0/96\n"}}
	resp, body := a.post("/ui/rulesets", form)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, body, "The ruleset has 2 prefixes wider than /8 (IPv4) or /32 (IPv6); tick the box below to store them anyway.")
	require.Contains(t, body, "<li>Rule 1: cidr ::/0 is wider than /32: it covers all of IPv6.</li>")
	require.Contains(t, body, "<li>Rule 2: cidr 0.0.0.0/0 is wider than /8: it covers all of IPv4.</li>")
	require.Contains(t, body, `<input type="checkbox" name="allow_wide" value="yes">`)
	_, err := b.store.RulesetByName(context.Background(), "edge")
	require.ErrorIs(t, err, store.ErrNotFound)

	form.Set("allow_wide", "yes")
	resp, body = a.post("/ui/rulesets", form)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	lifts := b.auditActions(t, "width.lift")
	require.Len(t, lifts, 1)
	require.Equal(t, "ruleset/edge", lifts[0].Object)
	require.JSONEq(t, `{"prefixes":["::/0","0.0.0.0/0"]}`, string(lifts[0].After))
}
