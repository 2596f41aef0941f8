package api

import (
	"context"
	"strconv"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// ListAudit implements GET /audit.
func (s *Server) ListAudit(ctx context.Context, req apigen.ListAuditRequestObject) (apigen.ListAuditResponseObject, error) {
	p := req.Params
	var errs []apigen.FieldError
	before, ce := parseIDCursor(p.Cursor)
	if ce != nil {
		errs = append(errs, *ce)
	}
	limit := 100
	if p.Limit != nil {
		limit = *p.Limit
		if limit < 1 || limit > 1000 {
			errs = append(errs, fieldErr("limit", "must be between 1 and 1000"))
		}
	}
	if len(errs) > 0 {
		return apigen.ListAudit400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the audit query is invalid", errs...))}, nil
	}
	es, err := s.store.Audit(ctx, store.AuditFilter{Actor: deref(p.Actor), Object: deref(p.Object), Since: p.Since}, before, limit+1)
	if err != nil {
		return nil, err
	}
	page := apigen.AuditPage{Items: make([]apigen.AuditEntry, 0, len(es))}
	if len(es) > limit {
		es = es[:limit]
		page.NextCursor = ptr(strconv.FormatInt(es[len(es)-1].ID, 10))
	}
	for _, e := range es {
		item := apigen.AuditEntry{Id: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object}
		// Any JSON value, passed through as stored.
		if e.Before != nil {
			item.Before = e.Before
		}
		if e.After != nil {
			item.After = e.After
		}
		page.Items = append(page.Items, item)
	}
	return apigen.ListAudit200JSONResponse(page), nil
}

// parseIDCursor reads an audit cursor: the id of the last entry of the
// previous page (0 for the first page).
func parseIDCursor(c *string) (int64, *apigen.FieldError) {
	if c == nil || *c == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(*c, 10, 64)
	// Only what next_cursor carries: no sign, no leading zeros.
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != *c {
		fe := fieldErr("cursor", "must be the next_cursor of an earlier page")
		return 0, &fe
	}
	return n, nil
}
