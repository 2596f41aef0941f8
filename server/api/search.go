package api

import (
	"context"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
)

// filterParams are the search filters shared by search and exports.
type filterParams struct {
	Tag            *string
	Classification *apigen.Classification
	Source         *string
	Within         *string
	SeenSince      *time.Time
}

func parseFilter(fp filterParams) (index.Filter, []apigen.FieldError) {
	var errs []apigen.FieldError
	f := index.Filter{Tag: deref(fp.Tag), Source: deref(fp.Source), SeenSince: deref(fp.SeenSince)}
	if fp.Classification != nil {
		f.Classification = string(*fp.Classification)
		if !resolve.ValidClassification(f.Classification) {
			errs = append(errs, fieldErr("classification", "must be one of malicious, suspicious, benign, unknown"))
		}
	}
	within, fe := parseWithin(fp.Within)
	if fe != nil {
		errs = append(errs, *fe)
	}
	f.Within = within
	if f.Tag != "" {
		if reason := tagNameProblem(f.Tag); reason != "" {
			errs = append(errs, fieldErr("tag", reason))
		}
	}
	return f, errs
}

// parseWithin reads a within parameter, the one rule of every endpoint
// that takes one: absent is the zero Prefix (no filter); otherwise
// ParsePrefix (an address or CIDR, host bits zeroed), so an empty value is
// a field error on "within".
func parseWithin(v *string) (netip.Prefix, *apigen.FieldError) {
	if v == nil {
		return netip.Prefix{}, nil
	}
	p, err := ParsePrefix(*v)
	if err != nil {
		fe := fieldErr("within", err.Error())
		return netip.Prefix{}, &fe
	}
	return p, nil
}

// parseCursor reads a search cursor: the prefix of the last row of the
// previous page (invalid for the first page).
func parseCursor(c *string) (netip.Prefix, *apigen.FieldError) {
	if c == nil || *c == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(*c)
	if err != nil || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		fe := fieldErr("cursor", "must be the next_cursor of an earlier page")
		return netip.Prefix{}, &fe
	}
	return p, nil
}

// toItem is the search row of stored prefix p with effective view v.
func toItem(snap *index.Snap, p netip.Prefix, v resolve.View) apigen.SearchItem {
	out := apigen.SearchItem{Prefix: p.String(), Classification: apigen.Classification(v.Classification),
		Tags: v.TagNames(), Sources: v.Sources, FirstSeen: v.FirstSeen, LastSeen: v.LastSeen, Sightings: v.Sightings}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Sources == nil {
		out.Sources = []string{}
	}
	if v.Note != "" {
		out.Note = ptr(v.Note)
	}
	if names := passiveNames(snap, p); names != nil {
		out.PassiveDns = &names
	}
	return out
}

// passiveNames is the passive DNS value of the search items and exports:
// for a single address, its names (index.Snap.PassiveDNSNames); nil for a
// network or an address without any.
func passiveNames(snap *index.Snap, p netip.Prefix) []string {
	if !p.IsSingleIP() {
		return nil
	}
	return snap.PassiveDNSNames(p.Addr())
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
	snap := s.opts.Index.Snapshot()
	rows, next := snap.Search(f, after, limit)
	page := apigen.SearchPage{Items: make([]apigen.SearchItem, 0, len(rows))}
	if next.IsValid() {
		page.NextCursor = ptr(next.String())
	}
	for _, r := range rows {
		page.Items = append(page.Items, toItem(snap, r.Prefix, r.View))
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
	return TextProblem(name)
}

// TextProblem says what makes s unfit to store or compare as text: invalid
// UTF-8 or a NUL character (PostgreSQL text refuses both), or "" when s is fine.
func TextProblem(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "must not contain NUL characters"
	}
	return ""
}

// eachRow calls fn for every row matching f, in address order, from one
// snapshot of the index, a page at a time, so exports run in constant memory
// however many prefixes match and stop when the client goes away.
func (s *Server) eachRow(ctx context.Context, f index.Filter, fn func(snap *index.Snap, r index.Row) error) error {
	return eachRowIn(ctx, s.opts.Index.Snapshot(), f, fn)
}

// eachRowIn is eachRow over snapshot snap.
func eachRowIn(ctx context.Context, snap *index.Snap, f index.Filter, fn func(snap *index.Snap, r index.Row) error) error {
	var after netip.Prefix
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, next := snap.Search(f, after, 1000)
		for _, r := range rows {
			if err := fn(snap, r); err != nil {
				return err
			}
		}
		if !next.IsValid() {
			return nil
		}
		after = next
	}
}
