package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go4.org/netipx"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/export"
	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
)

// prefixBody is a formatted prefix list answer (deny, allow, named list),
// kept in textCache and written as is.
type prefixBody struct {
	body        []byte
	contentType string
	etag        string
	count       int
	advice      string
	version     int64 // the render's version; 0 for a named list
}

func (b *prefixBody) visit(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", b.contentType)
	h.Set("ETag", b.etag)
	h.Set("X-Muninn-Prefixes", strconv.Itoa(b.count))
	if b.advice != "" {
		h.Set("X-Muninn-Advice", b.advice)
	}
	if b.version != 0 {
		h.Set("X-Muninn-Render-Version", strconv.FormatInt(b.version, 10))
	}
	h.Set("Content-Length", strconv.Itoa(len(b.body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b.body)
	return err
}

// VisitGetRulesetDenyResponse writes the cached list.
func (b *prefixBody) VisitGetRulesetDenyResponse(w http.ResponseWriter) error { return b.visit(w) }

// VisitGetRulesetAllowResponse writes the cached list.
func (b *prefixBody) VisitGetRulesetAllowResponse(w http.ResponseWriter) error { return b.visit(w) }

// VisitGetListPrefixesResponse writes the cached list.
func (b *prefixBody) VisitGetListPrefixesResponse(w http.ResponseWriter) error { return b.visit(w) }

// textCache keeps, per list (deny/NAME, allow/NAME, list/NAME), the answers
// formatted from one source (a deny list of the hub, a compiled named list
// with its guard): a request asks the source, and only a new source is
// formatted again.
type textCache struct {
	mu    sync.Mutex
	slots map[string]*textSlot
}

type textSlot struct {
	src    any // comparable: the identity of what the prefixes came from
	v4, v6 []netip.Prefix
	advice string
	bodies map[textKey]*prefixBody
}

type textKey struct {
	format string
	family int
}

// answer returns the formatted answer of the list key for src, computing
// the prefixes with build (once per src) and the body once per format and family.
func (c *textCache) answer(key string, src any, version int64, format string, family int, build func() (v4, v6 []netip.Prefix, advice string, err error)) (*prefixBody, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slot := c.slots[key]
	if slot == nil || slot.src != src {
		v4, v6, advice, err := build()
		if err != nil {
			return nil, err
		}
		slot = &textSlot{src: src, v4: v4, v6: v6, advice: advice, bodies: map[textKey]*prefixBody{}}
		if c.slots == nil {
			c.slots = map[string]*textSlot{}
		}
		c.slots[key] = slot
	}
	k := textKey{format, family}
	if b, ok := slot.bodies[k]; ok {
		return b, nil
	}
	v4, v6 := slot.v4, slot.v6
	switch family {
	case 4:
		v6 = nil
	case 6:
		v4 = nil
	}
	kind, name, _ := strings.Cut(key, "/")
	if kind == "list-unguarded" {
		kind = string(export.KindList)
	}
	b := &prefixBody{contentType: "text/plain; charset=utf-8", count: len(v4) + len(v6), advice: slot.advice, version: version}
	var buf bytes.Buffer
	switch format {
	case "json":
		b.contentType = "application/json"
		if err := json.NewEncoder(&buf).Encode(prefixList(name, v4, v6)); err != nil {
			return nil, err
		}
	case "csv":
		b.contentType = "text/csv; charset=utf-8"
		buf.WriteString("prefix,family\n")
		for _, p := range v4 {
			buf.WriteString(p.String() + ",ipv4\n")
		}
		for _, p := range v6 {
			buf.WriteString(p.String() + ",ipv6\n")
		}
	default:
		var comments []string
		if slot.advice != "" {
			comments = append(comments, slot.advice)
		}
		noun := "prefixes"
		if b.count == 1 {
			noun = "prefix"
		}
		comments = append(comments, fmt.Sprintf("muninn %s: %d %s", key, b.count, noun))
		if err := export.WritePrefixes(&buf, export.Format(format), export.List{Kind: export.Kind(kind), Name: name, Comments: comments, V4: v4, V6: v6, Family: family}); err != nil {
			return nil, err
		}
	}
	b.body = buf.Bytes()
	sum := sha256.Sum256(b.body)
	b.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	slot.bodies[k] = b
	return b, nil
}

// denyList waits (up to 10 s) for the first render of ruleset name and
// returns its deny list; a nil list with a response when there is none.
func (s *Server) denyList(ctx context.Context, name string) (*render.DenyList, string, error) {
	if _, err := s.store.RulesetByName(ctx, name); isNotFound(err) {
		return nil, "404", nil
	} else if err != nil {
		return nil, "", err
	}
	// A ruleset just stored may not be rendered yet: give the hub a moment.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.opts.Render.Wait(wctx, name, 0) == nil {
		if ctx.Err() != nil {
			return nil, "", errClientGone
		}
		return nil, "503", nil
	}
	d, ok, err := s.opts.Render.Deny(ctx, name)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "503", nil
	}
	return d, "", nil
}

