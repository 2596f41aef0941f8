package api

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/store"
)

// CrowdSecRoutes adds the CrowdSec-compatible bouncer API (mount at
// /crowdsec/v1): existing CrowdSec bouncers enforce the deny lists of the
// rulesets bound to their muninn bouncer key.
func (s *Server) CrowdSecRoutes(r chi.Router) {
	r.Use(s.crowdSecAuth)
	r.Get("/decisions/stream", s.crowdSecStream)
	r.Get("/decisions", s.crowdSecDecisions)
}

// decision is a CrowdSec LAPI decision.
type decision struct {
	ID       int64  `json:"id"`
	UUID     string `json:"uuid"`
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Scenario string `json:"scenario"`
	Duration string `json:"duration"`
}

// decisionDuration is long because muninn deletes decisions explicitly; a
// CrowdSec bouncer would otherwise drop a ban that is still in force.
const decisionDuration = "8760h0m0s"

func newDecision(prefix netip.Prefix, scenario string) decision {
	sum := sha256.Sum256([]byte(prefix.String() + "|" + scenario))
	d := decision{
		// A stable id per value and scenario, positive and within a JSON-safe range.
		ID:     int64(binary.BigEndian.Uint64(sum[:8]) >> 11),
		UUID:   fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16]),
		Origin: "muninn", Type: "ban", Scope: "Range", Value: prefix.String(), Scenario: scenario, Duration: decisionDuration,
	}
	if prefix.IsSingleIP() {
		d.Scope, d.Value = "Ip", prefix.Addr().String()
	}
	return d
}

// currentDecisions is the union of the block sets of the bouncer's rulesets
// (already without the guarded addresses), keyed by value; the first ruleset
// bound to the bouncer names the scenario of a value several rulesets block.
func (s *Server) currentDecisions(rulesets []string) (map[string]decision, []string) {
	out := map[string]decision{}
	var order []string
	for _, name := range rulesets {
		snap := s.opts.Render.Latest(name)
		if snap == nil {
			continue
		}
		for _, rule := range snap.Render.Rules {
			if rule.Action != "block" {
				continue
			}
			scenario := fmt.Sprintf("muninn/%s/rule-%d", name, rule.ID)
			for _, set := range [][]string{rule.V4, rule.V6} {
				for _, v := range set {
					p, err := netip.ParsePrefix(v)
					if err != nil {
						continue
					}
					d := newDecision(p, scenario)
					if _, ok := out[d.Value]; !ok {
						out[d.Value] = d
						order = append(order, d.Value)
					}
				}
			}
		}
	}
	return out, order
}

// crowdSecStream implements GET /crowdsec/v1/decisions/stream: with
// startup=true every decision, otherwise what is new and what was deleted
// since the previous pull of this bouncer (the cursor is kept server side).
// A pull when no bound render changed costs one small query.
func (s *Server) crowdSecStream(w http.ResponseWriter, r *http.Request) {
	b := bouncerFrom(r.Context())
	startup := false
	if v := r.URL.Query().Get("startup"); v != "" {
		var err error
		if startup, err = strconv.ParseBool(v); err != nil {
			WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("startup", "must be true or false"))
			return
		}
	}
	if !s.renderReady(w, r) {
		return
	}
	versions := map[string]int64{}
	for _, name := range b.Rulesets {
		if snap := s.opts.Render.Latest(name); snap != nil {
			versions[name] = snap.Render.Version
			continue
		}
		// Without a render the decisions of an existing ruleset are unknown,
		// not empty: answering would delete them from the bouncer.
		if _, err := s.store.RulesetByName(r.Context(), name); err == nil {
			w.Header().Set("Retry-After", "5")
			WriteProblem(w, http.StatusServiceUnavailable, "ruleset "+name+" has not been rendered yet; try again")
			return
		} else if !isNotFound(err) {
			s.fault(w, r, err)
			return
		}
	}
	resp := struct {
		New     []decision `json:"new"`
		Deleted []decision `json:"deleted"`
	}{New: []decision{}, Deleted: []decision{}}
	prev := store.CrowdSecCursor{Sent: map[string]string{}}
	if !startup {
		c, err := s.store.CrowdSecCursor(r.Context(), b.ID, false)
		if err != nil {
			s.fault(w, r, err)
			return
		}
		if maps.Equal(c.Versions, versions) && len(c.Versions) > 0 {
			s.writeDecisions(w, r, resp)
			return
		}
		if prev, err = s.store.CrowdSecCursor(r.Context(), b.ID, true); err != nil {
			s.fault(w, r, err)
			return
		}
	}
	cur, order := s.currentDecisions(b.Rulesets)
	next := store.CrowdSecCursor{Versions: versions, Sent: make(map[string]string, len(cur))}
	for _, v := range order {
		d := cur[v]
		next.Sent[v] = d.Scenario
		if scenario, ok := prev.Sent[v]; !ok || scenario != d.Scenario {
			resp.New = append(resp.New, d)
		}
	}
	var gone []string
	for v := range prev.Sent {
		if _, ok := cur[v]; !ok {
			gone = append(gone, v)
		}
	}
	slices.Sort(gone)
	for _, v := range gone {
		p, err := ParsePrefix(v)
		if err != nil {
			s.fault(w, r, fmt.Errorf("api: sent decision %q: %w", v, err))
			return
		}
		resp.Deleted = append(resp.Deleted, newDecision(p, prev.Sent[v]))
	}
	if err := s.store.SetCrowdSecCursor(r.Context(), b.ID, next); err != nil {
		s.fault(w, r, err)
		return
	}
	s.writeDecisions(w, r, resp)
}

