package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// credentials of the matrix: the header that carries each, and the role it has
// ("" for none that authenticates).
type credential struct {
	name, header, value, role string
}

func (b *testBundle) credentials(t *testing.T) []credential {
	t.Helper()
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	_, err := b.store.CreateToken(ctx, "expired", api.RoleAdmin, &past, store.HashSecret("mnn_matrix_expired"), "test")
	require.NoError(t, err)
	revoked, err := b.store.CreateToken(ctx, "revoked", api.RoleAdmin, nil, store.HashSecret("mnn_matrix_revoked"), "test")
	require.NoError(t, err)
	require.NoError(t, b.store.DeleteToken(ctx, revoked.ID, "test"))
	_, err = b.store.CreateBouncer(ctx, "matrix-key-holder", []string{}, store.HashSecret("mnb_matrix_key"), "test")
	require.NoError(t, err)
	return []credential{
		{name: "none"},
		{name: "bad token", header: "Authorization", value: "Bearer mnn_not_a_token"},
		{name: "revoked", header: "Authorization", value: "Bearer mnn_matrix_revoked"},
		{name: "expired", header: "Authorization", value: "Bearer mnn_matrix_expired"},
		{name: "reader", header: "Authorization", value: "Bearer " + b.reader, role: api.RoleReader},
		{name: "writer", header: "Authorization", value: "Bearer " + b.writer, role: api.RoleWriter},
		{name: "admin", header: "Authorization", value: "Bearer " + b.admin, role: api.RoleAdmin},
		{name: "bouncer key", header: "X-Api-Key", value: "mnb_matrix_key", role: api.RoleBouncer},
		{name: "bouncer key as bearer", header: "Authorization", value: "Bearer mnb_matrix_key"},
		{name: "admin token as bouncer key", header: "X-Api-Key", value: b.admin},
	}
}

// expected is the status the declared role implies for a credential: 401
// when it does not authenticate for the operation's scheme, 403 when its role
// is too low, 0 (anything but 401 and 403) when it gets through. bouncerToo:
// a bouncer key reaches the operation too (x-muninn-bouncer-key).
func expected(opRole string, bouncerToo bool, c credential) int {
	switch {
	case bouncerToo && c.role == api.RoleBouncer:
		return 0
	case opRole == api.RolePublic:
		return 0
	case opRole == api.RoleBouncer:
		if c.role == api.RoleBouncer {
			return 0
		}
		return http.StatusUnauthorized
	case c.role == "" || c.role == api.RoleBouncer:
		return http.StatusUnauthorized
	case api.RoleRank(c.role) < api.RoleRank(opRole):
		return http.StatusForbidden
	}
	return 0
}

// TestAuthMatrix sends every operation of the served contract with every kind
// of credential, on plain and encoded paths, and expects exactly the status
// its declared role implies. Every answer is also validated against the spec.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	creds := b.credentials(t)
	spec, err := apigen.GetSwagger()
	require.NoError(t, err)
	ops, err := api.Operations(spec)
	require.NoError(t, err)
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// Each path parameter is filled plainly, with an encoded slash and with an
	// encoded dot-dot: the operation matched, and so the role, must not change.
	fills := []*strings.Replacer{
		strings.NewReplacer("{address}", "198.51.100.0", "{bits}", "24", "{name}", "matrix", "{id}", "999"),
		strings.NewReplacer("{address}", "198.51.100.0", "{bits}", "24", "{name}", "threat%2Fx", "{id}", "999"),
		strings.NewReplacer("{address}", "198.51.100.0", "{bits}", "24", "{name}", "%2e%2e", "{id}", "999"),
	}
	checked := 0
	for _, key := range keys {
		op := ops[key]
		method, path, _ := strings.Cut(key, " ")
		require.NotEmpty(t, op.Role, key)
		if method != http.MethodGet && op.Role != api.RoleBouncer {
			require.Contains(t, []string{api.RoleWriter, api.RoleAdmin}, op.Role, "%s: a change must need writer or admin", key)
		}
		for i, fill := range fills {
			if i > 0 && !strings.Contains(path, "{") {
				break
			}
			url := "/api/v1" + fill.Replace(path)
			for _, c := range creds {
				status, raw := b.doWith(t, c.header, c.value, method, url, "application/json", strings.NewReader("{}"))
				want := expected(op.Role, op.BouncerKey, c)
				if want == 0 {
					require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, status,
						"%s %s with %s (operation needs %s): %s", method, url, c.name, op.Role, raw)
				} else {
					require.Equal(t, want, status, "%s %s with %s (operation needs %s): %s", method, url, c.name, op.Role, raw)
				}
				checked++
			}
		}
	}
	require.Greater(t, checked, 50*len(creds), "the matrix covers the whole contract")

	// Routes the contract does not have are refused, whatever the credential.
	for _, url := range []string{"/api/v1/nothing", "/api/v1/tags//x", "/api/v1//tags", "/api/v1/tags/a/b", "/api/v1/bouncer/%2e%2e/render"} {
		for _, c := range creds {
			status, raw := b.doWith(t, c.header, c.value, http.MethodGet, url, "", nil)
			require.Equal(t, http.StatusNotFound, status, "%s with %s: %s", url, c.name, raw)
		}
	}
	status, raw := b.doWith(t, "Authorization", "Bearer "+b.admin, http.MethodPatch, "/api/v1/tags/x", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, status, "%s", raw)
}

// TestReaderCannotCreateTagWithEncodedSlash: the role is the one of the
// operation the router matched on the escaped path, so a %2F in a tag name
// cannot route a reader around the writer role.
func TestReaderCannotCreateTagWithEncodedSlash(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, raw := b.do(t, b.reader, http.MethodPut, "/api/v1/tags/threat%2Fx", "application/json", strings.NewReader(`{"default_ttl":"1s"}`))
	require.Equal(t, http.StatusForbidden, status, "%s", raw)
	require.Contains(t, string(raw), "needs the writer role")
	status, raw = b.do(t, b.reader, http.MethodGet, "/api/v1/tags/threat%2Fx", "", nil)
	require.Equal(t, http.StatusNotFound, status, "the tag was not created: %s", raw)
	tags, err := b.store.Tags(context.Background())
	require.NoError(t, err)
	require.Empty(t, tags)

	// A writer may: the name keeps its slash.
	status, raw = b.do(t, b.writer, http.MethodPut, "/api/v1/tags/threat%2Fx", "application/json", strings.NewReader(`{"description":"x"}`))
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Contains(t, string(raw), `"name":"threat/x"`)
}
