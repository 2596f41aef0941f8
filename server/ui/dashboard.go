package ui

import (
	"context"
	"html/template"
	"net/http"
	"time"

	"github.com/muninn/muninn/server/store"
)

// dashboardPage is the data of dashboard.html.
type dashboardPage struct {
	Counts    store.DashboardCounts
	At        time.Time
	Sightings template.HTML
	Tags      template.HTML
	Countries template.HTML
	ASNs      template.HTML
	Feeds     []store.Feed
	Bouncers  []store.Bouncer
}

// dashboardStats are the dashboard's aggregates. At a million prefixes and
// millions of sightings they take most of a second to compute, so they are
// computed off the request path (Run) and served from memory.
type dashboardStats struct {
	At        time.Time
	Counts    store.DashboardCounts
	Sightings []store.Bucket
	Tags      []store.Bucket
	Countries []store.Bucket
	ASNs      []store.Bucket
}

const (
	// statsRefresh is how often Run recomputes the aggregates.
	statsRefresh = 20 * time.Second
	// statsMaxAge is how old served aggregates may be before a request
	// recomputes them itself (only when Run is not running, or at start).
	statsMaxAge = time.Minute
)

// Run recomputes the dashboard's aggregates every statsRefresh until ctx ends.
// main owns it and waits for it on shutdown.
func (h *Handler) Run(ctx context.Context) error {
	t := time.NewTicker(statsRefresh)
	defer t.Stop()
	for {
		if _, err := h.refreshStats(ctx); err != nil && ctx.Err() == nil {
			h.log.WarnContext(ctx, "Could not refresh the dashboard.", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// currentStats returns the aggregates, recomputing them when they are stale.
func (h *Handler) currentStats(ctx context.Context) (*dashboardStats, error) {
	h.statsMu.Lock()
	s := h.stats
	h.statsMu.Unlock()
	if s != nil && h.now().Sub(s.At) < statsMaxAge {
		return s, nil
	}
	return h.refreshStats(ctx)
}

// refreshStats computes the aggregates and keeps them; one computation at a time.
func (h *Handler) refreshStats(ctx context.Context) (*dashboardStats, error) {
	h.refreshMu.Lock()
	defer h.refreshMu.Unlock()
	now := h.now()
	s := &dashboardStats{At: now}
	var err error
	if s.Counts, err = h.store.Counts(ctx, now); err != nil {
		return nil, err
	}
	if s.Sightings, err = h.store.SightingsPerDay(ctx, now, 30); err != nil {
		return nil, err
	}
	if s.Tags, err = h.store.TopTags(ctx, now, 10); err != nil {
		return nil, err
	}
	if s.Countries, err = h.store.TopCountries(ctx, 10); err != nil {
		return nil, err
	}
	if s.ASNs, err = h.store.TopASNs(ctx, 10); err != nil {
		return nil, err
	}
	h.statsMu.Lock()
	h.stats = s
	h.statsMu.Unlock()
	return s, nil
}

// showDashboard serves GET /ui/: counts, charts and bouncer and feed health.
func (h *Handler) showDashboard(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, err := h.currentStats(ctx)
	if err != nil {
		h.fault(w, r, "compute the dashboard", err)
		return
	}
	d := dashboardPage{Counts: s.Counts, At: s.At}
	if d.Feeds, err = h.store.Feeds(ctx); err != nil {
		h.fault(w, r, "list feeds", err)
		return
	}
	if d.Bouncers, err = h.store.Bouncers(ctx); err != nil {
		h.fault(w, r, "list bouncers", err)
		return
	}
	d.Sightings = columnChart("Sightings per day, last 30 days", s.Sightings)
	d.Tags = barChart("Top tags by prefixes", s.Tags)
	d.Countries = barChart("Top countries of recently seen prefixes", s.Countries)
	d.ASNs = barChart("Top networks (ASN) of recently seen prefixes", s.ASNs)
	h.render(w, r, http.StatusOK, "dashboard", "Dashboard", "dashboard", d)
}
