package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// ListEvents implements GET /events.
func (s *Server) ListEvents(ctx context.Context, req apigen.ListEventsRequestObject) (apigen.ListEventsResponseObject, error) {
	p := req.Params
	var errs []apigen.FieldError
	before, ce := parseIDCursor(p.Cursor)
	if ce != nil {
		errs = append(errs, *ce)
	}
	limit := 100
	if p.Limit != nil {
		limit = *p.Limit
	}
	if len(errs) > 0 {
		return apigen.ListEvents400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the event query is invalid", errs...))}, nil
	}
	f := store.EventFilter{Kind: deref(p.Kind), SubjectType: deref(p.SubjectType), Subject: deref(p.Subject), Before: before, Limit: limit + 1}
	if p.Since != nil {
		f.Since = *p.Since
	}
	evs, err := s.store.ListEvents(ctx, f)
	if err != nil {
		return nil, err
	}
	page := apigen.EventPage{Items: make([]apigen.Event, 0, len(evs))}
	if len(evs) > limit {
		evs = evs[:limit]
		page.NextCursor = ptr(strconv.FormatInt(evs[len(evs)-1].ID, 10))
	}
	for _, e := range evs {
		page.Items = append(page.Items, apigen.Event{Id: e.ID, At: e.At, Kind: e.Kind, SubjectType: e.SubjectType, Subject: e.Subject, Details: e.Details})
	}
	return apigen.ListEvents200JSONResponse(page), nil
}

func toAlertRule(r store.AlertRule) apigen.AlertRule {
	f := r.Filters
	out := apigen.AlertRule{Name: r.Name, Kind: r.Kind, Channels: r.Channels, GroupWait: r.GroupWait.String(), GroupThreshold: r.GroupThreshold,
		RatePerHour: r.RatePerHour, Enabled: r.Enabled, CreatedAt: ptr(r.CreatedAt), UpdatedAt: ptr(r.UpdatedAt),
		Filters: apigen.AlertFilters{Tag: nonEmpty(f.Tag), Classification: nonEmpty(f.Classification), Country: nonEmpty(f.Country),
			Ruleset: nonEmpty(f.Ruleset), Bouncer: nonEmpty(f.Bouncer)}}
	if f.ASN != 0 {
		out.Filters.Asn = ptr(f.ASN)
	}
	if f.MinCount != 0 {
		out.Filters.MinCount = ptr(f.MinCount)
	}
	if out.Channels == nil {
		out.Channels = []string{}
	}
	if r.QuietStart != r.QuietEnd {
		out.QuietStart, out.QuietEnd, out.QuietTz = ptr(alert.Minutes(r.QuietStart)), ptr(alert.Minutes(r.QuietEnd)), ptr(r.QuietTZ)
	}
	return out
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ListAlertRules implements GET /alerts/rules.
func (s *Server) ListAlertRules(ctx context.Context, _ apigen.ListAlertRulesRequestObject) (apigen.ListAlertRulesResponseObject, error) {
	rs, err := s.store.AlertRules(ctx)
	if err != nil {
		return nil, err
	}
	out := make(apigen.ListAlertRules200JSONResponse, 0, len(rs))
	for _, r := range rs {
		out = append(out, toAlertRule(r))
	}
	return out, nil
}

// AlertRuleFromInput checks a rule's input against the stored channels and
// returns the rule, or the field errors (shared by the API and the UI).
func AlertRuleFromInput(name string, in apigen.AlertRuleInput, channels []store.AlertChannel) (store.AlertRule, []apigen.FieldError) {
	var errs []apigen.FieldError
	r := store.AlertRule{Name: name, Kind: in.Kind, Enabled: true, QuietTZ: "UTC", GroupThreshold: deref(in.GroupThreshold), RatePerHour: deref(in.RatePerHour)}
	if in.Enabled != nil {
		r.Enabled = *in.Enabled
	}
	if in.Filters != nil {
		f := in.Filters
		r.Filters = store.AlertFilters{Tag: deref(f.Tag), Classification: deref(f.Classification), Country: strings.ToUpper(deref(f.Country)),
			ASN: deref(f.Asn), Ruleset: deref(f.Ruleset), Bouncer: deref(f.Bouncer), MinCount: deref(f.MinCount)}
	}
	if w := deref(in.GroupWait); w != "" {
		d, err := time.ParseDuration(w)
		switch {
		case err != nil:
			errs = append(errs, fieldErr("/group_wait", "must be a Go duration such as 30s or 5m"))
		case d < 0 || d > 24*time.Hour:
			errs = append(errs, fieldErr("/group_wait", "must be between 0s and 24h"))
		default:
			r.GroupWait = d
		}
	}
	known := map[string]bool{}
	for _, c := range channels {
		known[c.Name] = true
	}
	if in.Channels != nil {
		for i, c := range *in.Channels {
			if !known[c] {
				errs = append(errs, fieldErr(fmt.Sprintf("/channels/%d", i), fmt.Sprintf("no channel named %q", c)))
			}
		}
		r.Channels = *in.Channels
	}
	if (in.QuietStart == nil) != (in.QuietEnd == nil) {
		errs = append(errs, fieldErr("/quiet_end", "quiet_start and quiet_end go together"))
	} else if in.QuietStart != nil {
		var err error
		if r.QuietStart, err = alert.ParseMinutes(*in.QuietStart); err != nil {
			errs = append(errs, fieldErr("/quiet_start", "must be HH:MM"))
		}
		if r.QuietEnd, err = alert.ParseMinutes(*in.QuietEnd); err != nil {
			errs = append(errs, fieldErr("/quiet_end", "must be HH:MM"))
		}
	}
	if tz := deref(in.QuietTz); tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
			errs = append(errs, fieldErr("/quiet_tz", fmt.Sprintf("unknown time zone %q (IANA names such as Europe/Berlin)", tz)))
		}
		r.QuietTZ = tz
	}
	return r, errs
}

