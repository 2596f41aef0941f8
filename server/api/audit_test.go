package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// TestAuditEveryCallSite makes every change the audit log records (each
// audit call in server/store), then reads the log through the API, whose
// answers the contract checks: before and after are any JSON value (objects,
// and the arrays of guard.put and bouncer.rulesets, which answered 500).
func TestAuditEveryCallSite(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	ctx := context.Background()
	do := func(token, method, path string, in any, want int) {
		t.Helper()
		b.json(t, token, method, path, in, want, nil)
	}
	do(b.admin, http.MethodPut, "/api/v1/tags/scanner", map[string]any{"description": "sweeps", "color": "#c0392b"}, 200)
	var tok struct {
		ID int64 `json:"id"`
	}
	b.json(t, b.admin, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "ci", "role": "writer"}, 201, &tok)
	do(b.admin, http.MethodDelete, fmt.Sprintf("/api/v1/tokens/%d", tok.ID), nil, 204)
	b.putRuleset(t, "ruleset edge\n  hook input\n  block tag scanner\n", 201)
	b.putRuleset(t, "ruleset other\n  hook input\n  block tag scanner\n", 201)
	b.createBouncer(t, "fw1", "edge")
	do(b.admin, http.MethodPut, "/api/v1/bouncers/fw1", map[string]any{"rulesets": []string{"edge", "other"}}, 200)
	do(b.admin, http.MethodDelete, "/api/v1/bouncers/fw1", nil, 204)
	do(b.admin, http.MethodPut, "/api/v1/lists/bad", map[string]any{"selector": "tag scanner"}, 200)
	do(b.admin, http.MethodDelete, "/api/v1/lists/bad", nil, 204)
	do(b.admin, http.MethodPut, "/api/v1/guard", map[string]any{"entries": []map[string]any{{"prefix": "192.0.2.0/24", "reason": "office"}}}, 200)
	do(b.admin, http.MethodPut, "/api/v1/guard?allow_wide=true", map[string]any{"entries": []map[string]any{{"prefix": "0.0.0.0/0", "reason": "everything"}}}, 200)
	do(b.writer, http.MethodPut, "/api/v1/ips/198.51.100.7/override", map[string]any{"add_tags": []string{"scanner"}}, 200)
	do(b.writer, http.MethodDelete, "/api/v1/ips/198.51.100.7/override", nil, 204)
	do(b.admin, http.MethodDelete, "/api/v1/rulesets/other", nil, 204)
	do(b.admin, http.MethodDelete, "/api/v1/tags/scanner", nil, 204)
	// Feeds and users are written by the feeds API (part of another package)
	// and the command line; their audit calls are the store's.
	_, err := b.store.PutFeed(ctx, store.Feed{Name: "drop", URL: "https://feeds.example/drop.txt", Format: "list", Tag: "drop"}, "t-admin")
	require.NoError(t, err)
	require.NoError(t, b.store.DeleteFeed(ctx, "drop", "t-admin"))
	_, err = b.store.CreateUser(ctx, "alice", "reader", "hash", "cli")
	require.NoError(t, err)

	entries := b.audit(t)
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Object)
	}
	// The bundle's three tokens (ids 1-3) come first.
	require.Len(t, got, 23)
	require.Equal(t, []string{
		"tag.put tag/scanner",
		"token.create token/4",
		"token.delete token/4",
		"ruleset.put ruleset/edge",
		"ruleset.put ruleset/other",
		"bouncer.create bouncer/fw1",
		"bouncer.rulesets bouncer/fw1",
		"bouncer.delete bouncer/fw1",
		"list.put list/bad",
		"list.delete list/bad",
		"guard.put guard",
		"guard.put guard",
		"width.lift guard",
		"override.put prefix/198.51.100.7/32",
		"override.delete prefix/198.51.100.7/32",
		"ruleset.delete ruleset/other",
		"tag.delete tag/scanner",
		"feed.put feed/drop",
		"feed.delete feed/drop",
		"user.create user/1",
	}, got[3:])

	byAction := map[string][]auditItem{}
	for _, e := range entries {
		byAction[e.Action] = append(byAction[e.Action], e)
	}
	rs := byAction["bouncer.rulesets"][0]
	require.JSONEq(t, `["edge"]`, string(rs.Before))
	require.JSONEq(t, `["edge","other"]`, string(rs.After))
	g := byAction["guard.put"]
	require.JSONEq(t, `[]`, string(g[0].Before))
	require.JSONEq(t, `[{"prefix":"192.0.2.0/24","reason":"office"}]`, string(g[0].After))
	require.JSONEq(t, `[{"prefix":"192.0.2.0/24","reason":"office"}]`, string(g[1].Before))
	require.JSONEq(t, `[{"prefix":"0.0.0.0/0","reason":"everything"}]`, string(g[1].After))
	ov := byAction["override.put"][0]
	require.Nil(t, ov.Before)
	require.JSONEq(t, `{"add_tags":["scanner"]}`, string(ov.After))
	require.JSONEq(t, `{"add_tags":["scanner"]}`, string(byAction["override.delete"][0].Before))
	require.Nil(t, byAction["override.delete"][0].After)
	for _, action := range []string{"tag.put", "token.create", "ruleset.put", "bouncer.create", "list.put", "feed.put", "user.create"} {
		for _, e := range byAction[action] {
			require.True(t, strings.HasPrefix(string(e.After), "{"), "%s after is an object: %s", action, e.After)
		}
	}
	for _, action := range []string{"tag.delete", "token.delete", "ruleset.delete", "bouncer.delete", "list.delete", "feed.delete"} {
		e := byAction[action][0]
		require.True(t, strings.HasPrefix(string(e.Before), "{"), "%s before is an object: %s", action, e.Before)
		require.Nil(t, e.After, action)
	}
	require.Equal(t, "t-writer", ov.Actor)
	require.Equal(t, "cli", byAction["user.create"][0].Actor)
}
