package api

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/flow"
	"github.com/muninn/muninn/server/store"
)

func toFlowExporter(e store.FlowExporter) apigen.FlowExporter {
	inside := make([]string, 0, len(e.Inside))
	for _, p := range e.Inside {
		inside = append(inside, p.String())
	}
	return apigen.FlowExporter{Name: e.Name, Address: e.Address.String(), SamplingRate: e.SamplingRate, Inside: inside,
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
}

func toFlowHost(h store.FlowHost) apigen.FlowHost {
	return apigen.FlowHost{Address: h.Address.String(), FirstSeen: h.FirstSeen, LastSeen: h.LastSeen, Exporter: h.Exporter,
		Mac: h.MAC, LeaseName: h.LeaseName, Label: h.Label, Bytes: h.Bytes, Packets: h.Packets, Flows: h.Flows}
}

func toFlowCounts(cs []store.FlowCount) []apigen.FlowCount {
	out := make([]apigen.FlowCount, 0, len(cs))
	for _, c := range cs {
		out = append(out, apigen.FlowCount{Key: c.Key, Bytes: c.Bytes, Packets: c.Packets, Flows: c.Flows})
	}
	return out
}

func toFlowProfile(p store.FlowProfile) apigen.FlowProfile {
	out := apigen.FlowProfile{Network: p.Within.String(), Since: p.Since, Bytes: p.Bytes, Packets: p.Packets, Flows: p.Flows,
		Countries: toFlowCounts(p.Countries), Orgs: toFlowCounts(p.Orgs), Ports: toFlowCounts(p.Ports),
		Series: make([]apigen.FlowPoint, 0, len(p.Series)), NewDestinations: make([]apigen.FlowDestination, 0, len(p.NewDestinations)),
		Contacts: make([]apigen.FlowContact, 0, len(p.Contacts))}
	for _, pt := range p.Series {
		out.Series = append(out.Series, apigen.FlowPoint{At: pt.At, Bytes: pt.Bytes})
	}
	for _, d := range p.NewDestinations {
		out.NewDestinations = append(out.NewDestinations, apigen.FlowDestination{Address: d.Remote.String(), Country: d.Country,
			Org: d.Org, FirstSeen: d.FirstSeen, Bytes: d.Bytes})
	}
	for _, c := range p.Contacts {
		tags := c.Tags
		if tags == nil {
			tags = []string{}
		}
		out.Contacts = append(out.Contacts, apigen.FlowContact{Host: c.Host.String(), Address: c.Remote.String(), LastHour: c.LastHour,
			Classification: c.Classification, Tags: tags, Bytes: c.Bytes})
	}
	return out
}

// flowSince parses the since parameter (flow.ParseSince: default 168h).
func flowSince(v *apigen.FlowSince) (time.Duration, *apigen.FieldError) {
	var text string
	if v != nil {
		text = *v
	}
	d, err := flow.ParseSince(text)
	if err != nil {
		fe := fieldErr("since", err.Error())
		return 0, &fe
	}
	return d, nil
}

// flowProfile builds the profile of the hosts within p over the last since
// (flow.Profile, the one every profile answer reads).
func (s *Server) flowProfile(ctx context.Context, p netip.Prefix, since time.Duration) (store.FlowProfile, error) {
	return flow.Profile(ctx, s.store, s.opts.Index.Snapshot(), p, since, s.now(), s.opts.FlowAlertTags)
}

// GetFlowAddress implements GET /flows/addresses/{address}.
func (s *Server) GetFlowAddress(ctx context.Context, req apigen.GetFlowAddressRequestObject) (apigen.GetFlowAddressResponseObject, error) {
	a, err := ParseAddr(req.Address)
	if err != nil {
		return apigen.GetFlowAddress400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the address is malformed", fieldErr("address", err.Error())))}, nil
	}
	rs, err := s.store.FlowRemotes(ctx, a)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return apigen.GetFlowAddress404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no exporter saw "+a.String()+" as an outside address"))}, nil
	}
	out := make(apigen.GetFlowAddress200JSONResponse, 0, len(rs))
	for _, r := range rs {
		fa := apigen.FlowAddress{Address: r.Address.String(), Exporter: r.Exporter, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen,
			Bytes: int64(r.Bytes), Packets: int64(r.Packets), Flows: int64(r.Flows), Peers: make([]string, 0, len(r.Peers)), Ports: r.Ports}
		for _, p := range r.Peers {
			fa.Peers = append(fa.Peers, p.String())
		}
		if fa.Ports == nil {
			fa.Ports = []int{}
		}
		out = append(out, fa)
	}
	return out, nil
}