// PutAlertRule implements PUT /alerts/rules/{name}.
func (s *Server) PutAlertRule(ctx context.Context, req apigen.PutAlertRuleRequestObject) (apigen.PutAlertRuleResponseObject, error) {
	channels, err := s.store.AlertChannels(ctx)
	if err != nil {
		return nil, err
	}
	r, errs := AlertRuleFromInput(req.Name, *req.Body, channels)
	if len(errs) > 0 {
		return apigen.PutAlertRule422ApplicationProblemPlusJSONResponse{UnprocessableApplicationProblemPlusJSONResponse: apigen.UnprocessableApplicationProblemPlusJSONResponse(
			problem(http.StatusUnprocessableEntity, "the alert rule is invalid; nothing was stored", errs...))}, nil
	}
	out, created, err := s.store.PutAlertRule(ctx, r, actorOf(ctx))
	if err != nil {
		return nil, err
	}
	if created {
		return apigen.PutAlertRule201JSONResponse(toAlertRule(out)), nil
	}
	return apigen.PutAlertRule200JSONResponse(toAlertRule(out)), nil
}

// DeleteAlertRule implements DELETE /alerts/rules/{name}.
func (s *Server) DeleteAlertRule(ctx context.Context, req apigen.DeleteAlertRuleRequestObject) (apigen.DeleteAlertRuleResponseObject, error) {
	err := s.store.DeleteAlertRule(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteAlertRule404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no alert rule named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteAlertRule204Response{}, nil
}

func toAlertChannel(c store.AlertChannel) apigen.AlertChannel {
	return apigen.AlertChannel{Name: c.Name, Service: c.Service, Url: c.URLRedacted, CreatedAt: ptr(c.CreatedAt), UpdatedAt: ptr(c.UpdatedAt)}
}

// ListAlertChannels implements GET /alerts/channels.
func (s *Server) ListAlertChannels(ctx context.Context, _ apigen.ListAlertChannelsRequestObject) (apigen.ListAlertChannelsResponseObject, error) {
	cs, err := s.store.AlertChannels(ctx)
	if err != nil {
		return nil, err
	}
	out := make(apigen.ListAlertChannels200JSONResponse, 0, len(cs))
	for _, c := range cs {
		out = append(out, toAlertChannel(c))
	}
	return out, nil
}

// errNoAlertKey is the detail of a 503 when alerting has no key.
const errNoAlertKey = "alert channels need the alert key (MUNINN_ALERT_KEY or the key file in the data directory); this server has none"

// SealChannel checks a channel URL and seals it (shared by the API and
// the UI): a field error says why a URL is refused, without repeating it.
func SealChannel(sealer *alert.Sealer, name, raw string) (store.AlertChannel, *apigen.FieldError, error) {
	service, err := alert.Service(raw)
	if err != nil {
		fe := fieldErr("/url", err.Error())
		return store.AlertChannel{}, &fe, nil
	}
	sealed, err := sealer.Seal(raw)
	if err != nil {
		return store.AlertChannel{}, nil, err
	}
	return store.AlertChannel{Name: name, Service: service, URLSealed: sealed, URLRedacted: alert.Redact(raw)}, nil, nil
}

// PutAlertChannel implements PUT /alerts/channels/{name}.
func (s *Server) PutAlertChannel(ctx context.Context, req apigen.PutAlertChannelRequestObject) (apigen.PutAlertChannelResponseObject, error) {
	if s.opts.AlertSealer == nil {
		return apigen.PutAlertChannel503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: apigen.UnavailableApplicationProblemPlusJSONResponse{Body: problem(http.StatusServiceUnavailable, errNoAlertKey)}}, nil
	}
	c, fe, err := SealChannel(s.opts.AlertSealer, req.Name, req.Body.Url)
	if err != nil {
		return nil, err
	}
	if fe != nil {
		return apigen.PutAlertChannel422ApplicationProblemPlusJSONResponse{UnprocessableApplicationProblemPlusJSONResponse: apigen.UnprocessableApplicationProblemPlusJSONResponse(
			problem(http.StatusUnprocessableEntity, "the channel URL is not one shoutrrr accepts; nothing was stored", *fe))}, nil
	}
	out, created, err := s.store.PutAlertChannel(ctx, c, actorOf(ctx))
	if err != nil {
		return nil, err
	}
	if created {
		return apigen.PutAlertChannel201JSONResponse(toAlertChannel(out)), nil
	}
	return apigen.PutAlertChannel200JSONResponse(toAlertChannel(out)), nil
}

