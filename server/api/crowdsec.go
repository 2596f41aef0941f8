package api

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"
)

// CrowdSecRoutes adds the CrowdSec-compatible bouncer API (mount at
// /crowdsec/v1): existing CrowdSec bouncers enforce the deny lists of the
// rulesets bound to their muninn bouncer key.
func (s *Server) CrowdSecRoutes(r chi.Router) {
	r.Use(s.BouncerAuth)
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
	cur, order := s.currentDecisions(b.Rulesets)
	sent := map[string]json.RawMessage{}
	if !startup {
		var err error
		if sent, err = s.store.CrowdSecCursor(r.Context(), b.ID); err != nil {
			s.fault(w, r, err)
			return
		}
	}
	resp := struct {
		New     []decision `json:"new"`
		Deleted []decision `json:"deleted"`
	}{New: []decision{}, Deleted: []decision{}}
	next := make(map[string]json.RawMessage, len(cur))
	for _, v := range order {
		d := cur[v]
		raw, err := json.Marshal(d)
		if err != nil {
			s.fault(w, r, fmt.Errorf("api: encode decision: %w", err))
			return
		}
		next[v] = raw
		// Compare decoded: the cursor is jsonb, which reorders keys.
		var prev decision
		if old, ok := sent[v]; !ok || json.Unmarshal(old, &prev) != nil || prev != d {
			resp.New = append(resp.New, d)
		}
	}
	var gone []string
	for v := range sent {
		if _, ok := cur[v]; !ok {
			gone = append(gone, v)
		}
	}
	slices.Sort(gone)
	for _, v := range gone {
		var d decision
		if err := json.Unmarshal(sent[v], &d); err != nil {
			s.fault(w, r, fmt.Errorf("api: decode sent decision: %w", err))
			return
		}
		resp.Deleted = append(resp.Deleted, d)
	}
	if err := s.store.SetCrowdSecCursor(r.Context(), b.ID, next); err != nil {
		s.fault(w, r, err)
		return
	}
	body, err := json.Marshal(resp)
	if err != nil {
		s.fault(w, r, fmt.Errorf("api: encode decisions: %w", err))
		return
	}
	writeJSON(w, r, body, nil, "")
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
	body, err := json.Marshal(out) // nil marshals as null
	if err != nil {
		s.fault(w, r, fmt.Errorf("api: encode decisions: %w", err))
		return
	}
	writeJSON(w, r, body, nil, "")
}