func (s *Server) writeDecisions(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.fault(w, r, fmt.Errorf("api: encode decisions: %w", err))
		return
	}
	writeJSON(w, r, body)
}

// crowdSecDecisions implements GET /crowdsec/v1/decisions?ip=A: the decisions
// whose value contains A, or JSON null when there are none (as CrowdSec answers).
func (s *Server) crowdSecDecisions(w http.ResponseWriter, r *http.Request) {
	b := bouncerFrom(r.Context())
	var addr netip.Addr
	if v := r.URL.Query().Get("ip"); v != "" {
		a, err := ParseAddr(v)
		if err != nil {
			WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("ip", err.Error()))
			return
		}
		addr = a
	}
	if !s.renderReady(w, r) {
		return
	}
	cur, order := s.currentDecisions(b.Rulesets)
	var out []decision
	for _, v := range order {
		d := cur[v]
		if addr.IsValid() {
			p, err := ParsePrefix(d.Value)
			if err != nil || !p.Contains(addr) {
				continue
			}
		}
		out = append(out, d)
	}
	s.writeDecisions(w, r, out) // nil encodes as null, as CrowdSec answers
}

// crowdSecAuth authenticates the CrowdSec API by a bouncer key in X-Api-Key,
// as CrowdSec's LAPI does; only bouncer keys reach it.
func (s *Server) crowdSecAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.AuthenticateBouncer(r.Context(), strings.TrimSpace(r.Header.Get("X-Api-Key")))
		switch {
		case errors.Is(err, errNoBouncerKey), errors.Is(err, errBadBouncerKey):
			WriteProblem(w, http.StatusUnauthorized, err.Error())
			return
		case err != nil:
			s.log.ErrorContext(r.Context(), "Could not check a bouncer key.", "error", err)
			WriteProblem(w, http.StatusServiceUnavailable, "cannot check the credential now")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithBouncer(r.Context(), b)))
	})
}

func bouncerFrom(ctx context.Context) store.Bouncer {
	b, _ := BouncerFrom(ctx)
	return b
}

// renderReady waits (bounded by the request) until the render hub has loaded
// the stored renders; it answers 503 when it gives up.
func (s *Server) renderReady(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if s.opts.Render.WaitReady(ctx) {
		return true
	}
	if r.Context().Err() == nil {
		w.Header().Set("Retry-After", "5")
		WriteProblem(w, http.StatusServiceUnavailable, "the renders are still loading; try again")
	}
	return false
}

func (s *Server) fault(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "Request failed.", "path", r.URL.Path, "error", err)
	WriteProblem(w, http.StatusInternalServerError, "internal error; the server log has the details")
}

// writeJSON writes a JSON body, gzip-compressed when the client accepts it.
func writeJSON(w http.ResponseWriter, r *http.Request, body []byte) {
	_ = cachedJSON{body: body, gzip: acceptsGzip(r.Header.Get("Accept-Encoding"))}.visit(w)
}