// denyAdvice is the note of a default-block ruleset's deny and allow lists.
func denyAdvice(d *render.DenyList, allowCount int) string {
	if d.Default != string(policy.ActionBlock) {
		return ""
	}
	return fmt.Sprintf("ruleset %s has default block: its deny list is the complement of what it allows (%d prefixes); a router that can allow a list and drop the rest should use /api/v1/rulesets/%s/allow (%d prefixes)",
		d.Ruleset, len(d.V4)+len(d.V6), d.Ruleset, allowCount)
}

// complement returns every address outside v4 and v6, as minimal CIDRs.
func complement(v4, v6 []netip.Prefix) (c4, c6 []netip.Prefix, err error) {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	b.AddPrefix(netip.PrefixFrom(netip.IPv6Unspecified(), 0))
	for _, ps := range [2][]netip.Prefix{v4, v6} {
		for _, p := range ps {
			b.RemovePrefix(p)
		}
	}
	set, err := b.IPSet()
	if err != nil {
		return nil, nil, fmt.Errorf("api: complement: %w", err)
	}
	for _, p := range set.Prefixes() {
		if p.Addr().Is4() {
			c4 = append(c4, p)
		} else {
			c6 = append(c6, p)
		}
	}
	return c4, c6, nil
}

// GetRulesetDeny implements GET /rulesets/{name}/deny: every prefix whose
// decision is block, minus the never-block guard, from the hub's current
// render (derived once per render version and guard, formatted once per
// format and family).
func (s *Server) GetRulesetDeny(ctx context.Context, req apigen.GetRulesetDenyRequestObject) (apigen.GetRulesetDenyResponseObject, error) {
	d, status, err := s.denyList(ctx, req.Name)
	switch {
	case err != nil:
		return nil, err
	case status == "404":
		return apigen.GetRulesetDeny404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + req.Name)}, nil
	case status == "503":
		return apigen.GetRulesetDeny503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: unavailable("the ruleset has not been rendered yet; try again")}, nil
	}
	b, err := s.texts.answer("deny/"+req.Name, d, d.Version, string(derefOr(req.Params.Format, apigen.PrefixFormatTxt)), int(deref(req.Params.Family)),
		func() ([]netip.Prefix, []netip.Prefix, string, error) {
			advice := ""
			if d.Default == string(policy.ActionBlock) {
				a4, a6, err := complement(d.V4, d.V6)
				if err != nil {
					return nil, nil, "", err
				}
				advice = denyAdvice(d, len(a4)+len(a6))
			}
			return d.V4, d.V6, advice, nil
		})
	if err != nil {
		return nil, err
	}
	if etagMatches(req.Params.IfNoneMatch, b.etag) {
		return apigen.GetRulesetDeny304Response{Headers: apigen.PrefixNotModifiedResponseHeaders{ETag: &b.etag}}, nil
	}
	return b, nil
}

// GetRulesetAllow implements GET /rulesets/{name}/allow: the complement of
// the deny list (so the guard is in it), for routers that allow a list and
// drop the rest.
func (s *Server) GetRulesetAllow(ctx context.Context, req apigen.GetRulesetAllowRequestObject) (apigen.GetRulesetAllowResponseObject, error) {
	d, status, err := s.denyList(ctx, req.Name)
	switch {
	case err != nil:
		return nil, err
	case status == "404":
		return apigen.GetRulesetAllow404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + req.Name)}, nil
	case status == "503":
		return apigen.GetRulesetAllow503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: unavailable("the ruleset has not been rendered yet; try again")}, nil
	}
	b, err := s.texts.answer("allow/"+req.Name, d, d.Version, string(derefOr(req.Params.Format, apigen.PrefixFormatTxt)), int(deref(req.Params.Family)),
		func() ([]netip.Prefix, []netip.Prefix, string, error) {
			a4, a6, err := complement(d.V4, d.V6)
			if err != nil {
				return nil, nil, "", err
			}
			return a4, a6, denyAdvice(d, len(a4)+len(a6)), nil
		})
	if err != nil {
		return nil, err
	}
	if etagMatches(req.Params.IfNoneMatch, b.etag) {
		return apigen.GetRulesetAllow304Response{Headers: apigen.PrefixNotModifiedResponseHeaders{ETag: &b.etag}}, nil
	}
	return b, nil
}

