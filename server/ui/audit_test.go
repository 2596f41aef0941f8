package ui_test

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

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
	require.Contains(t, page, `<td><code class="json">[&#34;edge&#34;]</code></td><td><code class="json">[&#34;edge&#34;,&#34;other&#34;]</code></td>`)
	require.Contains(t, page, `<td><code class="json">[]</code></td><td><code class="json">[{&#34;prefix&#34;:&#34;192.0.2.0/24&#34;,&#34;reason&#34;:&#34;office&#34;}]</code></td>`)
	resp, page = c.get("/ui/audit?object=guard")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, "guard.put")
}
