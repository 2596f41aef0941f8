package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// BouncerKeyPrefix starts every bouncer key.
const BouncerKeyPrefix = "mnb_"

// ListBouncers implements GET /bouncers: per bound ruleset the version the
// bouncer applied, the current one, and for how long it has been behind.
func (s *Server) ListBouncers(ctx context.Context, _ apigen.ListBouncersRequestObject) (apigen.ListBouncersResponseObject, error) {
	bs, err := s.store.Bouncers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apigen.Bouncer, 0, len(bs))
	for _, b := range bs {
		out = append(out, s.toBouncer(b))
	}
	return apigen.ListBouncers200JSONResponse(out), nil
}

// toBouncer reports a bouncer with its applied and current version per ruleset.
func (s *Server) toBouncer(b store.Bouncer) apigen.Bouncer {
	now := s.now()
	a := apigen.Bouncer{Id: b.ID, Name: b.Name, CreatedAt: b.CreatedAt, LastSeen: b.LastSeen,
		Hostname: ptr(b.Hostname), Version: ptr(b.Version), LastError: ptr(b.LastError), Rulesets: []apigen.BouncerRuleset{}}
	// Stored as the bouncer sent it; a body that does not decode is left out.
	var counters []apigen.RuleCounter
	if json.Unmarshal(b.Counters, &counters) == nil && counters != nil {
		a.Counters = &counters
	}
	for _, name := range b.Rulesets {
		br := apigen.BouncerRuleset{Ruleset: name, Applied: b.Applied[name], LagSeconds: ptr(float32(0))}
		if snap := s.opts.Render.Latest(name); snap != nil {
			br.Current = snap.Render.Version
			if br.Applied < br.Current {
				since := snap.Render.GeneratedAt
				if first := s.opts.Render.Base(name, br.Applied+1); first != nil {
					since = first.GeneratedAt
				}
				br.LagSeconds = ptr(float32(now.Sub(since).Seconds()))
			}
		}
		a.Rulesets = append(a.Rulesets, br)
	}
	return a
}

// unknownRulesets names the rulesets in names that do not exist.
func (s *Server) unknownRulesets(ctx context.Context, names []string) ([]apigen.FieldError, error) {
	var errs []apigen.FieldError
	for i, name := range names {
		if _, err := s.store.RulesetByName(ctx, name); isNotFound(err) {
			errs = append(errs, fieldErr(fmt.Sprintf("rulesets.%d", i), "no ruleset named "+name))
		} else if err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// PutBouncer implements PUT /bouncers/{name}: it changes the bound rulesets;
// the bouncer learns of them at its next poll.
func (s *Server) PutBouncer(ctx context.Context, req apigen.PutBouncerRequestObject) (apigen.PutBouncerResponseObject, error) {
	if req.Body == nil {
		return apigen.PutBouncer400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the bouncer is invalid", fieldErr("body", "a JSON object is required"))}, nil
	}
	errs, err := s.unknownRulesets(ctx, req.Body.Rulesets)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return apigen.PutBouncer400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the bouncer is invalid", errs...)}, nil
	}
	b, err := s.store.SetBouncerRulesets(ctx, req.Name, slices.Compact(slices.Clone(req.Body.Rulesets)), actorOf(ctx))
	if isNotFound(err) {
		return apigen.PutBouncer404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no bouncer named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.PutBouncer200JSONResponse(s.toBouncer(b)), nil
}

// CreateBouncer implements POST /bouncers; the key is returned once and only
// its hash is stored.
func (s *Server) CreateBouncer(ctx context.Context, req apigen.CreateBouncerRequestObject) (apigen.CreateBouncerResponseObject, error) {
	if req.Body == nil {
		return apigen.CreateBouncer400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the bouncer is invalid", fieldErr("body", "a JSON object is required"))}, nil
	}
	errs, err := s.unknownRulesets(ctx, req.Body.Rulesets)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return apigen.CreateBouncer400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the bouncer is invalid", errs...)}, nil
	}
	key := NewSecret(BouncerKeyPrefix)
	rulesets := slices.Compact(slices.Clone(req.Body.Rulesets))
	b, err := s.store.CreateBouncer(ctx, req.Body.Name, rulesets, store.HashSecret(key), actorOf(ctx))
	if errors.Is(err, store.ErrConflict) {
		return apigen.CreateBouncer409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: apigen.ConflictApplicationProblemPlusJSONResponse(problem(409, "a bouncer named "+req.Body.Name+" exists already"))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.CreateBouncer201JSONResponse{Id: b.ID, Name: b.Name, Rulesets: b.Rulesets, Key: key}, nil
}

// DeleteBouncer implements DELETE /bouncers/{name}.
func (s *Server) DeleteBouncer(ctx context.Context, req apigen.DeleteBouncerRequestObject) (apigen.DeleteBouncerResponseObject, error) {
	err := s.store.DeleteBouncer(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteBouncer404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no bouncer named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteBouncer204Response{}, nil
}

type bouncerKey struct{}

func bouncerFrom(ctx context.Context) store.Bouncer {
	b, _ := ctx.Value(bouncerKey{}).(store.Bouncer)
	return b
}

// BouncerAuth authenticates bouncer endpoints by the X-Api-Key header. Bouncer
// keys reach only the routes behind this middleware, and bearer tokens none of them.
func (s *Server) BouncerAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimSpace(r.Header.Get("X-Api-Key"))
		if key == "" {
			WriteProblem(w, http.StatusUnauthorized, "no credential: send X-Api-Key: <bouncer key>")
			return
		}
		b, err := s.store.BouncerByKeyHash(r.Context(), store.HashSecret(key))
		if isNotFound(err) {
			WriteProblem(w, http.StatusUnauthorized, "the bouncer key is not valid")
			return
		}
		if err != nil {
			s.log.ErrorContext(r.Context(), "Could not check a bouncer key.", "error", err)
			WriteProblem(w, http.StatusServiceUnavailable, "cannot check the credential now")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bouncerKey{}, b)))
	})
}

