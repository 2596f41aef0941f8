package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
)

// RenderRoutes adds the hand-written ruleset endpoints that serve cached bytes,
// long polls and plain lists; r is already behind bearer authentication.
func (s *Server) RenderRoutes(r chi.Router) {
	r.With(needRole(RoleReader)).Get("/rulesets/{name}/render", s.serveRender)
	r.With(needRole(RoleReader)).Get("/rulesets/{name}/deny", s.serveDeny)
	r.With(needRole(RoleReader)).Get("/lists/{name}/prefixes", s.serveListPrefixes)
}

// BouncerRoutes adds the bouncer-key endpoints (mount at /api/v1/bouncer).
func (s *Server) BouncerRoutes(r chi.Router) {
	r.Use(s.BouncerAuth)
	r.Get("/render", s.bouncerRender)
	r.Post("/heartbeat", s.bouncerHeartbeat)
	r.Post("/reports", s.bouncerReports)
}

// needRole answers 403 unless the caller's role is at least role.
func needRole(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := PrincipalFrom(r.Context())
			if RoleRank(p.Role) < RoleRank(role) {
				WriteProblem(w, http.StatusForbidden, "this needs the "+role+" role; "+p.Name+" has "+p.Role)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// serveRender implements GET /rulesets/{name}/render[?since=V&wait=30s]: the
// cached render (ETag = hash, gzip when accepted); with since, a long poll
// that answers as soon as the version is above V (a delta when V is still in
// memory and only set contents changed) or 304 at the deadline.
func (s *Server) serveRender(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	q := r.URL.Query()
	var since int64 = -1
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("since", "must be a version number"))
			return
		}
		since = n
	}
	wait, err := parseWait(r)
	if err != nil {
		WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("wait", err.Error()))
		return
	}
	if _, err := s.store.RulesetByName(r.Context(), name); isNotFound(err) {
		WriteProblem(w, http.StatusNotFound, "no ruleset named "+name)
		return
	} else if err != nil {
		s.fault(w, r, err)
		return
	}
	hub := s.opts.Render
	if since < 0 {
		// A ruleset just stored may not be rendered yet: give the hub a moment.
		ctx, cancel := context.WithTimeout(r.Context(), max(wait, 10*time.Second))
		defer cancel()
		snap := hub.Wait(ctx, name, 0)
		if snap == nil {
			if r.Context().Err() == nil {
				WriteProblem(w, http.StatusServiceUnavailable, "the ruleset has not been rendered yet; try again")
			}
			return
		}
		etag := `"` + snap.Render.Hash + `"`
		if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, etag) {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeJSON(w, r, snap.Body(), snap.Gzip(), etag)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	// A client ahead of the server (a restored or reset database) gets the
	// current render at once.
	if cur := hub.Latest(name); cur != nil && cur.Render.Version < since {
		since = 0
	}
	snap := hub.Wait(ctx, name, since)
	if snap == nil {
		if r.Context().Err() == nil {
			w.WriteHeader(http.StatusNotModified)
		}
		return
	}
	if d, ok, err := hub.DeltaSince(name, since); err != nil {
		s.fault(w, r, err)
		return
	} else if ok {
		writeJSON(w, r, d, nil, "")
		return
	}
	writeJSON(w, r, snap.Body(), snap.Gzip(), `"`+snap.Render.Hash+`"`)
}

func (s *Server) fault(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "Request failed.", "path", r.URL.Path, "error", err)
	WriteProblem(w, http.StatusInternalServerError, "internal error; the server log has the details")
}

// compileNow compiles rs over the current facts and lists.
func (s *Server) compileNow(ctx context.Context, rs *policy.Ruleset) (*policy.Compiled, error) {
	lists, err := render.ListSelectors(ctx, s.store)
	if err != nil {
		return nil, err
	}
	load := s.store.FactsWithoutGeo
	for _, r := range rs.Rules {
		if render.NeedsGeo(r.Conds, lists) {
			load = s.store.Facts
		}
	}
	facts, err := load(ctx, s.now())
	if err != nil {
		return nil, err
	}
	facts.Lists = lists
	return policy.Compile(rs, facts)
}

