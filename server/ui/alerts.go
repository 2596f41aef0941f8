package ui

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// alertsPage is the data of alerts.html.
type alertsPage struct {
	Rules    []alertRuleRow
	Channels []store.AlertChannel
	Channel  channelForm
	Rule     ruleForm
	// Keyless says channels cannot be stored: this server has no alert key.
	Keyless bool
}

// alertRuleRow is a rule as listed.
type alertRuleRow struct {
	store.AlertRule
	Quiet string
}

// channelForm is the add-channel form as typed (the URL is never shown
// back: it holds secrets).
type channelForm struct {
	Name   string
	Errors map[string]string
}

// ruleForm is the rule form as typed.
type ruleForm struct {
	Name, Kind, Channels, GroupWait, GroupThreshold, RatePerHour string
	QuietStart, QuietEnd, QuietTZ                                string
	Tag, Classification, Country, ASN, Ruleset, Bouncer          string
	MinCount                                                     string
	Errors                                                       map[string]string
}

// listAlerts serves GET /ui/alerts.
func (h *Handler) listAlerts(w http.ResponseWriter, r *http.Request) {
	h.renderAlerts(w, r, http.StatusOK, alertsPage{})
}

func (h *Handler) renderAlerts(w http.ResponseWriter, r *http.Request, status int, p alertsPage) {
	rules, err := h.store.AlertRules(r.Context())
	if err != nil {
		h.fault(w, r, "list alert rules", err)
		return
	}
	for _, ru := range rules {
		row := alertRuleRow{AlertRule: ru}
		if ru.QuietStart != ru.QuietEnd {
			row.Quiet = alert.Minutes(ru.QuietStart) + "–" + alert.Minutes(ru.QuietEnd) + " " + ru.QuietTZ
		}
		p.Rules = append(p.Rules, row)
	}
	if p.Channels, err = h.store.AlertChannels(r.Context()); err != nil {
		h.fault(w, r, "list alert channels", err)
		return
	}
	p.Keyless = h.sealer == nil
	h.render(w, r, status, "alerts", "Alerts", "alerts", p)
}

// submitChannel serves POST /ui/alerts/channels: the URL is checked, sealed
// and stored; the page shows it redacted only.
func (h *Handler) submitChannel(w http.ResponseWriter, r *http.Request) {
	f := channelForm{Name: strings.TrimSpace(r.PostFormValue("name")), Errors: map[string]string{}}
	if h.sealer == nil {
		h.fail(w, r, http.StatusServiceUnavailable, "This server has no alert key (MUNINN_ALERT_KEY): channels cannot be stored.")
		return
	}
	if !alertName(f.Name) {
		f.Errors["name"] = "Lower-case letters, digits, dot, dash and underscore; at most 63."
	}
	c, fe, err := api.SealChannel(h.sealer, f.Name, strings.TrimSpace(r.PostFormValue("url")))
	if err != nil {
		h.fault(w, r, "seal the channel URL", err)
		return
	}
	if fe != nil {
		f.Errors["url"] = fe.Reason
	}
	if len(f.Errors) > 0 {
		h.renderAlerts(w, r, http.StatusUnprocessableEntity, alertsPage{Channel: f})
		return
	}
	s, _ := sessionFrom(r.Context())
	if _, _, err := h.store.PutAlertChannel(r.Context(), c, s.User.Name); err != nil {
		h.fault(w, r, "store the channel", err)
		return
	}
	h.redirect(w, r, "/ui/alerts", "Channel "+c.Name+" stored: "+c.URLRedacted)
}

// testChannel serves POST /ui/alerts/channels/{name}/test.
func (h *Handler) testChannel(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if h.sealer == nil {
		h.fail(w, r, http.StatusServiceUnavailable, "This server has no alert key (MUNINN_ALERT_KEY).")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	err := api.TestChannel(ctx, h.store, h.sealer, name, 10*time.Second)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.redirect(w, r, "/ui/alerts", "There is no channel "+name+".")
	case err != nil:
		h.redirect(w, r, "/ui/alerts", "The test message to "+name+" failed: "+err.Error())
	default:
		h.redirect(w, r, "/ui/alerts", "Test message sent to "+name+".")
	}
}

// deleteChannel serves POST /ui/alerts/channels/{name}/delete.
func (h *Handler) deleteChannel(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	s, _ := sessionFrom(r.Context())
	err := h.store.DeleteAlertChannel(r.Context(), name, s.User.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.redirect(w, r, "/ui/alerts", "Channel "+name+" was deleted already.")
	case err != nil:
		h.fault(w, r, "delete the channel", err)
	default:
		h.redirect(w, r, "/ui/alerts", "Channel "+name+" deleted.")
	}
}

