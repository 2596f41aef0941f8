package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestJSONBodiesRefuseNonText: a NUL (valid JSON as \u0000, which no
// PostgreSQL text holds) in any string of any JSON body is a 400 naming the
// field, never a 500; the cases are the six a new user found answering 500.
func TestJSONBodiesRefuseNonText(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.putRuleset(t, "ruleset edge\n  hook input\n  block tag scanner\n", http.StatusCreated)
	key := b.createBouncer(t, "fw1", "edge")
	cases := []struct {
		name, cred, header, method, path, body, field string
	}{
		{"override note", b.writer, "Authorization", http.MethodPut, "/api/v1/ips/198.51.100.9/override", `{"note":"a\u0000b"}`, "/note"},
		{"tag description", b.writer, "Authorization", http.MethodPut, "/api/v1/tags/nul", `{"description":"a\u0000b"}`, "/description"},
		{"ruleset condition", b.admin, "Authorization", http.MethodPut, "/api/v1/rulesets/nul",
			`{"name":"nul","hook":"input","rules":[{"action":"block","conds":[{"kind":"tag","values":["a\u0000b"]}]}]}`, "/rules/0/conds/0/values/0"},
		{"feed tag", b.admin, "Authorization", http.MethodPut, "/api/v1/feeds/nulfeed", `{"url":"http://192.0.2.1/x","format":"list","tag":"t\u0000","schedule":"1h"}`, "/tag"},
		{"guard reason", b.admin, "Authorization", http.MethodPut, "/api/v1/guard", `{"entries":[{"prefix":"198.51.100.0/24","reason":"a\u0000b"}]}`, "/entries/0/reason"},
		{"heartbeat hostname", key, "X-Api-Key", http.MethodPost, "/api/v1/bouncer/heartbeat", `{"hostname":"h\u0000","version":"1","applied":{}}`, "/hostname"},
		{"object key", b.writer, "Authorization", http.MethodPut, "/api/v1/tags/nul", `{"descr\u0000iption":"x"}`, "/descr\u0000iption"},
	}
	for _, c := range cases {
		value := c.cred
		if c.header == "Authorization" {
			value = "Bearer " + c.cred
		}
		status, raw := b.doWith(t, c.header, value, c.method, c.path, "application/json", strings.NewReader(c.body))
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", c.name, raw)
		var p struct {
			Errors []struct{ Field, Reason string } `json:"errors"`
		}
		require.NoError(t, json.Unmarshal(raw, &p), c.name)
		require.Len(t, p.Errors, 1, "%s: %s", c.name, raw)
		require.Equal(t, c.field, p.Errors[0].Field, c.name)
		require.Contains(t, p.Errors[0].Reason, "must not contain NUL characters", c.name)
	}
	// An escaped backslash followed by u0000 is text, not a NUL.
	status, raw := b.doWith(t, "Authorization", "Bearer "+b.writer, http.MethodPut, "/api/v1/tags/literal", "application/json", strings.NewReader(`{"description":"a\\u0000b"}`))
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, status, "%s", raw)
}

// A JSON body is one JSON document in UTF-8: a second document after the
// first, a cut-off one or invalid UTF-8 is a 400 that says where.
func TestJSONBodiesAreOneDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for body, want := range map[string]string{
		`{"classification":"benign"}{"x":1}`: `line 1, column 28: invalid character '{' after top-level value`,
		"{\"note\":\n  \"a\"":                `line 2, column 6: unexpected end of JSON input`,
		"{\"note\":\"caf\xe9\"}":             `line 1, column 13: must be valid UTF-8`,
	} {
		status, raw := b.do(t, b.writer, http.MethodPut, "/api/v1/ips/192.0.2.201/override", "application/json", strings.NewReader(body))
		require.Equal(t, http.StatusBadRequest, status, "%q: %s", body, raw)
		var p struct {
			Detail string
			Errors []struct{ Field, Reason string } `json:"errors"`
		}
		require.NoError(t, json.Unmarshal(raw, &p))
		require.Equal(t, "the body is not valid JSON", p.Detail)
		require.Len(t, p.Errors, 1)
		require.Equal(t, want, p.Errors[0].Reason, "%q", body)
	}
	status, raw := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.201", "", nil)
	require.Equal(t, http.StatusNotFound, status, "nothing was stored: %s", raw)
}