// ListFlowExporters implements GET /flows/exporters.
func (s *Server) ListFlowExporters(ctx context.Context, _ apigen.ListFlowExportersRequestObject) (apigen.ListFlowExportersResponseObject, error) {
	es, err := s.store.FlowExporters(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.FlowExporter, 0, len(es))
	for _, e := range es {
		out = append(out, toFlowExporter(e))
	}
	return apigen.ListFlowExporters200JSONResponse(out), nil
}

// GetFlowExporter implements GET /flows/exporters/{name}.
func (s *Server) GetFlowExporter(ctx context.Context, req apigen.GetFlowExporterRequestObject) (apigen.GetFlowExporterResponseObject, error) {
	e, err := s.store.FlowExporterGet(ctx, req.Name)
	if isNotFound(err) {
		return apigen.GetFlowExporter404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no exporter named "+req.Name))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.GetFlowExporter200JSONResponse(toFlowExporter(e)), nil
}

// exporterAddrProblem is why a is not an address an exporter's datagrams
// can come from ("" when it can be): nothing sends from the unspecified
// address, and a multicast or broadcast source is spoofed or a mistake.
func exporterAddrProblem(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return a.String() + " is the unspecified address; no exporter sends from it"
	case a.IsMulticast():
		return a.String() + " is a multicast address; no exporter sends from it"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return a.String() + " is the broadcast address; no exporter sends from it"
	}
	return ""
}

