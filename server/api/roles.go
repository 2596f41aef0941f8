package api

import (
	"context"
	"net/http"

	"github.com/muninn/muninn/server/api/apigen"
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

// RequireRole is the strict middleware that answers 403 when the caller's role
// is below the operation's.
func RequireRole(f apigen.StrictHandlerFunc, operationID string) apigen.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		need, ok := requiredRole[operationID]
		if !ok {
			need = RoleAdmin
		}
		p, _ := PrincipalFrom(ctx)
		if RoleRank(p.Role) < RoleRank(need) {
			WriteProblem(w, http.StatusForbidden, "this needs the "+need+" role; "+p.Name+" has "+p.Role)
			return nil, nil
		}
		return f(ctx, w, r, req)
	}
}
