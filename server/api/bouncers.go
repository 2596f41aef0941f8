package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
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
		Hostname: ptr(b.Hostname), Version: ptr(b.Version), LastError: ptr(b.LastError), Rulesets: []apigen.BouncerRuleset{},
		Compatibility: ptr(apigen.BouncerCompatibility(BouncerCompatibility(s.opts.Version, b.Version)))}
	// Stored as the bouncer sent it; a body that does not decode is left out.
	var counters []apigen.RuleCounter
	if json.Unmarshal(b.Counters, &counters) == nil && counters != nil {
		a.Counters = &counters
	}
	a.Crowdsec = &apigen.CrowdSecSettings{Expand: apigen.CrowdSecSettingsExpand(b.CrowdSec.Expand), V4Bits: b.CrowdSec.V4Bits, V6Bits: b.CrowdSec.V6Bits}
	a.WideRanges = ptr(b.WideRanges)
	usage := make([]apigen.UsageCounter, 0, len(b.Usage))
	for _, u := range b.Usage {
		usage = append(usage, apigen.UsageCounter{Name: u.Name, Unit: u.Unit, Origin: u.Origin, Remediation: u.Remediation, Value: u.Value})
	}
	a.Usage = &usage
	for _, name := range b.Rulesets {
		br := apigen.BouncerRuleset{Ruleset: name, Applied: b.Applied[name], LagSeconds: ptr(float32(0))}
		if snap := s.opts.Render.Latest(name); snap != nil {
			br.Current = snap.Render.Version
			br.LagSeconds = ptr(float32(b.Lag(name, now).Seconds()))
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
	// The bouncer's cached key lookup (its rulesets) is stale now.
	defer s.auth.Forget()
	if isNotFound(err) {
		return apigen.PutBouncer404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no bouncer named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	if cs := req.Body.Crowdsec; cs != nil {
		// The contract bounds the widths (an expansion yields at most 65,536 addresses per range).
		b, err = s.store.SetBouncerCrowdSec(ctx, req.Name, store.CrowdSecSettings{Expand: string(cs.Expand), V4Bits: cs.V4Bits, V6Bits: cs.V6Bits}, actorOf(ctx))
		if isNotFound(err) {
			return apigen.PutBouncer404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no bouncer named " + req.Name)}, nil
		}
		if err != nil {
			return nil, err
		}
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
	s.auth.Forget() // its key stops working here at once, elsewhere within cacheTTL
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

// WithBouncer returns ctx carrying the authenticated bouncer, and names it in
// the request's access note (AccessNote) when ctx has one.
func WithBouncer(ctx context.Context, b store.Bouncer) context.Context {
	noteCaller(ctx, "bouncer", b.Name)
	return context.WithValue(ctx, bouncerKey{}, b)
}

// AuthenticateBouncer resolves a bouncer key to its bouncer as stored at most
// cacheTTL ago (Authenticator.Bouncer); errBadBouncerKey when no bouncer has
// it.
func (s *Server) AuthenticateBouncer(ctx context.Context, key string) (store.Bouncer, error) {
	if key == "" {
		return store.Bouncer{}, errNoBouncerKey
	}
	b, err := s.auth.Bouncer(ctx, key)
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
	before, err := s.store.TouchBouncer(ctx, b.ID, store.BouncerHeartbeat{Hostname: hb.Hostname, Version: hb.Version,
		Applied: hb.Applied, Counters: counters, LastError: hb.LastError, Current: current}, s.now())
	if err != nil {
		return nil, fmt.Errorf("api: store heartbeat of %s: %w", b.Name, err)
	}
	// The version stored before this heartbeat, not the cached key lookup's:
	// the warning is logged when the version changes, not at every heartbeat.
	if hb.Version != before && BouncerCompatibility(s.opts.Version, hb.Version) == CompatUnsupported {
		s.log.Warn("A bouncer runs a version this server does not support: a bouncer and its server must be the same major version at most one minor apart; upgrade the older one.",
			"bouncer", b.Name, "bouncer_version", hb.Version, "server_version", s.opts.Version)
	}
	return apigen.PostBouncerHeartbeat204Response{}, nil
}

// HoneypotTag is the tag a bouncer's honeypot report puts on a source.
const HoneypotTag = "honeypot"

// PostBouncerReports implements POST /bouncer/reports: each honeypot hit
// becomes a honeypot tag from source bouncer:<name> with the honeypot TTL,
// stored through ingest, which announces the change and so re-renders.
//
// A bouncer key may only report what its own rulesets set it to watch: every
// hit must name a ruleset bound to the bouncer (else 403) and a protocol and
// port in that ruleset's honeypot list (else 422). One bad hit refuses the
// report. Hits are rate-limited per bouncer (429 with Retry-After).
func (s *Server) PostBouncerReports(ctx context.Context, req apigen.PostBouncerReportsRequestObject) (apigen.PostBouncerReportsResponseObject, error) {
	b, _ := BouncerFrom(ctx)
	now := s.now()
	if wait, ok := s.honeypotLimit.take(b.ID, len(req.Body.Honeypot), now); !ok {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		return apigen.PostBouncerReports429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: apigen.TooManyRequestsApplicationProblemPlusJSONResponse{
			Body: problem(http.StatusTooManyRequests, fmt.Sprintf("bouncer %s is over its honeypot report rate (%g hits per second, bursts of %d); nothing was stored",
				b.Name, s.honeypotLimit.rate, s.honeypotLimit.burst), fieldErr("/honeypot", fmt.Sprintf("%d hits; try again in %d s", len(req.Body.Honeypot), secs))),
			Headers: apigen.TooManyRequestsResponseHeaders{RetryAfter: ptr(secs)}}}, nil
	}
	var malformed, forbidden, unwatched []apigen.FieldError
	ports := map[string]policy.Honeypot{}
	obs := make([]store.Observation, 0, len(req.Body.Honeypot))
	evs := make([]store.Event, 0, len(req.Body.Honeypot))
	for i, h := range req.Body.Honeypot {
		p, err := ParsePrefix(h.IP)
		if err != nil || !p.IsSingleIP() {
			malformed = append(malformed, fieldErr(fmt.Sprintf("/honeypot/%d/ip", i), "must be one IP address"))
			continue
		}
		if !slices.Contains(b.Rulesets, h.Ruleset) {
			forbidden = append(forbidden, fieldErr(fmt.Sprintf("/honeypot/%d/ruleset", i), fmt.Sprintf("bouncer %s does not enforce ruleset %q", b.Name, h.Ruleset)))
			continue
		}
		hp, ok := ports[h.Ruleset]
		if !ok {
			if hp, err = s.honeypotPorts(ctx, h.Ruleset); err != nil {
				return nil, err
			}
			ports[h.Ruleset] = hp
		}
		list := hp.TCP
		if h.Protocol == "udp" {
			list = hp.UDP
		}
		if !slices.Contains(list, h.Port) {
			unwatched = append(unwatched, fieldErr(fmt.Sprintf("/honeypot/%d/port", i), fmt.Sprintf("%s port %d is not a honeypot port of ruleset %s (%s)", h.Protocol, h.Port, h.Ruleset, honeypotList(hp))))
			continue
		}
		seen := h.SeenAt
		if seen.IsZero() || seen.After(now) {
			seen = now
		}
		exp := seen.Add(s.opts.HoneypotTTL)
		obs = append(obs, store.Observation{Prefix: p, Source: "bouncer:" + b.Name, Tags: []string{HoneypotTag}, SeenAt: seen, ExpiresAt: &exp})
		evs = append(evs, store.Event{At: seen, Kind: store.EventHoneypot, SubjectType: "address", Subject: p.Addr().String(),
			Details: map[string]any{"ruleset": h.Ruleset, "bouncer": b.Name, "protocol": string(h.Protocol), "port": h.Port}})
	}
	switch {
	case len(malformed) > 0:
		return apigen.PostBouncerReports400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("the report is invalid; nothing was stored", malformed...)}, nil
	case len(forbidden) > 0:
		return apigen.PostBouncerReports403ApplicationProblemPlusJSONResponse{ForbiddenApplicationProblemPlusJSONResponse: apigen.ForbiddenApplicationProblemPlusJSONResponse(
			problem(http.StatusForbidden, "the report names rulesets this bouncer does not enforce; nothing was stored", forbidden...))}, nil
	case len(unwatched) > 0:
		return apigen.PostBouncerReports422ApplicationProblemPlusJSONResponse{UnprocessableApplicationProblemPlusJSONResponse: apigen.UnprocessableApplicationProblemPlusJSONResponse(
			problem(http.StatusUnprocessableEntity, "the report names ports outside its rulesets' honeypot lists; nothing was stored", unwatched...))}, nil
	}
	// The sightings and their events in one transaction: a hit exists with
	// its event or not at all. An alert about it reads the hit's own tag
	// (the matcher merges the log and catches the index up first).
	if err := s.store.IngestWithEvents(ctx, obs, "bouncer:"+b.Name, evs); err != nil {
		return nil, fmt.Errorf("api: store honeypot report of %s: %w", b.Name, err)
	}
	if s.opts.Observed != nil {
		s.opts.Observed("bouncer", len(obs))
	}
	if err := s.catchUp(ctx); err != nil {
		return nil, err
	}
	return apigen.PostBouncerReports202JSONResponse{Accepted: len(obs)}, nil
}

// honeypotPorts reads the honeypot list of a stored ruleset; a ruleset gone
// since the bouncer's last poll has none.
func (s *Server) honeypotPorts(ctx context.Context, name string) (policy.Honeypot, error) {
	r, err := s.store.RulesetByName(ctx, name)
	if isNotFound(err) {
		return policy.Honeypot{}, nil
	}
	if err != nil {
		return policy.Honeypot{}, err
	}
	rs, err := policy.Parse(r.Text)
	if err != nil {
		return policy.Honeypot{}, fmt.Errorf("api: stored ruleset %s: %w", name, err)
	}
	return rs.Honeypot, nil
}

// honeypotList names a ruleset's honeypot ports: "honeypot tcp 23,2323".
func honeypotList(hp policy.Honeypot) string {
	var parts []string
	for _, l := range []struct {
		proto string
		ports []uint16
	}{{"tcp", hp.TCP}, {"udp", hp.UDP}} {
		if len(l.ports) == 0 {
			continue
		}
		ps := make([]string, len(l.ports))
		for i, p := range l.ports {
			ps[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, l.proto+" "+strings.Join(ps, ","))
	}
	if len(parts) == 0 {
		return "it has no honeypot ports"
	}
	return "honeypot " + strings.Join(parts, "; ")
}

// rateLimits holds one token bucket per bouncer: each honeypot hit takes a
// token. Buckets live as long as the process; there is one per bouncer key.
type rateLimits struct {
	rate  float64
	burst int
	mu    sync.Mutex
	by    map[int64]*rate.Limiter
}

func newRateLimits(perSecond float64, burst int) *rateLimits {
	return &rateLimits{rate: perSecond, burst: burst, by: map[int64]*rate.Limiter{}}
}

// take takes n tokens of id's bucket at now, or, when it has too few, none,
// and says how long until it will have them.
func (l *rateLimits) take(id int64, n int, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	lim, ok := l.by[id]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(l.rate), l.burst)
		l.by[id] = lim
	}
	l.mu.Unlock()
	if n > l.burst {
		return time.Duration(float64(n) / l.rate * float64(time.Second)), false
	}
	r := lim.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}
