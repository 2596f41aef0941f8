package ui_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// section returns the HTML element with the given id, from its opening tag to
// the end of the line it ends on.
func section(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<[a-z]+ [^>]*id="` + id + `".*?</ul></li></ul>`).FindString(body)
	require.NotEmpty(t, m, "no element with id %q", id)
	return m
}

// TestSuppressionOfANetwork is issue 10's suppression case: a manual suppress
// of an automatic tag on a /24 hides that tag for every address in it,
// whichever prefix asserted it, on the pages, in search and in the impact
// preview.
func TestSuppressionOfANetwork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, b.store.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: "ingest:a", Tags: []string{"supx"}, SeenAt: now},
		{Prefix: netip.MustParsePrefix("192.0.2.64/26"), Source: "ingest:b", Tags: []string{"supx"}, SeenAt: now},
		{Prefix: netip.MustParsePrefix("192.0.2.5/32"), Source: "ingest:c", Tags: []string{"supx"}, SeenAt: now},
	}, "test"))
	_, _, err := b.store.PutRuleset(ctx, "supx", "ruleset supx\n  hook input\n  block tag supx\n", []byte(`{}`), "test")
	require.NoError(t, err)
	_, err = b.store.CreateBouncer(ctx, "gw1", []string{"supx"}, store.HashSecret("gw1-key"), "test")
	require.NoError(t, err)
	b.catchUp(t)

	c := b.client(t)
	c.mustLogin("writer")
	_, page := c.get("/ui/networks/192.0.2.0/24")
	csrf := csrfOf(t, page)
	form := url.Values{"csrf": {csrf}, "page": {"192.0.2.0/24"}, "prefix": {"192.0.2.0/24"}, "suppress_tags": {"supx"}}

	// The preview: the ruleset stops blocking the /24 and both prefixes
	// inside it, on the bouncer that enforces it.
	resp, body := c.post("/ui/override", form)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `<dt>Tags removed</dt><dd><span class="tag off">supx</span> </dd>`)
	require.Contains(t, body, "every address in 192.0.2.0/24: 2 stored prefixes inside it inherit the override")
	require.Equal(t, `<ul class="plain" id="ruleset-changes"><li><a href="/ui/rulesets/supx">supx</a> (bouncers gw1 change within a second):
      <ul>`+
		`<li><a href="/ui/networks/192.0.2.0/24">192.0.2.0/24</a>: block (rule 1: block tag supx) → <strong>pass (default)</strong></li>`+
		`<li><a href="/ui/ips/192.0.2.5">192.0.2.5</a>: block (rule 1: block tag supx) → <strong>pass (default)</strong></li>`+
		`<li><a href="/ui/networks/192.0.2.64/26">192.0.2.64/26</a>: block (rule 1: block tag supx) → <strong>pass (default)</strong></li>`+
		`</ul></li></ul>`, section(t, body, "ruleset-changes"))

	form.Set("confirm", "yes")
	resp, _ = c.post("/ui/override", form)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/networks/192.0.2.0/24", resp.Header.Get("Location"))

	// The pages of an address in the /26 and of the /32: no supx tag; the
	// suppressed assertions are listed with their sources.
	for addr, suppressed := range map[string][]string{
		"192.0.2.70": {"ingest:b on 192.0.2.64/26", "ingest:a on 192.0.2.0/24"},
		"192.0.2.5":  {"ingest:c on 192.0.2.5/32", "ingest:a on 192.0.2.0/24"},
	} {
		resp, page := c.get("/ui/ips/" + addr)
		require.Equal(t, http.StatusOK, resp.StatusCode, addr)
		require.NotContains(t, page, `id="tags"`, addr)
		require.Contains(t, page, `<h3>Tags</h3>
  <p class="muted">No tags.</p>`, addr)
		for _, s := range suppressed {
			require.Contains(t, page, `<li><span class="tag off">supx</span> from `+s+`</li>`, addr)
		}
	}

	// Search by the tag lists nothing; the prefixes are still there, without it.
	_, body = c.get("/ui/search?q=supx")
	require.Contains(t, body, `<p class="muted">Nothing found.</p>`)
	_, body = c.get("/ui/search?q=192.0.2.0/24")
	require.Len(t, regexp.MustCompile(`<td><a href="/ui/(ips|networks)/192\.0\.2\.`).FindAllStringIndex(body, -1), 3, body)
	require.NotContains(t, body, `<span class="tag">supx</span>`)

	// Previewing the suppression again changes nothing.
	form.Del("confirm")
	_, body = c.post("/ui/override", form)
	require.Contains(t, body, "no ruleset changes its decision")
}

// TestSearchListsEffectiveViews: an address whose page says malicious is
// listed as malicious, because search lists effective views, not a prefix's
// own assertions.
func TestSearchListsEffectiveViews(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, b.store.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Source: "feed:bad", Classification: "malicious", SeenAt: now},
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Source: "ingest:scan", Tags: []string{"scanner"}, SeenAt: now},
	}, "test"))
	b.catchUp(t)
	c := b.client(t)
	c.mustLogin("reader")
	_, page := c.get("/ui/ips/198.51.100.7")
	require.Contains(t, page, `id="classification">malicious<`)
	for _, q := range []string{"scanner", "malicious", "198.51.100.0/24"} {
		_, body := c.get("/ui/search?q=" + url.QueryEscape(q))
		require.Contains(t, body, `<td><a href="/ui/ips/198.51.100.7">198.51.100.7</a></td>
    <td><span class="cls cls-malicious">malicious</span></td>
    <td><span class="tag">scanner</span> </td>
    <td class="small">feed:bad, ingest:scan</td>`, q)
	}
}

// TestGhostPrefixesDoNotExist: deleting an override leaves a stored prefix
// with no live assertion and no sighting; no page counts or lists it.
func TestGhostPrefixesDoNotExist(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, b.store.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("203.0.113.1/32"), Source: "ingest:scan", Classification: "malicious", SeenAt: now},
	}, "test"))
	ghost := netip.MustParsePrefix("203.0.113.9/32")
	require.NoError(t, b.store.PutOverride(ctx, ghost, store.Override{Classification: "malicious"}, "alice", now))
	require.NoError(t, b.store.DeleteOverride(ctx, ghost, "alice"))
	b.catchUp(t)
	c := b.client(t)
	c.mustLogin("reader")
	_, body := c.get("/ui/")
	require.Contains(t, body, `<li><a href="/ui/search?q=malicious"><strong>1</strong> malicious</a></li>
  <li><strong>1</strong> stored prefixes</li>`)
	_, body = c.get("/ui/search?q=203.0.113.0/24")
	require.Contains(t, body, `href="/ui/ips/203.0.113.1"`)
	require.NotContains(t, body, `href="/ui/ips/203.0.113.9"`)
	_, body = c.get("/ui/ips/203.0.113.9")
	require.Contains(t, body, "Nothing is stored about 203.0.113.9 or any network containing it.")
}
