package api

import (
	"context"
	"errors"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

func toToken(t store.Token) apigen.Token {
	return apigen.Token{Id: t.ID, Name: t.Name, Role: apigen.Role(t.Role), CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt}
}

// ListTokens implements GET /tokens.
func (s *Server) ListTokens(ctx context.Context, _ apigen.ListTokensRequestObject) (apigen.ListTokensResponseObject, error) {
	ts, err := s.store.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, toToken(t))
	}
	return apigen.ListTokens200JSONResponse(out), nil
}

// CreateToken implements POST /tokens.
func (s *Server) CreateToken(ctx context.Context, req apigen.CreateTokenRequestObject) (apigen.CreateTokenResponseObject, error) {
	if req.Body == nil {
		return apigen.CreateToken400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "a JSON object is required", fieldErr("", "is required")))}, nil
	}
	b := *req.Body
	var errs []apigen.FieldError
	if RoleRank(string(b.Role)) == 0 {
		errs = append(errs, fieldErr("/role", "must be reader, writer or admin"))
	}
	if b.ExpiresAt != nil && !b.ExpiresAt.After(s.now()) {
		errs = append(errs, fieldErr("/expires_at", "must be in the future"))
	}
	if len(errs) > 0 {
		return apigen.CreateToken400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the token is invalid", errs...))}, nil
	}
	t, secret, err := CreateToken(ctx, s.store, b.Name, string(b.Role), b.ExpiresAt, actorOf(ctx))
	if errors.Is(err, store.ErrConflict) {
		return apigen.CreateToken409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: apigen.ConflictApplicationProblemPlusJSONResponse(problem(409, "a token named "+b.Name+" exists already", fieldErr("/name", "is taken")))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.CreateToken201JSONResponse{Id: t.ID, Name: t.Name, Role: apigen.Role(t.Role), CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Token: secret}, nil
}

// DeleteToken implements DELETE /tokens/{id}.
func (s *Server) DeleteToken(ctx context.Context, req apigen.DeleteTokenRequestObject) (apigen.DeleteTokenResponseObject, error) {
	err := s.store.DeleteToken(ctx, req.Id, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteToken404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no such token"))}, nil
	}
	if err != nil {
		return nil, err
	}
	s.auth.Forget()
	return apigen.DeleteToken204Response{}, nil
}
