package api

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// lookup builds the effective view of p from the index's current snapshot
// (no SQL); found is false when no existing stored prefix contains p (the
// view then says nothing is known: unknown, no tags, no prefixes).
func (s *Server) lookup(p netip.Prefix) (apigen.View, bool) {
	snap := s.opts.Index.Snapshot()
	r, prefixes, ok := snap.NetworkWithPrefixes(p)
	return toView(snap, p, r, prefixes), ok
}

// toView is the JSON of view r of p with prefixes, the existing stored
// prefixes containing p, and p's enrichment from snapshot snap.
func toView(snap *index.Snap, p netip.Prefix, r resolve.View, prefixes []resolve.Prefix) apigen.View {
	v := apigen.View{
		Classification: apigen.Classification(r.Classification),
		Tags:           tagFacts(r.Tags),
		SuppressedTags: tagFacts(r.Suppressed),
		Sources:        r.Sources,
		Sightings:      r.Sightings,
		Prefixes:       make([]apigen.StoredPrefix, 0, len(prefixes)),
		Hostnames:      []apigen.Hostname{},
		PassiveDns:     []apigen.PassiveDNSName{},
	}
	if v.Sources == nil {
		v.Sources = []string{}
	}
	if p.IsSingleIP() {
		v.Address = ptr(p.Addr().String())
	} else {
		v.Network = ptr(p.String())
	}
	if r.ClassificationSource != "" {
		v.ClassificationSource = ptr(r.ClassificationSource)
		v.ClassificationPrefix = ptr(r.ClassificationPrefix.String())
	}
	if r.Note != "" {
		v.Note = ptr(r.Note)
	}
	if !r.FirstSeen.IsZero() {
		v.FirstSeen, v.LastSeen = ptr(r.FirstSeen), ptr(r.LastSeen)
	}
	for _, sp := range prefixes {
		out := apigen.StoredPrefix{Prefix: sp.Prefix.String(), FirstSeen: sp.FirstSeen, LastSeen: sp.LastSeen, Sightings: sp.Sightings, Assertions: []apigen.Assertion{}}
		for _, a := range sp.Assertions {
			out.Assertions = append(out.Assertions, apigen.Assertion{Kind: apigen.AssertionKind(a.Kind), Value: a.Value, Source: a.Source, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, ExpiresAt: a.ExpiresAt})
		}
		v.Prefixes = append(v.Prefixes, out)
	}
	if g, ok := snap.GeoNetwork(p); ok {
		v.Geo = apigen.Geo{Country: ptr(g.Country), Continent: ptr(g.Continent), Network: ptr(g.Prefix.String()), Source: ptr(g.Source)}
		if g.City != "" {
			v.Geo.City = ptr(g.City)
		}
		if g.ASN != 0 {
			v.Asn = apigen.ASN{Number: ptr(int64(g.ASN)), Organization: ptr(g.Org), Network: ptr(g.Prefix.String()), Source: ptr(g.Source)}
		}
	}
	if rd, ok := snap.RDAP(p); ok {
		v.Rdap = apigen.RDAP{Network: ptr(rd.Network.String()), Handle: ptr(rd.Handle), Name: ptr(rd.Name), Org: ptr(rd.Org),
			Country: ptr(rd.Country), AbuseEmail: ptr(rd.AbuseEmail), Registry: ptr(rd.Registry), FetchedAt: ptr(rd.FetchedAt)}
	}
	if p.IsSingleIP() {
		for _, h := range snap.Hostnames(p.Addr()) {
			v.Hostnames = append(v.Hostnames, apigen.Hostname{Name: h.Name, Source: h.Source, LastSeen: h.LastSeen})
		}
		for _, pd := range snap.PassiveDNS(p.Addr()) {
			n := apigen.PassiveDNSName{Name: pd.Name, FirstSeen: pd.FirstSeen, LastSeen: pd.LastSeen, Seen: pd.Seen}
			if pd.Client.IsValid() {
				n.Client = ptr(pd.Client.String())
			}
			v.PassiveDns = append(v.PassiveDns, n)
		}
		if attempts := snap.EnrichAttempts(p.Addr()); len(attempts) > 0 {
			v.Enrichment = ptr(EnrichStatuses(attempts))
		}
	}
	return v
}
func tagFacts(ts []resolve.TagFact) []apigen.TagFact {
	out := make([]apigen.TagFact, 0, len(ts))
	for _, t := range ts {
		out = append(out, apigen.TagFact{Name: t.Name, Source: t.Source, Prefix: t.Prefix.String(), FirstSeen: t.FirstSeen, LastSeen: t.LastSeen, ExpiresAt: t.ExpiresAt})
	}
	return out
}

