package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// TestBouncerCrowdSecSettings: an admin sets a bouncer's CrowdSec range
// expansion on the bouncers page; bad widths show their error; a reader gets
// no form and cannot post one; usage and too-wide ranges are shown.
func TestBouncerCrowdSecSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bo, err := b.store.CreateBouncer(ctx, "fw1", []string{}, []byte("hash-of-fw1"), "test")
	require.NoError(t, err)
	_, err = b.store.AddBouncerUsage(ctx, bo.ID, []store.UsageCounter{{Name: "dropped", Unit: "packet", Origin: "muninn", Remediation: "ban", Value: 12}}, bo.CreatedAt)
	require.NoError(t, err)
	require.NoError(t, b.store.CrowdSecPull(ctx, bo.ID, "crowdsec-firewall-bouncer/v0.0.31", nil, 3, 0, 0, "", bo.CreatedAt))

	reader := b.client(t)
	reader.mustLogin("reader")
	_, page := reader.get("/ui/bouncers")
	require.NotContains(t, page, `action="/ui/bouncers/fw1/crowdsec"`)
	require.Contains(t, page, "scopes, IPv4 up to /24, IPv6 up to /120")
	require.Contains(t, page, "3 range decisions stayed ranges")
	require.Contains(t, page, "dropped 12 packet (muninn)")
	resp, _ := reader.post("/ui/bouncers/fw1/crowdsec", url.Values{"csrf": {csrfOf(t, page)}, "expand": {"always"}, "v4_bits": {"24"}, "v6_bits": {"120"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	admin := b.client(t)
	admin.mustLogin("admin")
	_, page = admin.get("/ui/bouncers")
	require.Contains(t, page, `action="/ui/bouncers/fw1/crowdsec"`)
	resp, body := admin.post("/ui/bouncers/fw1/crowdsec", url.Values{"csrf": {csrfOf(t, page)}, "expand": {"always"}, "v4_bits": {"8"}, "v6_bits": {"120"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, body, "The IPv4 width is a prefix length from 16 to 32")
	resp, _ = admin.post("/ui/bouncers/fw1/crowdsec", url.Values{"csrf": {csrfOf(t, page)}, "expand": {"always"}, "v4_bits": {"22"}, "v6_bits": {"124"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, body = admin.get("/ui/bouncers")
	require.Contains(t, body, "Saved the CrowdSec settings of fw1.")
	bs, err := b.store.Bouncers(ctx)
	require.NoError(t, err)
	require.Equal(t, store.CrowdSecSettings{Expand: "always", V4Bits: 22, V6Bits: 124}, bs[0].CrowdSec)
	resp, _ = admin.post("/ui/bouncers/none/crowdsec", url.Values{"csrf": {csrfOf(t, page)}, "expand": {"off"}, "v4_bits": {"24"}, "v6_bits": {"120"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestBouncerVersionOnPage: the bouncers page flags a bouncer whose version
// this server does not support (more than one minor apart), and only that one.
func TestBouncerVersionOnPage(t *testing.T) {
	t.Parallel()
	b := setup(t, testOpts{version: "1.4.0"})
	ctx := context.Background()
	for name, v := range map[string]string{"fw-old": "1.2.0", "fw-near": "1.3.5"} {
		bo, err := b.store.CreateBouncer(ctx, name, []string{}, []byte("hash-of-"+name), "test")
		require.NoError(t, err)
		_, err = b.store.TouchBouncer(ctx, bo.ID, store.BouncerHeartbeat{Hostname: name, Version: v}, bo.CreatedAt)
		require.NoError(t, err)
	}
	c := b.client(t)
	c.mustLogin("reader")
	_, page := c.get("/ui/bouncers")
	require.Contains(t, page, `<td>1.2.0 <span class="bad">not supported by this server (1.4.0): a bouncer must be the same major version, at most one minor apart</span></td>`)
	require.Contains(t, page, `<td>1.3.5</td>`)
	require.Equal(t, 1, strings.Count(page, "not supported by this server"))
}