// serveDeny implements GET /rulesets/{name}/deny?format=txt|json: every
// prefix whose decision is block, minus the never-block guard.
func (s *Server) serveDeny(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	format, ok := listFormat(w, r, "txt", "json")
	if !ok {
		return
	}
	stored, err := s.store.RulesetByName(r.Context(), name)
	if isNotFound(err) {
		WriteProblem(w, http.StatusNotFound, "no ruleset named "+name)
		return
	}
	if err != nil {
		s.fault(w, r, err)
		return
	}
	rs, err := policy.Parse(stored.Text)
	if err != nil {
		s.fault(w, r, fmt.Errorf("api: stored ruleset %s: %w", name, err))
		return
	}
	c, err := s.compileNow(r.Context(), rs)
	if err != nil {
		s.fault(w, r, err)
		return
	}
	g, err := s.opts.Render.Guard(r.Context())
	if err != nil {
		s.fault(w, r, err)
		return
	}
	v4, v6 := policy.DenyList(c)
	v4, v6, _ = g.Filter(v4, v6, 0)
	writeList(w, r, name, format, v4, v6)
}

// serveListPrefixes implements GET /lists/{name}/prefixes?format=txt|json|csv:
// every address the list's selector matches, as minimal CIDRs.
func (s *Server) serveListPrefixes(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	format, ok := listFormat(w, r, "txt", "json", "csv")
	if !ok {
		return
	}
	if _, err := s.store.ListByName(r.Context(), name); isNotFound(err) {
		WriteProblem(w, http.StatusNotFound, "no list named "+name)
		return
	} else if err != nil {
		s.fault(w, r, err)
		return
	}
	probe := &policy.Ruleset{Name: name, Rules: []policy.Rule{{Action: policy.ActionBlock,
		Conds: []policy.Cond{{Kind: policy.KindList, Values: []string{name}}}}}}
	c, err := s.compileNow(r.Context(), probe)
	if err != nil {
		s.fault(w, r, err)
		return
	}
	writeList(w, r, name, format, c.Rules[0].Set.V4, c.Rules[0].Set.V6)
}

func listFormat(w http.ResponseWriter, r *http.Request, allowed ...string) (string, bool) {
	f := r.URL.Query().Get("format")
	if f == "" {
		f = allowed[0]
	}
	for _, a := range allowed {
		if f == a {
			return f, true
		}
	}
	WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("format", "must be one of "+strings.Join(allowed, ", ")))
	return "", false
}

func writeList(w http.ResponseWriter, r *http.Request, name, format string, v4, v6 []netip.Prefix) {
	var b strings.Builder
	switch format {
	case "json":
		body, err := json.Marshal(struct {
			Name string         `json:"name"`
			V4   []netip.Prefix `json:"v4"`
			V6   []netip.Prefix `json:"v6"`
		}{name, nonNilPrefixes(v4), nonNilPrefixes(v6)})
		if err != nil {
			WriteProblem(w, http.StatusInternalServerError, "internal error")
			return
		}
		writeJSON(w, r, body, nil, "")
		return
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		b.WriteString("prefix,family\n")
		for _, p := range v4 {
			b.WriteString(p.String() + ",ipv4\n")
		}
		for _, p := range v6 {
			b.WriteString(p.String() + ",ipv6\n")
		}
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, ps := range [][]netip.Prefix{v4, v6} {
			for _, p := range ps {
				b.WriteString(p.String())
				b.WriteByte('\n')
			}
		}
	}
	_, _ = w.Write([]byte(b.String()))
}

func nonNilPrefixes(ps []netip.Prefix) []netip.Prefix {
	if ps == nil {
		return []netip.Prefix{}
	}
	return ps
}
