package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
)

// cachedJSON is a 200 answer whose JSON body is already encoded (a cached
// render, a delta, a bouncer answer): it is written as is, gzip-compressed when
// the client accepts it (gz may hold the body compressed already). It
// implements the generated response interfaces of the operations that serve it.
type cachedJSON struct {
	body, gz []byte
	etag     string
	gzip     bool
}

// gzipMin is the smallest body compressed on the fly (bytes): below it gzip
// saves next to nothing (its framing alone is 18 bytes). A body compressed
// in advance (gz) is sent compressed whatever its size.
const gzipMin = 1024

// gzipWriters are reused compressors: setting one up costs about 1.2 MB and
// 1.5 ms, which made every CrowdSec stream pull (an almost empty answer,
// compressed because Go's client accepts gzip) cost the server about 2.4 ms of
// CPU (muninn-fanout, issue 14).
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // only fails on a bad level
	return zw
}}

func (c cachedJSON) visit(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Vary", "Accept-Encoding")
	if c.etag != "" {
		h.Set("ETag", c.etag)
	}
	body := c.body
	if c.gz == nil && len(c.body) < gzipMin {
		c.gzip = false
	}
	if c.gzip {
		if c.gz == nil {
			var buf bytes.Buffer
			zw := gzipWriters.Get().(*gzip.Writer)
			zw.Reset(&buf)
			_, _ = zw.Write(c.body)
			_ = zw.Close()
			gzipWriters.Put(zw)
			c.gz = buf.Bytes()
		}
		h.Set("Content-Encoding", "gzip")
		body = c.gz
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}

// VisitGetRulesetRenderResponse writes the cached render.
func (c cachedJSON) VisitGetRulesetRenderResponse(w http.ResponseWriter) error { return c.visit(w) }

// VisitGetBouncerRenderResponse writes the bouncer's answer.
func (c cachedJSON) VisitGetBouncerRenderResponse(w http.ResponseWriter) error { return c.visit(w) }

// notModified is a 304 with the render's ETag.
type notModified struct{ etag string }

// VisitGetRulesetRenderResponse writes the 304.
func (n notModified) VisitGetRulesetRenderResponse(w http.ResponseWriter) error {
	if n.etag != "" {
		w.Header().Set("ETag", n.etag)
	}
	w.WriteHeader(http.StatusNotModified)
	return nil
}

// errClientGone ends a long poll whose client went away; the HTTP layer writes nothing.
var errClientGone = context.Canceled

func unavailable(detail string) apigen.UnavailableApplicationProblemPlusJSONResponse {
	return apigen.UnavailableApplicationProblemPlusJSONResponse{Body: problem(http.StatusServiceUnavailable, detail), Headers: apigen.UnavailableResponseHeaders{RetryAfter: ptr(5)}}
}

// parseWait reads the wait parameter: a duration up to 5 minutes, 0 when absent.
func parseWait(v *string) (time.Duration, error) {
	if v == nil || *v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(*v)
	if err != nil || d < 0 || d > 5*time.Minute {
		return 0, errors.New("must be a duration such as \"30s\", at most 5m")
	}
	return d, nil
}

// GetRulesetRender implements GET /rulesets/{name}/render[?since=V&wait=30s]:
// the cached render (ETag = hash, gzip when accepted); with since, a long poll
// that answers as soon as the version is above V (a delta when V is still in
// memory and only set contents changed) or 304 at the deadline.
func (s *Server) GetRulesetRender(ctx context.Context, req apigen.GetRulesetRenderRequestObject) (apigen.GetRulesetRenderResponseObject, error) {
	name := req.Name
	wait, err := parseWait(req.Params.Wait)
	if err != nil {
		return apigen.GetRulesetRender400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the request is invalid", fieldErr("wait", err.Error()))}, nil
	}
	if _, err := s.store.RulesetByName(ctx, name); isNotFound(err) {
		return apigen.GetRulesetRender404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + name)}, nil
	} else if err != nil {
		return nil, err
	}
	gz := wantsGzip(ctx)
	hub := s.opts.Render
	if req.Params.Since == nil {
		// A ruleset just stored may not be rendered yet: give the hub a moment.
		wctx, cancel := context.WithTimeout(ctx, max(wait, 10*time.Second))
		defer cancel()
		snap := hub.Wait(wctx, name, 0)
		if snap == nil {
			if ctx.Err() != nil {
				return nil, errClientGone
			}
			detail := "the ruleset has not been rendered yet; try again"
			select {
			case <-hub.Draining():
				detail = "the server is shutting down; try again"
			default:
			}
			return apigen.GetRulesetRender503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: unavailable(detail)}, nil
		}
		etag := `"` + snap.Render.Hash + `"`
		if inm := deref(req.Params.IfNoneMatch); inm != "" && strings.Contains(inm, etag) {
			return notModified{etag: etag}, nil
		}
		return snapJSON(snap, etag, gz), nil
	}
	since := *req.Params.Since
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// A client ahead of the server (a restored or reset database) gets the
	// current render at once.
	if cur := hub.Latest(name); cur != nil && cur.Render.Version < since {
		since = 0
	}
	snap := hub.Wait(wctx, name, since)
	if snap == nil {
		if ctx.Err() != nil {
			return nil, errClientGone
		}
		return notModified{}, nil
	}
	if d, ok, err := hub.DeltaSince(name, since); err != nil {
		return nil, err
	} else if ok {
		return cachedJSON{body: d, gzip: gz}, nil
	}
	return snapJSON(snap, `"`+snap.Render.Hash+`"`, gz), nil
}

