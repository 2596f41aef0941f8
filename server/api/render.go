package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
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
		if etagMatches(req.Params.IfNoneMatch, etag) {
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

// etagMatches reports whether the If-None-Match header inm matches etag,
// the current ETag of a resource that exists (RFC 9110 §13.1.2): "*", or a
// comma-separated list of entity tags one of which equals etag by weak
// comparison (W/"x" matches "x"). A malformed header matches nothing (the
// client gets the whole answer).
func etagMatches(inm *string, etag string) bool {
	if inm == nil {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	h := strings.TrimSpace(*inm)
	if h == "*" {
		return true
	}
	found := false
	for h != "" {
		h = strings.TrimLeft(h, " \t,")
		if h == "" {
			break
		}
		h = strings.TrimPrefix(h, "W/")
		if h == "" || h[0] != '"' {
			return false
		}
		end := strings.IndexByte(h[1:], '"')
		if end < 0 {
			return false
		}
		found = found || h[:end+2] == want
		h = strings.TrimLeft(h[end+2:], " \t")
		if h != "" && h[0] != ',' {
			return false
		}
	}
	return found
}

func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
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
