package ui

import (
	"html/template"
	"net/http"

	"github.com/muninn/muninn/server/store"
)

// dashboardPage is the data of dashboard.html.
type dashboardPage struct {
	Counts    store.DashboardCounts
	Sightings template.HTML
	Tags      template.HTML
	Countries template.HTML
	ASNs      template.HTML
	Feeds     []store.Feed
	Bouncers  []store.Bouncer
}

// showDashboard serves GET /ui/: counts, charts and feed health.
func (h *Handler) showDashboard(w http.ResponseWriter, r *http.Request) {
	ctx, now := r.Context(), h.now()
	var d dashboardPage
	var err error
	if d.Counts, err = h.store.Counts(ctx, now); err != nil {
		h.fault(w, r, "count prefixes", err)
		return
	}
	sightings, err := h.store.SightingsPerDay(ctx, now, 30)
	if err != nil {
		h.fault(w, r, "count sightings", err)
		return
	}
	tags, err := h.store.TopTags(ctx, now, 10)
	if err != nil {
		h.fault(w, r, "count tags", err)
		return
	}
	countries, err := h.store.TopCountries(ctx, 10)
	if err != nil {
		h.fault(w, r, "count countries", err)
		return
	}
	asns, err := h.store.TopASNs(ctx, 10)
	if err != nil {
		h.fault(w, r, "count ASNs", err)
		return
	}
	if d.Feeds, err = h.store.Feeds(ctx); err != nil {
		h.fault(w, r, "list feeds", err)
		return
	}
	if d.Bouncers, err = h.store.Bouncers(ctx); err != nil {
		h.fault(w, r, "list bouncers", err)
		return
	}
	d.Sightings = columnChart("Sightings per day, last 30 days", sightings)
	d.Tags = barChart("Top tags by prefixes", tags)
	d.Countries = barChart("Top countries of recently seen prefixes", countries)
	d.ASNs = barChart("Top networks (ASN) of recently seen prefixes", asns)
	h.render(w, r, http.StatusOK, "dashboard", "Dashboard", "dashboard", d)
}