// snapJSON answers a cached render: its body, compressed (once per render, by the
// snapshot) when the client takes gzip.
func snapJSON(snap *render.Snapshot, etag string, gz bool) cachedJSON {
	c := cachedJSON{body: snap.Body(), etag: etag, gzip: gz}
	if gz {
		c.gz = snap.Gzip()
	}
	return c
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// GetRulesetDeny implements GET /rulesets/{name}/deny?format=txt|json: every
// prefix whose decision is block, minus the never-block guard, from the
// hub's current render (ETag: the render version).
func (s *Server) GetRulesetDeny(ctx context.Context, req apigen.GetRulesetDenyRequestObject) (apigen.GetRulesetDenyResponseObject, error) {
	if _, err := s.store.RulesetByName(ctx, req.Name); isNotFound(err) {
		return apigen.GetRulesetDeny404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no ruleset named " + req.Name)}, nil
	} else if err != nil {
		return nil, err
	}
	// A ruleset just stored may not be rendered yet: give the hub a moment.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.opts.Render.Wait(wctx, req.Name, 0) == nil {
		if ctx.Err() != nil {
			return nil, errClientGone
		}
		return apigen.GetRulesetDeny503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: unavailable("the ruleset has not been rendered yet; try again")}, nil
	}
	d, ok, err := s.opts.Render.Deny(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return apigen.GetRulesetDeny503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: unavailable("the ruleset has not been rendered yet; try again")}, nil
	}
	etag := fmt.Sprintf(`"%d"`, d.Version)
	if req.Params.Format != nil && *req.Params.Format == apigen.GetRulesetDenyParamsFormatJson {
		return apigen.GetRulesetDeny200JSONResponse{Body: prefixList(req.Name, d.V4, d.V6), Headers: apigen.GetRulesetDeny200ResponseHeaders{ETag: ptr(etag)}}, nil
	}
	return apigen.GetRulesetDeny200TextResponse{Body: prefixText(d.V4, d.V6), Headers: apigen.GetRulesetDeny200ResponseHeaders{ETag: ptr(etag)}}, nil
}

// listCache keeps the compiled prefixes of named lists per index snapshot
// and list definitions.
type listCache struct {
	mu      sync.Mutex
	entries map[string]listEntry
}

type listEntry struct {
	gen    uint64
	key    string
	v4, v6 []netip.Prefix
	etag   string
}

// listPrefixes compiles named list name over the index's current snapshot
// (the list's selector alone over every entry), once per snapshot
// generation and list definitions.
func (s *Server) listPrefixes(ctx context.Context, name string) (listEntry, error) {
	ls, err := s.store.Lists(ctx)
	if err != nil {
		return listEntry{}, err
	}
	var key strings.Builder
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
		return listEntry{}, err
	}
	probe := &policy.Ruleset{Name: name, Rules: []policy.Rule{{Action: policy.ActionBlock,
		Conds: []policy.Cond{{Kind: policy.KindList, Values: []string{name}}}}}}
	facts := snap.Entries(render.NeedsGeo(probe.Rules[0].Conds, lists))
	facts.Lists = lists
	c, err := policy.Compile(probe, facts)
	if err != nil {
		return listEntry{}, fmt.Errorf("api: compile list %s: %w", name, err)
	}
	e = listEntry{gen: snap.Gen(), key: key.String(), v4: c.Rules[0].Set.V4, v6: c.Rules[0].Set.V6}
	sum := sha256.Sum256([]byte(prefixText(e.v4, e.v6)))
	e.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	s.lists.mu.Lock()
	if s.lists.entries == nil {
		s.lists.entries = map[string]listEntry{}
	}
	s.lists.entries[name] = e
	s.lists.mu.Unlock()
	return e, nil
}

// GetListPrefixes implements GET /lists/{name}/prefixes?format=txt|json|csv:
// every address the list's selector matches, as minimal CIDRs (ETag: a hash
// of the prefixes).
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
	v4, v6 := e.v4, e.v6
	hdr := apigen.GetListPrefixes200ResponseHeaders{ETag: ptr(e.etag)}
	switch deref(req.Params.Format) {
	case apigen.GetListPrefixesParamsFormatJson:
		return apigen.GetListPrefixes200JSONResponse{Body: prefixList(req.Name, v4, v6), Headers: hdr}, nil
	case apigen.GetListPrefixesParamsFormatCsv:
		var b strings.Builder
		b.WriteString("prefix,family\n")
		for _, p := range v4 {
			b.WriteString(p.String() + ",ipv4\n")
		}
		for _, p := range v6 {
			b.WriteString(p.String() + ",ipv6\n")
		}
		return apigen.GetListPrefixes200TextcsvResponse{Body: strings.NewReader(b.String()), ContentLength: int64(b.Len()), Headers: hdr}, nil
	}
	return apigen.GetListPrefixes200TextResponse{Body: prefixText(v4, v6), Headers: hdr}, nil
}

func prefixList(name string, v4, v6 []netip.Prefix) apigen.PrefixList {
	strs := func(ps []netip.Prefix) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		return out
	}
	return apigen.PrefixList{Name: name, V4: strs(v4), V6: strs(v6)}
}

func prefixText(v4, v6 []netip.Prefix) string {
	var b strings.Builder
	for _, ps := range [][]netip.Prefix{v4, v6} {
		for _, p := range ps {
			b.WriteString(p.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}
