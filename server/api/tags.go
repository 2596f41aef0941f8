package api

import (
	"context"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// toTag is a tag's definition with the number of existing prefixes whose
// effective view carries it (from the index).
func toTag(t store.Tag, counts map[string]int64) apigen.Tag {
	out := apigen.Tag{Name: t.Name, Description: t.Description, Color: t.Color, Prefixes: counts[t.Name], CreatedAt: ptr(t.CreatedAt), UpdatedAt: ptr(t.UpdatedAt)}
	if t.DefaultTTL > 0 {
		out.DefaultTtl = ptr(t.DefaultTTL.String())
	}
	return out
}

// ListTags implements GET /tags.
func (s *Server) ListTags(ctx context.Context, _ apigen.ListTagsRequestObject) (apigen.ListTagsResponseObject, error) {
	ts, err := s.store.Tags(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.Tag, 0, len(ts))
	counts := s.opts.Index.Snapshot().TagCounts()
	for _, t := range ts {
		out = append(out, toTag(t, counts))
	}
	return apigen.ListTags200JSONResponse(out), nil
}

// GetTag implements GET /tags/{name}.
func (s *Server) GetTag(ctx context.Context, req apigen.GetTagRequestObject) (apigen.GetTagResponseObject, error) {
	t, err := s.store.TagByName(ctx, req.Name)
	if isNotFound(err) {
		return apigen.GetTag404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no tag named "+req.Name))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.GetTag200JSONResponse(toTag(t, s.opts.Index.Snapshot().TagCounts())), nil
}

// PutTag implements PUT /tags/{name}.
func (s *Server) PutTag(ctx context.Context, req apigen.PutTagRequestObject) (apigen.PutTagResponseObject, error) {
	var errs []apigen.FieldError
	if reason := tagNameProblem(req.Name); reason != "" {
		errs = append(errs, fieldErr("name", reason))
	}
	if req.Body == nil {
		errs = append(errs, fieldErr("", "a JSON object is required"))
	}
	t := store.Tag{Name: req.Name}
	if req.Body != nil {
		t.Description, t.Color = deref(req.Body.Description), deref(req.Body.Color)
		if req.Body.DefaultTtl != nil && *req.Body.DefaultTtl != "" {
			d, err := time.ParseDuration(*req.Body.DefaultTtl)
			if err != nil || d <= 0 || d > maxTTL {
				errs = append(errs, fieldErr("/default_ttl", "must be a positive duration such as \"168h\", at most 10 years"))
			}
			t.DefaultTTL = d
		}
	}
	if len(errs) > 0 {
		return apigen.PutTag400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the tag is invalid", errs...))}, nil
	}
	if err := s.store.PutTag(ctx, t, actorOf(ctx)); err != nil {
		return nil, err
	}
	stored, err := s.store.TagByName(ctx, t.Name)
	if err != nil {
		return nil, err
	}
	return apigen.PutTag200JSONResponse(toTag(stored, s.opts.Index.Snapshot().TagCounts())), nil
}

// DeleteTag implements DELETE /tags/{name}.
func (s *Server) DeleteTag(ctx context.Context, req apigen.DeleteTagRequestObject) (apigen.DeleteTagResponseObject, error) {
	err := s.store.DeleteTag(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteTag404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no tag named "+req.Name))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteTag204Response{}, nil
}