// listCache keeps the compiled prefixes of named lists per index snapshot
// and list definitions.
type listCache struct {
	mu      sync.Mutex
	entries map[string]*listEntry
}

type listEntry struct {
	gen    uint64
	key    string
	v4, v6 []netip.Prefix
}

// listPrefixes compiles named list name over the index's current snapshot
// (the list's selector alone over every entry), once per snapshot
// generation and list definitions.
func (s *Server) listPrefixes(ctx context.Context, name string) (*listEntry, error) {
	ls, err := s.store.Lists(ctx)
	if err != nil {
		return nil, err
	}
	var key bytes.Buffer
	for _, l := range ls {
		fmt.Fprintf(&key, "%s %q\n", l.Name, l.Selector)
	}
	snap := s.opts.Index.Snapshot()
	s.lists.mu.Lock()
	e, ok := s.lists.entries[name]
	s.lists.mu.Unlock()
	if ok && e.gen == snap.Gen() && e.key == key.String() {
		return e, nil
	}
	lists, err := render.ListSelectors(ctx, s.store)
	if err != nil {
		return nil, err
	}
	probe := &policy.Ruleset{Name: name, Rules: []policy.Rule{{Action: policy.ActionBlock,
		Conds: []policy.Cond{{Kind: policy.KindList, Values: []string{name}}}}}}
	facts := snap.Entries(render.NeedsGeo(probe.Rules[0].Conds, lists))
	facts.Lists = lists
	c, err := policy.Compile(probe, facts)
	if err != nil {
		return nil, fmt.Errorf("api: compile list %s: %w", name, err)
	}
	e = &listEntry{gen: snap.Gen(), key: key.String(), v4: c.Rules[0].Set.V4, v6: c.Rules[0].Set.V6}
	s.lists.mu.Lock()
	if s.lists.entries == nil {
		s.lists.entries = map[string]*listEntry{}
	}
	s.lists.entries[name] = e
	s.lists.mu.Unlock()
	return e, nil
}

// listSource is what a named list's answer is formatted from: the compiled
// list and the guard taken out of it (nil: guard=false).
type listSource struct {
	list  *listEntry
	guard *guard.Guard
}

// GetListPrefixes implements GET /lists/{name}/prefixes: every address the
// list's selector matches, as minimal CIDRs, minus the never-block guard
// unless guard=false (a list is often used to block: it must not block what
// renders never block).
func (s *Server) GetListPrefixes(ctx context.Context, req apigen.GetListPrefixesRequestObject) (apigen.GetListPrefixesResponseObject, error) {
	if _, err := s.store.ListByName(ctx, req.Name); isNotFound(err) {
		return apigen.GetListPrefixes404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no list named " + req.Name)}, nil
	} else if err != nil {
		return nil, err
	}
	e, err := s.listPrefixes(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	src := listSource{list: e}
	key := "list/" + req.Name
	if derefOr(req.Params.Guard, true) {
		if src.guard, err = s.opts.Render.Guard(ctx); err != nil {
			return nil, err
		}
	} else {
		key = "list-unguarded/" + req.Name
		s.log.InfoContext(ctx, "A named list was served without the never-block guard.", "list", req.Name, "actor", actorOf(ctx))
	}
	b, err := s.texts.answer(key, src, 0, string(derefOr(req.Params.Format, apigen.ListFormatTxt)), int(deref(req.Params.Family)),
		func() ([]netip.Prefix, []netip.Prefix, string, error) {
			if src.guard == nil {
				return e.v4, e.v6, "", nil
			}
			v4, v6, _ := src.guard.Filter(e.v4, e.v6, 0)
			return v4, v6, "", nil
		})
	if err != nil {
		return nil, err
	}
	if etagMatches(req.Params.IfNoneMatch, b.etag) {
		return apigen.GetListPrefixes304Response{Headers: apigen.PrefixNotModifiedResponseHeaders{ETag: &b.etag}}, nil
	}
	return b, nil
}