// submitRule serves POST /ui/alerts/rules: create or replace a rule, checked
// like PUT /alerts/rules/{name}.
func (h *Handler) submitRule(w http.ResponseWriter, r *http.Request) {
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	f := ruleForm{Name: v("name"), Kind: v("kind"), Channels: v("channels"), GroupWait: v("group_wait"), GroupThreshold: v("group_threshold"),
		RatePerHour: v("rate_per_hour"), QuietStart: v("quiet_start"), QuietEnd: v("quiet_end"), QuietTZ: v("quiet_tz"),
		Tag: v("tag"), Classification: v("classification"), Country: v("country"), ASN: v("asn"), Ruleset: v("ruleset"), Bouncer: v("bouncer"),
		MinCount: v("min_count"), Errors: map[string]string{}}
	if !alertName(f.Name) {
		f.Errors["name"] = "Lower-case letters, digits, dot, dash and underscore; at most 63."
	}
	if f.Kind == "" {
		f.Errors["kind"] = "Name the event kind, e.g. honeypot or feed.failed."
	}
	num := func(field, s string) *int {
		if s == "" {
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			f.Errors[field] = "A whole number, 0 or more."
			return nil
		}
		return &n
	}
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	in := apigen.AlertRuleInput{Kind: f.Kind, GroupWait: opt(f.GroupWait), GroupThreshold: num("group_threshold", f.GroupThreshold),
		RatePerHour: num("rate_per_hour", f.RatePerHour), QuietStart: opt(f.QuietStart), QuietEnd: opt(f.QuietEnd), QuietTz: opt(f.QuietTZ),
		Filters: &apigen.AlertFilters{Tag: opt(f.Tag), Classification: opt(f.Classification), Country: opt(f.Country), Ruleset: opt(f.Ruleset),
			Bouncer: opt(f.Bouncer), MinCount: num("min_count", f.MinCount)}}
	if f.ASN != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(strings.ToUpper(f.ASN), "AS"), 10, 64)
		if err != nil || n <= 0 {
			f.Errors["asn"] = "An AS number such as 64500."
		} else {
			in.Filters.Asn = &n
		}
	}
	if f.Channels != "" {
		chs := []string{}
		for _, c := range strings.Split(f.Channels, ",") {
			if c = strings.TrimSpace(c); c != "" {
				chs = append(chs, c)
			}
		}
		in.Channels = &chs
	}
	channels, err := h.store.AlertChannels(r.Context())
	if err != nil {
		h.fault(w, r, "list alert channels", err)
		return
	}
	rule, errs := api.AlertRuleFromInput(f.Name, in, channels)
	for _, e := range errs {
		field := strings.TrimPrefix(e.Field, "/")
		if i := strings.IndexByte(field, '/'); i > 0 {
			field = field[:i]
		}
		f.Errors[field] = e.Reason
	}
	if len(f.Errors) > 0 {
		h.renderAlerts(w, r, http.StatusUnprocessableEntity, alertsPage{Rule: f})
		return
	}
	s, _ := sessionFrom(r.Context())
	if _, _, err := h.store.PutAlertRule(r.Context(), rule, s.User.Name); err != nil {
		h.fault(w, r, "store the rule", err)
		return
	}
	h.redirect(w, r, "/ui/alerts", "Rule "+rule.Name+" stored.")
}

// deleteRule serves POST /ui/alerts/rules/{name}/delete.
func (h *Handler) deleteRule(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	s, _ := sessionFrom(r.Context())
	err := h.store.DeleteAlertRule(r.Context(), name, s.User.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.redirect(w, r, "/ui/alerts", "Rule "+name+" was deleted already.")
	case err != nil:
		h.fault(w, r, "delete the rule", err)
	default:
		h.redirect(w, r, "/ui/alerts", "Rule "+name+" deleted.")
	}
}

// alertName checks a rule or channel name (the contract's AlertName).
func alertName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '-' || c == '_')
		if !ok {
			return false
		}
	}
	return true
}

// formField is one labelled input of the rule form.
type formField struct {
	ID, Label, Value, Hint, Error string
}

// Field describes input id of the rule form with its error, if any.
func (f ruleForm) Field(id, label, value, hint string) formField {
	return formField{ID: id, Label: label, Value: value, Hint: hint, Error: f.Errors[id]}
}
