package api

import (
	"context"
	"fmt"
	"slices"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

func toList(l store.List) apigen.NamedList {
	return apigen.NamedList{Name: l.Name, Selector: l.Selector, UpdatedAt: ptr(l.UpdatedAt), UpdatedBy: ptr(l.UpdatedBy)}
}

// ListLists implements GET /lists.
func (s *Server) ListLists(ctx context.Context, _ apigen.ListListsRequestObject) (apigen.ListListsResponseObject, error) {
	ls, err := s.store.Lists(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.NamedList, 0, len(ls))
	for _, l := range ls {
		out = append(out, toList(l))
	}
	return apigen.ListLists200JSONResponse(out), nil
}

// GetList implements GET /lists/{name}.
func (s *Server) GetList(ctx context.Context, req apigen.GetListRequestObject) (apigen.GetListResponseObject, error) {
	l, err := s.store.ListByName(ctx, req.Name)
	if isNotFound(err) {
		return apigen.GetList404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no list named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.GetList200JSONResponse(toList(l)), nil
}

// PutList implements PUT /lists/{name}. The selector must parse and must not
// refer to the list itself, directly or through other lists.
func (s *Server) PutList(ctx context.Context, req apigen.PutListRequestObject) (apigen.PutListResponseObject, error) {
	bad := func(fe apigen.FieldError) (apigen.PutListResponseObject, error) {
		return apigen.PutList400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the list is invalid", fe)}, nil
	}
	if req.Body == nil {
		return bad(fieldErr("", "a JSON object is required"))
	}
	conds, err := policy.ParseSelector(req.Body.Selector)
	if err != nil {
		return bad(textErr("/selector", err))
	}
	lists, err := render.ListSelectors(ctx, s.store)
	if err != nil {
		return nil, err
	}
	lists[req.Name] = conds
	probe := &policy.Ruleset{Name: "probe", Rules: []policy.Rule{{Action: policy.ActionBlock, Conds: []policy.Cond{{Kind: policy.KindList, Values: []string{req.Name}}}}}}
	if _, err := policy.Compile(probe, &policy.Facts{Lists: lists}); err != nil {
		return bad(fieldErr("/selector", err.Error()))
	}
	werrs, lifted := wideTerms(policy.WideSelectorCIDRs(conds), func(policy.WideTerm) string { return "/selector" }, deref(req.Params.AllowWide))
	if len(werrs) > 0 {
		return apigen.PutList400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the list is invalid", werrs...)}, nil
	}
	l, err := s.store.PutList(ctx, req.Name, policy.FormatSelector(conds), actorOf(ctx), lifted...)
	if err != nil {
		return nil, err
	}
	return apigen.PutList200JSONResponse(toList(l)), nil
}

// DeleteList implements DELETE /lists/{name}; a list another list or a
// ruleset refers to cannot be deleted.
func (s *Server) DeleteList(ctx context.Context, req apigen.DeleteListRequestObject) (apigen.DeleteListResponseObject, error) {
	users, err := s.listUsers(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return apigen.DeleteList409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: apigen.ConflictApplicationProblemPlusJSONResponse(
			problem(409, fmt.Sprintf("list %s is used by %v", req.Name, users)))}, nil
	}
	err = s.store.DeleteList(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteList404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no list named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteList204Response{}, nil
}

// listUsers names the lists and rulesets whose conditions refer to list name.
func (s *Server) listUsers(ctx context.Context, name string) ([]string, error) {
	refers := func(conds []policy.Cond) bool {
		return slices.ContainsFunc(conds, func(c policy.Cond) bool {
			return c.Kind == policy.KindList && slices.Contains(c.Values, name)
		})
	}
	var users []string
	lists, err := render.ListSelectors(ctx, s.store)
	if err != nil {
		return nil, err
	}
	for n, conds := range lists {
		if n != name && refers(conds) {
			users = append(users, "list/"+n)
		}
	}
	rss, err := s.store.Rulesets(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rss {
		rs, err := policy.Parse(r.Text)
		if err != nil {
			return nil, fmt.Errorf("api: stored ruleset %s: %w", r.Name, err)
		}
		for _, rule := range rs.Rules {
			if refers(rule.Conds) {
				users = append(users, "ruleset/"+r.Name)
				break
			}
		}
	}
	slices.Sort(users)
	return users, nil
}