// parseWait reads the wait parameter: a duration up to 5 minutes, 0 when absent.
func parseWait(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > 5*time.Minute {
		return 0, errors.New("must be a duration such as \"30s\", at most 5m")
	}
	return d, nil
}

// bouncerRender implements GET /api/v1/bouncer/render: every ruleset bound to
// the bouncer that is newer than since (a JSON object ruleset -> version) as a
// delta when the base is still in memory, else in full; Removed names the
// rulesets in since the bouncer should no longer enforce. With nothing to say
// it waits up to wait and answers 304.
func (s *Server) bouncerRender(w http.ResponseWriter, r *http.Request) {
	b := bouncerFrom(r.Context())
	since := map[string]int64{}
	if v := r.URL.Query().Get("since"); v != "" {
		if err := json.Unmarshal([]byte(v), &since); err != nil {
			WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("since", "must be a JSON object of ruleset name to version"))
			return
		}
	}
	wait, err := parseWait(r)
	if err != nil {
		WriteProblem(w, http.StatusBadRequest, "the request is invalid", fieldErr("wait", err.Error()))
		return
	}
	if !s.renderReady(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	hub := s.opts.Render
	for {
		changed := hub.Changed()
		body, ok, err := s.bouncerAnswer(r.Context(), b, since)
		if err != nil {
			s.log.ErrorContext(r.Context(), "Could not answer a bouncer.", "bouncer", b.Name, "error", err)
			WriteProblem(w, http.StatusInternalServerError, "internal error; the server log has the details")
			return
		}
		if ok {
			writeJSON(w, r, body, nil, "")
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if r.Context().Err() == nil {
				w.WriteHeader(http.StatusNotModified)
			}
			return
		}
	}
}

func (s *Server) bouncerAnswer(ctx context.Context, b store.Bouncer, since map[string]int64) ([]byte, bool, error) {
	hub := s.opts.Render
	var parts []json.RawMessage
	removed := []string{}
	for name := range since {
		if !slices.Contains(b.Rulesets, name) {
			removed = append(removed, name)
			continue
		}
		if hub.Latest(name) != nil {
			continue
		}
		// No render: removed only if the ruleset is gone, not merely unrendered.
		if _, err := s.store.RulesetByName(ctx, name); isNotFound(err) {
			removed = append(removed, name)
		} else if err != nil {
			return nil, false, err
		}
	}
	slices.Sort(removed)
	for _, name := range b.Rulesets {
		snap := hub.Latest(name)
		if snap == nil {
			continue
		}
		have, known := since[name]
		// A bouncer ahead of the server (a restored or reset database) gets
		// the full render at once rather than waiting for versions to catch up.
		if snap.Render.Version == have {
			continue
		}
		if known && have > 0 {
			d, ok, err := hub.DeltaSince(name, have)
			if err != nil {
				return nil, false, err
			}
			if ok {
				parts = append(parts, d)
				continue
			}
		}
		parts = append(parts, snap.Body())
	}
	if len(parts) == 0 && len(removed) == 0 {
		return nil, false, nil
	}
	if parts == nil {
		parts = []json.RawMessage{}
	}
	body, err := json.Marshal(struct {
		Rulesets []json.RawMessage `json:"rulesets"`
		Removed  []string          `json:"removed"`
	}{parts, removed})
	if err != nil {
		return nil, false, fmt.Errorf("api: encode bouncer render: %w", err)
	}
	return body, true, nil
}

