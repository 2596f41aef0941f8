package api_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
)

// TestAuthMatrix sends every operation of openapi.yaml with no token, a bad
// token and each role's token: the first two always get 401, a role below the
// operation's gets 403, and a role at or above it gets past authorisation
// (whatever the handler then answers to the placeholder request).
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	spec, err := apigen.GetSwagger()
	require.NoError(t, err)
	fill := strings.NewReplacer("{address}", "198.51.100.0", "{bits}", "24", "{name}", "matrix", "{id}", "999")
	tokens := map[string]string{api.RoleReader: b.reader, api.RoleWriter: b.writer, api.RoleAdmin: b.admin}
	paths := spec.Paths.Map()
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	checked := 0
	for _, path := range keys {
		if strings.HasPrefix(path, "/bouncer/") {
			continue // bouncer-key endpoints; covered by the bouncer tests
		}
		for method, op := range paths[path].Operations() {
			url := "/api/v1" + fill.Replace(path)
			need := api.RequiredRole(strings.ToUpper(op.OperationID[:1]) + op.OperationID[1:])
			if method == http.MethodGet && need == api.RoleAdmin && !strings.HasPrefix(path, "/tokens") {
				t.Errorf("%s %s: a GET that needs admin is probably missing from the role table", method, path)
			}
			if method != http.MethodGet {
				require.GreaterOrEqual(t, api.RoleRank(need), api.RoleRank(api.RoleWriter), "%s %s: a change must need writer or admin", method, path)
			}
			body := func() *strings.Reader { return strings.NewReader("{}") }
			for _, tok := range []string{"", "mnn_not_a_token"} {
				status, raw := b.do(t, tok, method, url, "application/json", body())
				require.Equal(t, http.StatusUnauthorized, status, "%s %s with token %q: %s", method, path, tok, raw)
			}
			for role, tok := range tokens {
				status, raw := b.do(t, tok, method, url, "application/json", body())
				if api.RoleRank(role) < api.RoleRank(need) {
					require.Equal(t, http.StatusForbidden, status, "%s %s as %s (needs %s): %s", method, path, role, need, raw)
				} else {
					require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, status, "%s %s as %s: %s", method, path, role, raw)
				}
			}
			checked++
		}
	}
	require.Greater(t, checked, 30, "the matrix covers the whole contract")
}
