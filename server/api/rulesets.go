package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

func badRequest(detail string, fields ...apigen.FieldError) apigen.BadRequestApplicationProblemPlusJSONResponse {
	return apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, detail, fields...))
}

func notFound(detail string) apigen.NotFoundApplicationProblemPlusJSONResponse {
	return apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, detail))
}

// textErr turns a policy error into a field error, with line and column for
// syntax errors.
func textErr(field string, err error) apigen.FieldError {
	fe := fieldErr(field, err.Error())
	var se *policy.SyntaxError
	if errors.As(err, &se) {
		fe.Line, fe.Column = ptr(se.Line), ptr(se.Col)
	}
	return fe
}

func (s *Server) toRuleset(r store.Ruleset) (apigen.Ruleset, error) {
	out := apigen.Ruleset{Name: r.Name, Text: r.Text, Version: r.Version, CreatedAt: ptr(r.CreatedAt), UpdatedAt: r.UpdatedAt, UpdatedBy: ptr(r.UpdatedBy)}
	if err := json.Unmarshal(r.JSON, &out.Policy); err != nil {
		return out, fmt.Errorf("api: decode ruleset %s: %w", r.Name, err)
	}
	if s.opts.Render != nil {
		if snap := s.opts.Render.Latest(r.Name); snap != nil {
			out.RenderVersion = ptr(snap.Render.Version)
		}
	}
	return out, nil
}

// ListRulesets implements GET /rulesets.
func (s *Server) ListRulesets(ctx context.Context, _ apigen.ListRulesetsRequestObject) (apigen.ListRulesetsResponseObject, error) {
	rss, err := s.store.Rulesets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.Ruleset, 0, len(rss))
	for _, r := range rss {
		a, err := s.toRuleset(r)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return apigen.ListRulesets200JSONResponse(out), nil
}

