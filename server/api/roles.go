package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// requiredRole maps an operation to the least role that may call it. GETs need
// reader; ingest, overrides and tag definitions need writer; tokens need admin.
// An operation missing here needs admin, so a new endpoint is closed by default.
var requiredRole = map[string]string{
	"GetIP": RoleReader, "GetNetwork": RoleReader, "SearchIPs": RoleReader,
	"ListTags": RoleReader, "GetTag": RoleReader, "ListAudit": RoleReader,
	"ExportCSV": RoleReader, "ExportJSON": RoleReader, "ExportNDJSON": RoleReader, "ExportClickHouse": RoleReader,
	"Ingest": RoleWriter, "PutIPOverride": RoleWriter, "DeleteIPOverride": RoleWriter,
	"PutNetworkOverride": RoleWriter, "DeleteNetworkOverride": RoleWriter,
	"PutTag": RoleWriter, "DeleteTag": RoleWriter,
	"ListTokens": RoleAdmin, "CreateToken": RoleAdmin, "DeleteToken": RoleAdmin,
	"ListRulesets": RoleReader, "GetRuleset": RoleReader, "ExplainRuleset": RoleReader,
	"PutRuleset": RoleAdmin, "DeleteRuleset": RoleAdmin,
	"ListLists": RoleReader, "GetList": RoleReader, "PutList": RoleAdmin, "DeleteList": RoleAdmin,
	"GetGuard": RoleReader, "PutGuard": RoleAdmin,
	"ListBouncers": RoleReader, "CreateBouncer": RoleAdmin, "PutBouncer": RoleAdmin, "DeleteBouncer": RoleAdmin,
}

// RequiredRole is the least role an operation (its Go name, e.g. "GetIP") needs;
// an operation not listed needs admin.
func RequiredRole(operationID string) string {
	if r, ok := requiredRole[operationID]; ok {
		return r
	}
	return RoleAdmin
}

// RoleGate answers 403 when the caller's role is below the operation's. It
// finds the operation in spec (whose paths are relative to prefix), so it runs
// before request validation: a caller without the role learns nothing about
// what a valid request would be.
func RoleGate(spec *openapi3.T, prefix string) (func(http.Handler) http.Handler, error) {
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		return nil, fmt.Errorf("api: role gate: %w", err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rel := r.Clone(r.Context())
			rel.URL.Path = strings.TrimPrefix(r.URL.Path, prefix)
			route, _, err := router.FindRoute(rel)
			if err != nil {
				next.ServeHTTP(w, r) // the validator answers 404/405
				return
			}
			op := route.Operation.OperationID
			need := RequiredRole(strings.ToUpper(op[:1]) + op[1:])
			p, _ := PrincipalFrom(r.Context())
			if RoleRank(p.Role) < RoleRank(need) {
				WriteProblem(w, http.StatusForbidden, "this needs the "+need+" role; "+p.Name+" has "+p.Role)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}