func addrPrefix(s string) (netip.Prefix, *apigen.Problem) {
	a, err := ParseAddr(s)
	if err != nil {
		p := problem(400, "the address is malformed", fieldErr("address", err.Error()))
		return netip.Prefix{}, &p
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// netPrefix is the network of a /networks/{address}/{bits} path in canonical
// form: an IPv4-mapped address counts its bits in IPv6 (::ffff:192.0.2.0/120
// is 192.0.2.0/24).
func netPrefix(addr string, bits int) (netip.Prefix, *apigen.Problem) {
	bad := func(detail string, fe apigen.FieldError) (netip.Prefix, *apigen.Problem) {
		p := problem(400, detail, fe)
		return netip.Prefix{}, &p
	}
	a, err := netip.ParseAddr(strings.TrimSpace(addr))
	if err != nil {
		return bad("the address is malformed", fieldErr("address", fmt.Sprintf("%q is not an IP address", addr)))
	}
	if a.Zone() != "" {
		return bad("the address is malformed", fieldErr("address", fmt.Sprintf("%q has a zone; zones are not allowed", addr)))
	}
	if bits < 0 || bits > a.BitLen() {
		return bad("the prefix length is out of range", fieldErr("bits", fmt.Sprintf("must be between 0 and %d for %s", a.BitLen(), a)))
	}
	pp := netip.PrefixFrom(a, bits)
	if pp.Masked() != pp {
		return bad("the network has host bits set", fieldErr("address", fmt.Sprintf("%s has host bits set; did you mean %s?", pp, pp.Masked())))
	}
	c, err := CanonicalPrefix(pp)
	if err != nil {
		return bad("the network is malformed", fieldErr("bits", err.Error()))
	}
	return c, nil
}

// widthProblem is the 400 for a prefix wider than the limit, or nil when it
// is within it or allowWide (an admin lifted it; the contract checked the role).
func widthProblem(p netip.Prefix, field string, allowWide bool) *apigen.Problem {
	err := policy.CheckWidth(p)
	if err == nil || allowWide {
		return nil
	}
	pr := problem(400, "the prefix is wider than the limit", fieldErr(field, err.Error()))
	return &pr
}

// GetIP implements GET /ips/{address}.
func (s *Server) GetIP(ctx context.Context, req apigen.GetIPRequestObject) (apigen.GetIPResponseObject, error) {
	p, bad := addrPrefix(req.Address)
	if bad != nil {
		return apigen.GetIP400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*bad)}, nil
	}
	v, found := s.lookup(p)
	if !found {
		return apigen.GetIP404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "nothing is known about "+p.Addr().String()))}, nil
	}
	return viewResponse{&v}, nil
}

// EnrichStatuses converts stored lookup attempts to their wire form; the
// error is omitted when empty.
func EnrichStatuses(as []store.EnrichAttempt) []apigen.EnrichStatus {
	out := make([]apigen.EnrichStatus, len(as))
	for i, a := range as {
		out[i] = apigen.EnrichStatus{Kind: apigen.EnrichStatusKind(a.Kind), AttemptedAt: a.AttemptedAt,
			Outcome: apigen.EnrichStatusOutcome(a.Outcome)}
		if a.Error != "" {
			out[i].Error = ptr(a.Error)
		}
	}
	return out
}

// GetNetwork implements GET /networks/{address}/{bits}.
func (s *Server) GetNetwork(ctx context.Context, req apigen.GetNetworkRequestObject) (apigen.GetNetworkResponseObject, error) {
	p, bad := netPrefix(req.Address, req.Bits)
	if bad != nil {
		return apigen.GetNetwork400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*bad)}, nil
	}
	v, found := s.lookup(p)
	if !found {
		return apigen.GetNetwork404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "nothing is known about "+p.String()))}, nil
	}
	return viewResponse{&v}, nil
}

// validateOverride checks an override body.
func validateOverride(o apigen.Override) (store.Override, []apigen.FieldError) {
	var errs []apigen.FieldError
	out := store.Override{AddTags: deref(o.AddTags), SuppressTags: deref(o.SuppressTags), Note: deref(o.Note), ExpiresAt: o.ExpiresAt}
	if o.Classification != nil {
		out.Classification = string(*o.Classification)
		if !resolve.ValidClassification(out.Classification) {
			errs = append(errs, fieldErr("/classification", "must be one of malicious, suspicious, benign, unknown"))
		}
	}
	for i, t := range out.AddTags {
		if reason := tagNameProblem(t); reason != "" {
			errs = append(errs, fieldErr("/add_tags/"+strconv.Itoa(i), reason))
		}
	}
	for i, t := range out.SuppressTags {
		if reason := tagNameProblem(t); reason != "" {
			errs = append(errs, fieldErr("/suppress_tags/"+strconv.Itoa(i), reason))
		}
	}
	return out, errs
}

