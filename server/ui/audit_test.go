package ui_test

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// TestAuditPageShowsArrays: the audit page holds guard.put and
// bouncer.rulesets entries, whose before and after are JSON arrays (it
// answered 500 for them).
func TestAuditPageShowsArrays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, name := range []string{"edge", "other"} {
		_, _, err := b.store.PutRuleset(ctx, name, "ruleset "+name+"\n  hook input\n  block tag scanner\n", []byte(`{}`), "admin")
		require.NoError(t, err)
	}
	_, err := b.store.CreateBouncer(ctx, "fw1", []string{"edge"}, []byte("hash"), "admin")
	require.NoError(t, err)
	_, err = b.store.SetBouncerRulesets(ctx, "fw1", []string{"edge", "other"}, "admin")
	require.NoError(t, err)
	require.NoError(t, b.store.PutGuardEntries(ctx, []store.GuardEntry{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Reason: "office"}}, "admin"))

	c := b.client(t)
	c.mustLogin("reader")
	resp, page := c.get("/ui/audit")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `<td><ul class="diff"><li><del>edge</del> → <ins>edge, other</ins></li></ul></td>`)
	require.Contains(t, page, `<td><ul class="diff"><li><del>none</del> → <ins>{&#34;prefix&#34;:&#34;192.0.2.0/24&#34;,&#34;reason&#34;:&#34;office&#34;}</ins></li></ul></td>`)
	resp, page = c.get("/ui/audit?object=guard")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, "guard.put")
}

// The audit page showed raw JSON with nanosecond durations: it now lists
// only the fields that changed, old → new, with durations and times as
// people write them.
func TestAuditPageReadable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	f := store.Feed{Name: "drop", URL: "https://example.invalid/drop.txt", Format: "list", Tag: "drop", Classification: "malicious",
		Enabled: true, Schedule: time.Hour, TTL: 36 * time.Hour}
	_, err := b.store.PutFeed(ctx, f, "admin")
	require.NoError(t, err)
	f.Schedule, f.TTL = 90*time.Minute, 48*time.Hour
	_, err = b.store.PutFeed(ctx, f, "admin")
	require.NoError(t, err)
	require.NoError(t, b.store.PutTag(ctx, store.Tag{Name: "scanner", DefaultTTL: 30 * time.Second}, "admin"))
	exp := time.Date(2026, 12, 1, 9, 30, 15, 123456789, time.UTC)
	require.NoError(t, b.store.PutOverride(ctx, netip.MustParsePrefix("192.0.2.77/32"),
		store.Override{Classification: "benign", Note: "office", ExpiresAt: &exp}, "alice", time.Now()))
	require.NoError(t, b.store.PutOverride(ctx, netip.MustParsePrefix("192.0.2.77/32"),
		store.Override{Classification: "malicious", Note: "office", ExpiresAt: &exp}, "alice", time.Now()))

	c := b.client(t)
	c.mustLogin("reader")
	resp, page := c.get("/ui/audit?object=feed/drop")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `<td><ul class="diff"><li><span class="field">schedule</span>: <del>1h</del> → <ins>1h30m</ins></li>`+
		`<li><span class="field">ttl</span>: <del>1d12h</del> → <ins>2d</ins></li></ul></td>`, "only what changed")
	require.Contains(t, page, `<li><span class="field">schedule</span>: <span class="muted">(none)</span> → <ins>1h</ins></li>`, "a creation lists every field")
	require.NotContains(t, page, "5400000000000")

	resp, page = c.get("/ui/audit?object=tag/scanner")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `<li><span class="field">default_ttl</span>: <span class="muted">(none)</span> → <ins>30s</ins></li>`)

	resp, page = c.get("/ui/audit?object=prefix/192.0.2.77/32")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `<td><ul class="diff"><li><span class="field">classification</span>: <del>benign</del> → <ins>malicious</ins></li></ul></td>`)
	require.Contains(t, page, `<li><span class="field">expires_at</span>: <span class="muted">(none)</span> → <ins>2026-12-01 09:30 UTC</ins></li>`)
	require.Regexp(t, `<td><time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time></td>`, page)
}
