package api

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// filterParams are the search filters shared by search and exports.
type filterParams struct {
	Tag            *string
	Classification *apigen.Classification
	Source         *string
	Within         *string
	SeenSince      *time.Time
}

func parseFilter(fp filterParams) (store.Filter, []apigen.FieldError) {
	var errs []apigen.FieldError
	f := store.Filter{Tag: deref(fp.Tag), Source: deref(fp.Source), SeenSince: fp.SeenSince}
	if fp.Classification != nil {
		f.Classification = string(*fp.Classification)
		if !resolve.ValidClassification(f.Classification) {
			errs = append(errs, fieldErr("classification", "must be one of malicious, suspicious, benign, unknown"))
		}
	}
	if fp.Within != nil {
		p, err := ParsePrefix(*fp.Within)
		if err != nil {
			errs = append(errs, fieldErr("within", err.Error()))
		} else {
			f.Within = &p
		}
	}
	if f.Tag != "" {
		if reason := tagNameProblem(f.Tag); reason != "" {
			errs = append(errs, fieldErr("tag", reason))
		}
	}
	return f, errs
}

func parseCursor(c *string) (int64, *apigen.FieldError) {
	if c == nil || *c == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(*c, 10, 64)
	if err != nil || n < 0 {
		fe := fieldErr("cursor", "must be the next_cursor of an earlier page")
		return 0, &fe
	}
	return n, nil
}

func toItem(it store.Item) apigen.SearchItem {
	out := apigen.SearchItem{Prefix: it.Prefix.String(), Classification: apigen.Classification(it.Classification),
		Tags: it.Tags, Sources: it.Sources, FirstSeen: it.FirstSeen, LastSeen: it.LastSeen, Sightings: it.Sightings}
	if it.Note != "" {
		out.Note = ptr(it.Note)
	}
	return out
}

// SearchIPs implements GET /ips.
func (s *Server) SearchIPs(ctx context.Context, req apigen.SearchIPsRequestObject) (apigen.SearchIPsResponseObject, error) {
	prm := req.Params
	f, errs := parseFilter(filterParams{prm.Tag, prm.Classification, prm.Source, prm.Within, prm.SeenSince})
	after, ce := parseCursor(prm.Cursor)
	if ce != nil {
		errs = append(errs, *ce)
	}
	limit := 100
	if prm.Limit != nil {
		limit = *prm.Limit
		if limit < 1 || limit > 1000 {
			errs = append(errs, fieldErr("limit", "must be between 1 and 1000"))
		}
	}
	if len(errs) > 0 {
		return apigen.SearchIPs400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the search is invalid", errs...))}, nil
	}
	items, err := s.store.Search(ctx, f, after, limit+1, s.now())
	if err != nil {
		return nil, err
	}
	page := apigen.SearchPage{Items: make([]apigen.SearchItem, 0, len(items))}
	if len(items) > limit {
		items = items[:limit]
		page.NextCursor = ptr(strconv.FormatInt(items[len(items)-1].ID, 10))
	}
	for _, it := range items {
		page.Items = append(page.Items, toItem(it))
	}
	return apigen.SearchIPs200JSONResponse(page), nil
}

// tagNameProblem says what is wrong with a tag name, or "".
func tagNameProblem(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 100:
		return "must be at most 100 bytes"
	case strings.TrimSpace(name) != name:
		return "must not start or end with white space"
	case strings.ContainsAny(name, "\"\n\r\t,"):
		return "must not contain quotes, commas, tabs or newlines"
	}
	return ""
}

// eachItem calls fn for every item matching f, a page at a time, so exports run
// in constant memory however many prefixes match.
func (s *Server) eachItem(ctx context.Context, f store.Filter, fn func(items []store.Item) error) error {
	var after int64
	now := s.now()
	for {
		items, err := s.store.Search(ctx, f, after, 1000, now)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if len(items) == 0 {
			return nil
		}
		if err := fn(items); err != nil {
			return err
		}
		after = items[len(items)-1].ID
	}
}