// DeleteAlertChannel implements DELETE /alerts/channels/{name}.
func (s *Server) DeleteAlertChannel(ctx context.Context, req apigen.DeleteAlertChannelRequestObject) (apigen.DeleteAlertChannelResponseObject, error) {
	err := s.store.DeleteAlertChannel(ctx, req.Name, actorOf(ctx))
	if isNotFound(err) {
		return apigen.DeleteAlertChannel404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no alert channel named " + req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteAlertChannel204Response{}, nil
}

// TestMessage is the message the test button and endpoint send.
func TestMessage(channel string) alert.Message {
	return alert.Message{Title: "[muninn] test: channel " + channel + " works",
		Body: "This is a test message from muninn: alerts sent to channel " + channel + " arrive here."}
}

// TestChannel sends the test message to a stored channel once (shared by
// the API and the UI); the error text never holds the URL's secrets.
func TestChannel(ctx context.Context, st *store.Store, sealer *alert.Sealer, name string, timeout time.Duration) error {
	c, err := st.AlertChannelByName(ctx, name)
	if err != nil {
		return err
	}
	raw, err := sealer.Open(c.URLSealed)
	if err != nil {
		return err
	}
	return alert.Send(raw, TestMessage(name), timeout)
}

// TestAlertChannel implements POST /alerts/channels/{name}/test.
func (s *Server) TestAlertChannel(ctx context.Context, req apigen.TestAlertChannelRequestObject) (apigen.TestAlertChannelResponseObject, error) {
	if s.opts.AlertSealer == nil {
		return apigen.TestAlertChannel503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: apigen.UnavailableApplicationProblemPlusJSONResponse{Body: problem(http.StatusServiceUnavailable, errNoAlertKey)}}, nil
	}
	err := TestChannel(ctx, s.store, s.opts.AlertSealer, req.Name, s.opts.AlertSendTimeout)
	if isNotFound(err) {
		return apigen.TestAlertChannel404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no alert channel named " + req.Name)}, nil
	}
	if err != nil {
		return apigen.TestAlertChannel200JSONResponse{Delivered: false, Error: ptr(err.Error())}, nil
	}
	return apigen.TestAlertChannel200JSONResponse{Delivered: true}, nil
}
