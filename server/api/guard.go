package api

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
)

func (s *Server) guardAnswer(ctx context.Context) (apigen.Guard, error) {
	es, err := s.store.GuardEntries(ctx)
	if err != nil {
		return apigen.Guard{}, err
	}
	out := apigen.Guard{Entries: make([]apigen.GuardEntry, 0, len(es)), Builtin: len(s.opts.Render.DefaultGuard())}
	for _, e := range es {
		out.Entries = append(out.Entries, apigen.GuardEntry{Prefix: e.Prefix.String(), Reason: ptr(e.Reason)})
	}
	return out, nil
}

// GetGuard implements GET /guard: the operator's entries; the effective guard
// is the built-in tier plus these.
func (s *Server) GetGuard(ctx context.Context, _ apigen.GetGuardRequestObject) (apigen.GetGuardResponseObject, error) {
	g, err := s.guardAnswer(ctx)
	if err != nil {
		return nil, err
	}
	return apigen.GetGuard200JSONResponse(g), nil
}

// PutGuard implements PUT /guard: it replaces the operator's entries.
func (s *Server) PutGuard(ctx context.Context, req apigen.PutGuardRequestObject) (apigen.PutGuardResponseObject, error) {
	if req.Body == nil {
		return apigen.PutGuard400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the guard is invalid", fieldErr("", "a JSON object is required"))}, nil
	}
	var errs []apigen.FieldError
	var lifted []netip.Prefix
	allowWide := deref(req.Params.AllowWide)
	entries := make([]store.GuardEntry, 0, len(req.Body.Entries))
	first := map[netip.Prefix]int{}
	for i, e := range req.Body.Entries {
		field := fmt.Sprintf("/entries/%d/prefix", i)
		p, err := ParsePrefix(e.Prefix)
		if err != nil {
			errs = append(errs, fieldErr(field, err.Error()))
			continue
		}
		// A wide never-block entry unblocks that much of the internet.
		if err := policy.CheckWidth(p); err != nil {
			if !allowWide {
				errs = append(errs, fieldErr(field, err.Error()))
				continue
			}
			lifted = append(lifted, p)
		}
		if j, dup := first[p]; dup {
			errs = append(errs, fieldErr(field, fmt.Sprintf("%s is /entries/%d/prefix again", p, j)))
			continue
		}
		first[p] = i
		entries = append(entries, store.GuardEntry{Prefix: p, Reason: deref(e.Reason)})
	}
	if len(errs) > 0 {
		return apigen.PutGuard400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the guard is invalid", errs...)}, nil
	}
	if err := s.store.PutGuardEntries(ctx, entries, actorOf(ctx), lifted...); err != nil {
		return nil, err
	}
	g, err := s.guardAnswer(ctx)
	if err != nil {
		return nil, err
	}
	return apigen.PutGuard200JSONResponse(g), nil
}