// PutFlowExporter implements PUT /flows/exporters/{name}. An explicit inside
// list must name at least one network, none of them /0 (either would make
// the exporter's flows all transit or all inside); duplicates after masking
// are dropped, the first kept in place.
func (s *Server) PutFlowExporter(ctx context.Context, req apigen.PutFlowExporterRequestObject) (apigen.PutFlowExporterResponseObject, error) {
	bad := func(errs ...apigen.FieldError) apigen.PutFlowExporterResponseObject {
		return apigen.PutFlowExporter400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the exporter is invalid", errs...))}
	}
	if req.Body == nil {
		return bad(fieldErr("", "a JSON object is required")), nil
	}
	var errs []apigen.FieldError
	e := store.FlowExporter{Name: req.Name, SamplingRate: deref(req.Body.SamplingRate)}
	a, err := ParseAddr(req.Body.Address)
	if err != nil {
		errs = append(errs, fieldErr("/address", err.Error()))
	} else if reason := exporterAddrProblem(a); reason != "" {
		errs = append(errs, fieldErr("/address", reason))
	}
	e.Address = a
	if req.Body.Inside != nil {
		if len(*req.Body.Inside) == 0 {
			errs = append(errs, fieldErr("/inside", "no inside network: every flow would be transit"))
		}
		e.Inside = []netip.Prefix{}
		seen := map[netip.Prefix]bool{}
		for i, v := range *req.Body.Inside {
			p, err := ParsePrefix(v)
			switch {
			case err != nil:
				errs = append(errs, fieldErr(fmt.Sprintf("/inside/%d", i), err.Error()))
			case p.Bits() == 0:
				errs = append(errs, fieldErr(fmt.Sprintf("/inside/%d", i), "every address would be inside; no outside address would ever be seen"))
			case !seen[p]:
				seen[p] = true
				e.Inside = append(e.Inside, p)
			}
		}
	}
	if len(errs) > 0 {
		return bad(errs...), nil
	}
	stored, err := s.store.FlowExporterPut(ctx, e, actorOf(ctx))
	if errors.Is(err, store.ErrConflict) {
		return apigen.PutFlowExporter409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: apigen.ConflictApplicationProblemPlusJSONResponse(problem(409, "another exporter has the address "+a.String(), fieldErr("/address", "is another exporter's")))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.PutFlowExporter200JSONResponse(toFlowExporter(stored)), nil
}

// DeleteFlowExporter implements DELETE /flows/exporters/{name}.
func (s *Server) DeleteFlowExporter(ctx context.Context, req apigen.DeleteFlowExporterRequestObject) (apigen.DeleteFlowExporterResponseObject, error) {
	err := s.store.FlowExporterDelete(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteFlowExporter404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no exporter named "+req.Name))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteFlowExporter204Response{}, nil
}

// ListFlowHosts implements GET /flows/hosts.
func (s *Server) ListFlowHosts(ctx context.Context, req apigen.ListFlowHostsRequestObject) (apigen.ListFlowHostsResponseObject, error) {
	within, fe := parseWithin(req.Params.Within)
	if fe != nil {
		return apigen.ListFlowHosts400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the network is malformed", *fe))}, nil
	}
	limit := 100
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	hs, err := s.store.FlowHosts(ctx, within, limit)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.FlowHost, 0, len(hs))
	for _, h := range hs {
		out = append(out, toFlowHost(h))
	}
	return apigen.ListFlowHosts200JSONResponse(out), nil
}

// GetFlowHost implements GET /flows/hosts/{address}.
func (s *Server) GetFlowHost(ctx context.Context, req apigen.GetFlowHostRequestObject) (apigen.GetFlowHostResponseObject, error) {
	a, err := ParseAddr(req.Address)
	if err != nil {
		return apigen.GetFlowHost400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the address is malformed", fieldErr("address", err.Error())))}, nil
	}
	since, fe := flowSince(req.Params.Since)
	if fe != nil {
		return apigen.GetFlowHost400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the period is invalid", *fe))}, nil
	}
	h, err := s.store.FlowHostGet(ctx, a)
	if isNotFound(err) {
		return apigen.GetFlowHost404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no inside host "+a.String()+" was seen"))}, nil
	}
	if err != nil {
		return nil, err
	}
	pr, err := s.flowProfile(ctx, netip.PrefixFrom(a, a.BitLen()), since)
	if err != nil {
		return nil, err
	}
	return apigen.GetFlowHost200JSONResponse{Host: toFlowHost(h), Profile: toFlowProfile(pr)}, nil
}

// PutFlowHostLabel implements PUT /flows/hosts/{address}/label.
func (s *Server) PutFlowHostLabel(ctx context.Context, req apigen.PutFlowHostLabelRequestObject) (apigen.PutFlowHostLabelResponseObject, error) {
	a, err := ParseAddr(req.Address)
	if err != nil || req.Body == nil {
		fe := fieldErr("", "a JSON object is required")
		if err != nil {
			fe = fieldErr("address", err.Error())
		}
		return apigen.PutFlowHostLabel400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the label is invalid", fe))}, nil
	}
	h, err := s.store.FlowHostLabel(ctx, a, req.Body.Label, actorOf(ctx))
	if isNotFound(err) {
		return apigen.PutFlowHostLabel404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(problem(404, "no inside host "+a.String()+" was seen"))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.PutFlowHostLabel200JSONResponse(toFlowHost(h)), nil
}

// GetFlowNetworkProfile implements GET /flows/networks/{address}/{bits}.
func (s *Server) GetFlowNetworkProfile(ctx context.Context, req apigen.GetFlowNetworkProfileRequestObject) (apigen.GetFlowNetworkProfileResponseObject, error) {
	p, prob := netPrefix(req.Address, req.Bits)
	if prob != nil {
		return apigen.GetFlowNetworkProfile400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(*prob)}, nil
	}
	since, fe := flowSince(req.Params.Since)
	if fe != nil {
		return apigen.GetFlowNetworkProfile400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the period is invalid", *fe))}, nil
	}
	pr, err := s.flowProfile(ctx, p, since)
	if err != nil {
		return nil, err
	}
	return apigen.GetFlowNetworkProfile200JSONResponse(toFlowProfile(pr)), nil
}