// GetRuleset implements GET /rulesets/{name}.
func (s *Server) GetRuleset(ctx context.Context, req apigen.GetRulesetRequestObject) (apigen.GetRulesetResponseObject, error) {
	r, err := s.store.RulesetByName(ctx, req.Name)
	if isNotFound(err) {
		return apigen.GetRuleset404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	out, err := s.toRuleset(r)
	if err != nil {
		return nil, err
	}
	return apigen.GetRuleset200JSONResponse(out), nil
}

// parseRulesetBody reads a ruleset from text or from its JSON form and checks
// it against the stored lists; the field errors say what is wrong.
func (s *Server) parseRulesetBody(ctx context.Context, name string, text *string, js *apigen.Policy) (*policy.Ruleset, []apigen.FieldError, error) {
	var rs *policy.Ruleset
	switch {
	case text != nil:
		r, err := policy.Parse(*text)
		if err != nil {
			return nil, []apigen.FieldError{textErr("", err)}, nil
		}
		rs = r
	case js != nil:
		b, err := json.Marshal(js)
		if err != nil {
			return nil, nil, fmt.Errorf("api: re-encode ruleset: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		rs = &policy.Ruleset{}
		if err := dec.Decode(rs); err != nil {
			return nil, []apigen.FieldError{fieldErr("", err.Error())}, nil
		}
		if err := rs.Canonicalize(); err != nil {
			return nil, []apigen.FieldError{fieldErr("", err.Error())}, nil
		}
	default:
		return nil, []apigen.FieldError{fieldErr("", "send the ruleset as text/plain or its JSON form as application/json")}, nil
	}
	if rs.Name != name {
		return nil, []apigen.FieldError{fieldErr("/name", fmt.Sprintf("the ruleset is named %q but the path says %q", rs.Name, name))}, nil
	}
	lists, err := render.ListSelectors(ctx, s.store)
	if err != nil {
		return nil, nil, err
	}
	// Compiling over no facts checks every list reference (unknown lists, cycles) cheaply.
	if _, err := policy.Compile(rs, &policy.Facts{Lists: lists}); err != nil {
		return nil, []apigen.FieldError{fieldErr("/rules", err.Error())}, nil
	}
	return rs, nil, nil
}

// wideTerms turns the cidr values of a ruleset or selector wider than the
// limit into field errors (field names each one), or, when an admin sent
// allow_wide, into the prefixes lifted for the audit log.
func wideTerms(terms []policy.WideTerm, field func(policy.WideTerm) string, allowWide bool) ([]apigen.FieldError, []netip.Prefix) {
	var errs []apigen.FieldError
	var lifted []netip.Prefix
	for _, w := range terms {
		if allowWide {
			lifted = append(lifted, w.Err.Prefix)
			continue
		}
		errs = append(errs, fieldErr(field(w), w.Reason()))
	}
	return errs, lifted
}

// PutRuleset implements PUT /rulesets/{name}.
func (s *Server) PutRuleset(ctx context.Context, req apigen.PutRulesetRequestObject) (apigen.PutRulesetResponseObject, error) {
	if req.TextBody != nil && len(*req.TextBody) > policy.MaxTextSize {
		return apigen.PutRuleset413ApplicationProblemPlusJSONResponse{TooLargeApplicationProblemPlusJSONResponse: apigen.TooLargeApplicationProblemPlusJSONResponse(
			problem(413, fmt.Sprintf("the ruleset text is %d bytes, at most %d allowed", len(*req.TextBody), policy.MaxTextSize), fieldErr("", "too large")))}, nil
	}
	rs, errs, err := s.parseRulesetBody(ctx, req.Name, req.TextBody, req.JSONBody)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return apigen.PutRuleset400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the ruleset is invalid", errs...)}, nil
	}
	js, err := json.Marshal(rs)
	if err != nil {
		return nil, fmt.Errorf("api: encode ruleset: %w", err)
	}
	werrs, lifted := wideTerms(rs.WideCIDRs(), func(w policy.WideTerm) string { return w.Pointer }, deref(req.Params.AllowWide))
	if len(werrs) > 0 {
		return apigen.PutRuleset400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the ruleset is invalid", werrs...)}, nil
	}
	stored, created, err := s.store.PutRuleset(ctx, rs.Name, policy.Format(rs), js, actorOf(ctx), lifted...)
	if err != nil {
		return nil, err
	}
	out, err := s.toRuleset(stored)
	if err != nil {
		return nil, err
	}
	if created {
		return apigen.PutRuleset201JSONResponse(out), nil
	}
	return apigen.PutRuleset200JSONResponse(out), nil
}

// DeleteRuleset implements DELETE /rulesets/{name}.
func (s *Server) DeleteRuleset(ctx context.Context, req apigen.DeleteRulesetRequestObject) (apigen.DeleteRulesetResponseObject, error) {
	err := s.store.DeleteRuleset(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteRuleset404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteRuleset204Response{}, nil
}

// ExplainRuleset implements GET /rulesets/{name}/explain: the ruleset is
// evaluated over the address's view and geo network from the index.
func (s *Server) ExplainRuleset(ctx context.Context, req apigen.ExplainRulesetRequestObject) (apigen.ExplainRulesetResponseObject, error) {
	addr, err := ParseAddr(req.Params.Ip)
	if err != nil {
		return apigen.ExplainRuleset400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the address is invalid", fieldErr("ip", err.Error()))}, nil
	}
	stored, err := s.store.RulesetByName(ctx, req.Name)
	if isNotFound(err) {
		return apigen.ExplainRuleset404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	rs, err := policy.Parse(stored.Text)
	if err != nil {
		return nil, fmt.Errorf("api: stored ruleset %s: %w", req.Name, err)
	}
	ex, err := s.explain(ctx, rs, addr)
	if err != nil {
		return nil, err
	}
	guarded, err := s.guarded(ctx, addr)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(struct {
		policy.Explanation
		// Rule is the 1-based id of the deciding rule as in renders; 0 for the default.
		Rule    int     `json:"rule"`
		Guarded *string `json:"guarded"`
		// Blocked says whether a bouncer enforcing the render blocks the address.
		Blocked bool `json:"blocked"`
	}{ex, ex.Decided + 1, guarded, ex.Action == policy.ActionBlock && guarded == nil})
	if err != nil {
		return nil, fmt.Errorf("api: encode explanation: %w", err)
	}
	var out apigen.Explanation
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("api: encode explanation: %w", err)
	}
	return apigen.ExplainRuleset200JSONResponse(out), nil
}

// explain evaluates rs for addr over the index's current snapshot: the
// address's view with the resolver's steps, its most specific geo network
// and the named lists.
func (s *Server) explain(ctx context.Context, rs *policy.Ruleset, addr netip.Addr) (policy.Explanation, error) {
	lists, err := render.ListSelectors(ctx, s.store)
	if err != nil {
		return policy.Explanation{}, err
	}
	addr = addr.Unmap()
	snap := s.opts.Index.Snapshot()
	v, _ := snap.Explain(netip.PrefixFrom(addr, addr.BitLen()))
	var geo []policy.GeoNet
	if g, ok := snap.Geo(addr); ok {
		geo = []policy.GeoNet{g.GeoNet}
	}
	ex, err := policy.Explain(rs, lists, addr, v, geo)
	if err != nil {
		return ex, fmt.Errorf("api: explain: %w", err)
	}
	return ex, nil
}

// guarded returns why the never-block guard keeps addr out of block sets, or nil.
func (s *Server) guarded(ctx context.Context, addr netip.Addr) (*string, error) {
	g, err := s.opts.Render.Guard(ctx)
	if err != nil {
		return nil, err
	}
	if !g.Contains(addr) {
		return nil, nil
	}
	_, _, removed := g.Filter(onlyPrefix(addr, true), onlyPrefix(addr, false), 0)
	if len(removed) == 0 {
		return ptr("guarded"), nil
	}
	return ptr(removed[0].Reason), nil
}

func onlyPrefix(a netip.Addr, v4 bool) []netip.Prefix {
	if a.Is4() != v4 {
		return nil
	}
	return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
}
