package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
			// Lag is the time since the bouncer last confirmed the version
			// current at the time: it keeps growing while a bouncer is dead,
			// new renders or not.
			since := b.CreatedAt
			if t, ok := b.Confirmed[name]; ok {
				since = t
			}
			br.LagSeconds = ptr(float32(max(0, now.Sub(since).Seconds())))
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
			errs = append(errs, fieldErr(fmt.Sprintf("/rulesets/%d", i), "no ruleset named "+name))
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
		return apigen.PutBouncer400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the bouncer is invalid", fieldErr("", "a JSON object is required"))}, nil
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
		return apigen.CreateBouncer400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the bouncer is invalid", fieldErr("", "a JSON object is required"))}, nil
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

// BouncerFrom returns the bouncer whose key authenticated the request.
func BouncerFrom(ctx context.Context) (store.Bouncer, bool) {
	b, ok := ctx.Value(bouncerKey{}).(store.Bouncer)
	return b, ok
}

type bouncerKey struct{}

// WithBouncer returns ctx carrying the authenticated bouncer.
func WithBouncer(ctx context.Context, b store.Bouncer) context.Context {
	return context.WithValue(ctx, bouncerKey{}, b)
}

// AuthenticateBouncer resolves a bouncer key to its bouncer; ErrBadToken when
// no bouncer has it.
func (s *Server) AuthenticateBouncer(ctx context.Context, key string) (store.Bouncer, error) {
	if key == "" {
		return store.Bouncer{}, errNoBouncerKey
	}
	b, err := s.store.BouncerByKeyHash(ctx, store.HashSecret(key))
	if isNotFound(err) {
		return store.Bouncer{}, errBadBouncerKey
	}
	return b, err
}

var (
	errNoBouncerKey  = errors.New("no credential: send X-Api-Key: <bouncer key>")
	errBadBouncerKey = errors.New("the bouncer key is not valid")
)

// GetBouncerRender implements GET /bouncer/render: every ruleset bound to
// the bouncer that is newer than since (a JSON object ruleset -> version) as a
// delta when the base is still in memory, else in full; Removed names the
// rulesets in since the bouncer should no longer enforce. With nothing to say
// it waits up to wait and answers 304.
func (s *Server) GetBouncerRender(ctx context.Context, req apigen.GetBouncerRenderRequestObject) (apigen.GetBouncerRenderResponseObject, error) {
	b, _ := BouncerFrom(ctx)
	since := map[string]int64{}
	if v := deref(req.Params.Since); v != "" {
		if err := json.Unmarshal([]byte(v), &since); err != nil {
			return apigen.GetBouncerRender400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the request is invalid", fieldErr("since", "must be a JSON object of ruleset name to version"))}, nil
		}
	}
	wait, err := parseWait(req.Params.Wait)
	if err != nil {
		return apigen.GetBouncerRender400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the request is invalid", fieldErr("wait", err.Error()))}, nil
	}
	// Wait (bounded) until the hub has loaded the stored renders, so a restart
	// never answers "removed" for rulesets it merely has not loaded yet.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ready := s.opts.Render.WaitReady(rctx)
	cancel()
	if !ready {
		if ctx.Err() != nil {
			return nil, errClientGone
		}
		return apigen.GetBouncerRender503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: unavailable("the renders are still loading; try again")}, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	hub := s.opts.Render
	for {
		changed := hub.Changed()
		body, ok, err := s.bouncerAnswer(ctx, b, since)
		if err != nil {
			return nil, fmt.Errorf("api: answer bouncer %s: %w", b.Name, err)
		}
		if ok {
			return cachedJSON{body: body}, nil
		}
		// At the deadline, or at once when the server shuts down, the
		// answer is "nothing new" and the bouncer polls again.
		if !hub.Await(wctx, changed) {
			if ctx.Err() != nil {
				return nil, errClientGone
			}
			return apigen.GetBouncerRender304Response{}, nil
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

// PostBouncerHeartbeat implements POST /bouncer/heartbeat.
func (s *Server) PostBouncerHeartbeat(ctx context.Context, req apigen.PostBouncerHeartbeatRequestObject) (apigen.PostBouncerHeartbeatResponseObject, error) {
	hb := req.Body
	counters, err := json.Marshal(hb.Counters)
	if err != nil {
		return nil, fmt.Errorf("api: heartbeat: encode counters: %w", err)
	}
	b, _ := BouncerFrom(ctx)
	// The rulesets at their current version are confirmed now (lag restarts).
	var current []string
	for name, v := range hb.Applied {
		if snap := s.opts.Render.Latest(name); snap != nil && v >= snap.Render.Version {
			current = append(current, name)
		}
	}
	slices.Sort(current)
	err = s.store.TouchBouncer(ctx, b.ID, store.BouncerHeartbeat{Hostname: hb.Hostname, Version: hb.Version,
		Applied: hb.Applied, Counters: counters, LastError: hb.LastError, Current: current}, s.now())
	if err != nil {
		return nil, fmt.Errorf("api: store heartbeat of %s: %w", b.Name, err)
	}
	return apigen.PostBouncerHeartbeat204Response{}, nil
}

// HoneypotTag is the tag a bouncer's honeypot report puts on a source.
const HoneypotTag = "honeypot"

// PostBouncerReports implements POST /bouncer/reports: each honeypot hit
// becomes a honeypot tag from source bouncer:<name> with the honeypot TTL,
// stored through ingest, which announces the change and so re-renders.
func (s *Server) PostBouncerReports(ctx context.Context, req apigen.PostBouncerReportsRequestObject) (apigen.PostBouncerReportsResponseObject, error) {
	b, _ := BouncerFrom(ctx)
	now := s.now()
	var errs []apigen.FieldError
	obs := make([]store.Observation, 0, len(req.Body.Honeypot))
	for i, h := range req.Body.Honeypot {
		p, err := ParsePrefix(h.IP)
		if err != nil || !p.IsSingleIP() {
			errs = append(errs, fieldErr(fmt.Sprintf("/honeypot/%d/ip", i), "must be one IP address"))
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
		return apigen.PostBouncerReports400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the report is invalid", errs...)}, nil
	}
	if err := s.store.Ingest(ctx, obs, "bouncer:"+b.Name); err != nil {
		return nil, fmt.Errorf("api: store honeypot report of %s: %w", b.Name, err)
	}
	if err := s.catchUp(ctx); err != nil {
		return nil, err
	}
	return apigen.PostBouncerReports202JSONResponse{Accepted: len(obs)}, nil
}