// renderReady waits (bounded by the request) until the render hub has loaded
// the stored renders, so a restart never answers "removed" or "deleted" for
// rulesets it merely has not loaded yet; it answers 503 when it gives up.
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

// decodeBody reads one JSON body of at most 1 MiB, rejecting unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			WriteProblem(w, http.StatusRequestEntityTooLarge, "the body is over 1 MiB")
			return false
		}
		WriteProblem(w, http.StatusBadRequest, "the body is not valid JSON for this endpoint", fieldErr("body", err.Error()))
		return false
	}
	return true
}

type heartbeat struct {
	Hostname  string           `json:"hostname"`
	Version   string           `json:"version"`
	Applied   map[string]int64 `json:"applied"`
	Counters  json.RawMessage  `json:"counters"`
	LastError string           `json:"last_error"`
}

// bouncerHeartbeat implements POST /api/v1/bouncer/heartbeat.
func (s *Server) bouncerHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb heartbeat
	if !decodeBody(w, r, &hb) {
		return
	}
	var counters []struct {
		Ruleset string `json:"ruleset"`
		RuleID  int64  `json:"rule_id"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
	}
	if len(hb.Counters) > 0 {
		dec := json.NewDecoder(bytes.NewReader(hb.Counters))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&counters); err != nil {
			WriteProblem(w, http.StatusBadRequest, "the heartbeat is invalid", fieldErr("counters", err.Error()))
			return
		}
	}
	b := bouncerFrom(r.Context())
	err := s.store.TouchBouncer(r.Context(), b.ID, store.BouncerHeartbeat{Hostname: hb.Hostname, Version: hb.Version,
		Applied: hb.Applied, Counters: hb.Counters, LastError: hb.LastError}, s.now())
	if err != nil {
		s.log.ErrorContext(r.Context(), "Could not store a heartbeat.", "bouncer", b.Name, "error", err)
		WriteProblem(w, http.StatusInternalServerError, "internal error; the server log has the details")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type honeypotHit struct {
	IP       string    `json:"ip"`
	Ruleset  string    `json:"ruleset"`
	Port     uint16    `json:"port"`
	Protocol string    `json:"protocol"`
	SeenAt   time.Time `json:"seen_at"`
}

// HoneypotTag is the tag a bouncer's honeypot report puts on a source.
const HoneypotTag = "honeypot"

// bouncerReports implements POST /api/v1/bouncer/reports: each honeypot hit
// becomes a honeypot tag from source bouncer:<name> with the honeypot TTL,
// stored through ingest, which announces the change and so re-renders.
func (s *Server) bouncerReports(w http.ResponseWriter, r *http.Request) {
	var rep struct {
		Honeypot []honeypotHit `json:"honeypot"`
	}
	if !decodeBody(w, r, &rep) {
		return
	}
	b := bouncerFrom(r.Context())
	now := s.now()
	var errs []apigen.FieldError
	obs := make([]store.Observation, 0, len(rep.Honeypot))
	for i, h := range rep.Honeypot {
		p, err := ParsePrefix(h.IP)
		if err != nil || !p.IsSingleIP() {
			errs = append(errs, fieldErr(fmt.Sprintf("honeypot.%d.ip", i), "must be one IP address"))
			continue
		}
		seen := h.SeenAt
		if seen.IsZero() || seen.After(now) {
			seen = now
		}
		exp := seen.Add(s.opts.HoneypotTTL)
		obs = append(obs, store.Observation{Prefix: p, Source: "bouncer:" + b.Name, Tags: []string{HoneypotTag}, SeenAt: seen, ExpiresAt: &exp})
	}
	if len(errs) > 0 {
		WriteProblem(w, http.StatusBadRequest, "the report is invalid", errs...)
		return
	}
	if err := s.store.Ingest(r.Context(), obs, "bouncer:"+b.Name); err != nil {
		s.log.ErrorContext(r.Context(), "Could not store a honeypot report.", "bouncer", b.Name, "error", err)
		WriteProblem(w, http.StatusInternalServerError, "internal error; the server log has the details")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = fmt.Fprintf(w, "{\"accepted\":%d}\n", len(obs))
}

// writeJSON writes a JSON body, gzip-compressed when the client accepts it;
// gz may hold the body already compressed.
func writeJSON(w http.ResponseWriter, r *http.Request, body, gz []byte, etag string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Vary", "Accept-Encoding")
	if etag != "" {
		h.Set("ETag", etag)
	}
	if acceptsGzip(r) {
		if gz == nil {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // only fails on a bad level
			_, _ = zw.Write(body)
			_ = zw.Close()
			gz = buf.Bytes()
		}
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", fmt.Sprint(len(gz)))
		_, _ = w.Write(gz)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	_, _ = io.Copy(w, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