// putOverride stores an override; lifted says p is wider than the limit and
// an admin accepted it (audited as width.lift).
func (s *Server) putOverride(ctx context.Context, p netip.Prefix, body *apigen.Override, lifted bool) (apigen.View, []apigen.FieldError, error) {
	if body == nil {
		return apigen.View{}, []apigen.FieldError{fieldErr("", "a JSON object is required")}, nil
	}
	o, errs := validateOverride(*body)
	if o.ExpiresAt != nil && !o.ExpiresAt.After(s.now()) {
		errs = append(errs, fieldErr("/expires_at", "must be in the future"))
	}
	if len(errs) > 0 {
		return apigen.View{}, errs, nil
	}
	o.WidthLifted = lifted
	if err := s.store.PutOverride(ctx, p, o, actorOf(ctx), s.now()); err != nil {
		return apigen.View{}, nil, err
	}
	if err := s.catchUp(ctx); err != nil {
		return apigen.View{}, nil, err
	}
	v, _ := s.lookup(p)
	return v, nil, nil
}

// PutIPOverride implements PUT /ips/{address}/override.
func (s *Server) PutIPOverride(ctx context.Context, req apigen.PutIPOverrideRequestObject) (apigen.PutIPOverrideResponseObject, error) {
	p, bad := addrPrefix(req.Address)
	if bad != nil {
		return apigen.PutIPOverride400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*bad)}, nil
	}
	v, errs, err := s.putOverride(ctx, p, req.Body, false)
	if err != nil {
		return nil, err
	}
	if errs != nil {
		return apigen.PutIPOverride400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the override is invalid", errs...))}, nil
	}
	return apigen.PutIPOverride200JSONResponse(v), nil
}

// PutNetworkOverride implements PUT /networks/{address}/{bits}/override.
func (s *Server) PutNetworkOverride(ctx context.Context, req apigen.PutNetworkOverrideRequestObject) (apigen.PutNetworkOverrideResponseObject, error) {
	p, bad := netPrefix(req.Address, req.Bits)
	allowWide := deref(req.Params.AllowWide)
	if bad == nil {
		bad = widthProblem(p, "bits", allowWide)
	}
	if bad != nil {
		return apigen.PutNetworkOverride400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*bad)}, nil
	}
	v, errs, err := s.putOverride(ctx, p, req.Body, allowWide && policy.CheckWidth(p) != nil)
	if err != nil {
		return nil, err
	}
	if errs != nil {
		return apigen.PutNetworkOverride400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the override is invalid", errs...))}, nil
	}
	return apigen.PutNetworkOverride200JSONResponse(v), nil
}

// DeleteIPOverride implements DELETE /ips/{address}/override.
func (s *Server) DeleteIPOverride(ctx context.Context, req apigen.DeleteIPOverrideRequestObject) (apigen.DeleteIPOverrideResponseObject, error) {
	p, bad := addrPrefix(req.Address)
	if bad != nil {
		return apigen.DeleteIPOverride400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*bad)}, nil
	}
	if err := s.store.DeleteOverride(ctx, p, actorOf(ctx)); err != nil {
		if isNotFound(err) {
			return apigen.DeleteIPOverride404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, p.Addr().String()+" has no manual override"))}, nil
		}
		return nil, err
	}
	if err := s.catchUp(ctx); err != nil {
		return nil, err
	}
	return apigen.DeleteIPOverride204Response{}, nil
}

// DeleteNetworkOverride implements DELETE /networks/{address}/{bits}/override.
func (s *Server) DeleteNetworkOverride(ctx context.Context, req apigen.DeleteNetworkOverrideRequestObject) (apigen.DeleteNetworkOverrideResponseObject, error) {
	p, bad := netPrefix(req.Address, req.Bits)
	if bad != nil {
		return apigen.DeleteNetworkOverride400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*bad)}, nil
	}
	if err := s.store.DeleteOverride(ctx, p, actorOf(ctx)); err != nil {
		if isNotFound(err) {
			return apigen.DeleteNetworkOverride404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, p.String()+" has no manual override"))}, nil
		}
		return nil, err
	}
	if err := s.catchUp(ctx); err != nil {
		return nil, err
	}
	return apigen.DeleteNetworkOverride204Response{}, nil
}
