package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

func TestRulesetPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, _, err := b.store.PutRuleset(ctx, "edge", "ruleset edge\n  hook input\n  block classification malicious\n  allow tag friends\n", []byte(`{}`), "test")
	require.NoError(t, err)
	_, err = b.store.CreateBouncer(ctx, "gw1", []string{"edge"}, store.HashSecret("key"), "test")
	require.NoError(t, err)

	reader := b.client(t)
	reader.mustLogin("reader")
	resp, body := reader.get("/ui/rulesets")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `href="/ui/rulesets/edge"`)
	require.Contains(t, body, "gw1")
	require.NotContains(t, body, "New ruleset", "readers cannot edit")
	resp, body = reader.get("/ui/rulesets/edge?ip=192.0.2.7")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<strong id="decision">pass (no default)</strong>`)
	resp, body = reader.get("/ui/rulesets/edge?ip=nope")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, `id="ip-error"`)
	resp, _ = reader.get("/ui/rulesets/edge/edit")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, body = reader.get("/ui/bouncers")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "gw1")

	// An override shows, before it is stored, that it flips edge on gw1.
	writer := b.client(t)
	writer.mustLogin("writer")
	_, page := writer.get("/ui/ips/192.0.2.7")
	resp, body = writer.post("/ui/override", overrideForm(csrfOf(t, page), "192.0.2.7"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `id="ruleset-changes"`)
	require.Contains(t, body, `edge</a> (bouncers gw1 change within a second):`)
	require.Contains(t, body, `192.0.2.7</a>: pass (default) → <strong>block (rule 1: block classification malicious)</strong>`)

	admin := b.client(t)
	admin.mustLogin("admin")
	resp, body = admin.get("/ui/rulesets/new")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "ruleset NAME")
	_, page = admin.get("/ui/rulesets/edge/edit")
	csrf := csrfOf(t, page)
	resp, body = admin.post("/ui/rulesets", url.Values{"csrf": {csrf}, "name": {"edge"}, "action": {"save"},
		"text": {"ruleset edge\n  hook input\n  blok tag x\n"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Regexp(t, `id="text-error" role="alert">Line 3, column 3: `, body)
	require.Contains(t, body, "blok tag x", "the text is kept")

	resp, body = admin.post("/ui/rulesets", url.Values{"csrf": {csrf}, "name": {"edge"}, "action": {"preview"},
		"text": {"ruleset edge\n  hook input\n  block tag scanner\n"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `id="preview"`)
	rs, err := b.store.RulesetByName(ctx, "edge")
	require.NoError(t, err)
	require.Contains(t, rs.Text, "classification malicious", "a preview stores nothing")

	resp, _ = admin.post("/ui/rulesets", url.Values{"csrf": {csrf}, "name": {"edge"}, "action": {"save"},
		"text": {"ruleset edge\n  hook input\n  block tag scanner\n"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	rs, err = b.store.RulesetByName(ctx, "edge")
	require.NoError(t, err)
	require.Contains(t, rs.Text, "block tag scanner")
	require.Equal(t, "admin", rs.UpdatedBy)
}
