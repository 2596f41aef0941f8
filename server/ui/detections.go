package ui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

// detectionsPage is the data of detections.html: every detection rule, each
// with its edit form (as typed when it failed), and the page's one error.
type detectionsPage struct {
	Rules []detectionForm
}

// detectionForm is one rule's edit form: its fields as text, and the error
// of the field that was refused (Field is the form's input name).
type detectionForm struct {
	Name, Kinds, InstantKinds, Threshold, Window, Tag, TTL, MaxTTL, Quiet string
	Enabled, IncludePrivate                                               bool
	Field, Error                                                          string
}

// formOf is d as its form shows it.
func formOf(d store.Detection) detectionForm {
	return detectionForm{Name: d.Name, Kinds: strings.Join(d.Kinds, ", "), InstantKinds: strings.Join(d.InstantKinds, ", "),
		Threshold: strconv.Itoa(d.Threshold), Window: shortDuration(d.Window), Tag: d.Tag, TTL: shortDuration(d.TTL),
		MaxTTL: shortDuration(d.MaxTTL), Quiet: shortDuration(d.Quiet), Enabled: d.Enabled, IncludePrivate: d.IncludePrivate}
}

// shortDuration writes d without zero minutes and seconds ("10m", "720h").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// detectionField is one labelled text input of a detection's form.
type detectionField struct {
	Name, ID, Label, Value, Hint, Error string
}

// Fields are the form's text inputs, each with its error, if any.
func (f detectionForm) Fields() []detectionField {
	out := []detectionField{
		{Name: "kinds", Label: "Kinds", Value: f.Kinds, Hint: "Comma-separated event kinds that count, e.g. ssh-auth-failure, http-404."},
		{Name: "instant_kinds", Label: "Instant kinds", Value: f.InstantKinds, Hint: "Kinds of which one event is enough."},
		{Name: "threshold", Label: "Threshold", Value: f.Threshold, Hint: "Events within the window that fire it."},
		{Name: "window", Label: "Window", Value: f.Window, Hint: "E.g. 10m."},
		{Name: "tag", Label: "Tag", Value: f.Tag},
		{Name: "ttl", Label: "TTL", Value: f.TTL, Hint: "Life of the first tag; the n-th firing's is TTL × n²."},
		{Name: "max_ttl", Label: "Cap", Value: f.MaxTTL, Hint: "The longest a tag lives."},
		{Name: "quiet", Label: "Quiet period", Value: f.Quiet, Hint: "After this long without a firing, n starts over."},
	}
	for i := range out {
		out[i].ID = f.Name + "-" + out[i].Name
		if f.Field == out[i].Name {
			out[i].Error = f.Error
		}
	}
	return out
}

// listDetections serves GET /ui/detections.
func (h *Handler) listDetections(w http.ResponseWriter, r *http.Request) {
	h.renderDetections(w, r, http.StatusOK, nil)
}

// renderDetections shows every rule as stored, but failed in place of its
// stored form.
func (h *Handler) renderDetections(w http.ResponseWriter, r *http.Request, status int, failed *detectionForm) {
	ds, err := h.store.Detections(r.Context())
	if err != nil {
		h.fault(w, r, "list detections", err)
		return
	}
	var p detectionsPage
	for _, d := range ds {
		f := formOf(d)
		if failed != nil && failed.Name == d.Name {
			f = *failed
		}
		p.Rules = append(p.Rules, f)
	}
	h.render(w, r, status, "detections", "Detections", "detections", p)
}

// submitDetection serves POST /ui/detections/{name}: the rule is replaced
// with the form's values, checked as PUT /api/v1/detections/{name} checks
// them (api.DetectionFromInput).
func (h *Handler) submitDetection(w http.ResponseWriter, r *http.Request) {
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	f := detectionForm{Name: chi.URLParam(r, "name"), Kinds: v("kinds"), InstantKinds: v("instant_kinds"), Threshold: v("threshold"),
		Window: v("window"), Tag: v("tag"), TTL: v("ttl"), MaxTTL: v("max_ttl"), Quiet: v("quiet"),
		Enabled: r.PostFormValue("enabled") == "on", IncludePrivate: r.PostFormValue("include_private") == "on"}
	if _, err := h.store.Detection(r.Context(), f.Name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			h.fail(w, r, http.StatusNotFound, "There is no detection "+f.Name+".")
			return
		}
		h.fault(w, r, "read the detection", err)
		return
	}
	n, err := strconv.Atoi(f.Threshold)
	if err != nil {
		f.Field, f.Error = "threshold", "A whole number, such as 5."
		h.renderDetections(w, r, http.StatusUnprocessableEntity, &f)
		return
	}
	instant := list(f.InstantKinds)
	in := apigen.DetectionInput{Kinds: list(f.Kinds), InstantKinds: &instant, Threshold: n, Window: f.Window, Tag: f.Tag, Ttl: f.TTL,
		MaxTtl: &f.MaxTTL, Quiet: &f.Quiet, Enabled: &f.Enabled, IncludePrivate: &f.IncludePrivate}
	d, fe := api.DetectionFromInput(f.Name, in)
	if fe != nil {
		f.Field, f.Error = strings.TrimPrefix(fe.Field, "/"), fe.Reason
		h.renderDetections(w, r, http.StatusUnprocessableEntity, &f)
		return
	}
	if err := h.store.PutDetection(r.Context(), d); err != nil {
		h.fault(w, r, "store the detection", err)
		return
	}
	h.redirect(w, r, "/ui/detections", "Detection "+d.Name+" stored.")
}

// list splits a comma-separated form value into its non-empty items.
func list(s string) []string {
	out := []string{}
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
