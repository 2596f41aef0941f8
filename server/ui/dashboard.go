package ui

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// dashboardPage is the data of dashboard.html.
type dashboardPage struct {
	Counts    dashboardCounts
	At        time.Time
	Sightings template.HTML
	Tags      template.HTML
	Countries template.HTML
	ASNs      template.HTML
	Feeds     []store.Feed
	Bouncers  []store.Bouncer
	Flows     flowDashboard
}

// dashboardCounts are the dashboard's headline numbers.
type dashboardCounts struct {
	// Prefixes counts the stored prefixes that exist (a live assertion or a
	// sighting), Malicious those whose effective view is malicious: what a
	// search lists.
	Prefixes  int64
	Malicious int64
	// Tags counts the defined tags (the tag catalogue), Tokens the API
	// tokens, Feeds the feeds and FeedsFailing the enabled feeds whose last
	// run failed.
	Tags         int64
	Tokens       int64
	Feeds        int64
	FeedsFailing int64
}

// dashboardStats are the dashboard's aggregates. At a million prefixes and
// millions of sightings they take most of a second to compute, so they are
// computed off the request path (Run) and served from memory.
type dashboardStats struct {
	At        time.Time
	Counts    dashboardCounts
	Sightings []store.Bucket
	Tags      []store.Bucket
	Countries []store.Bucket
	ASNs      []store.Bucket
	// Gen is the generation of the index snapshot the prefix counts and the
	// tag, country and ASN charts come from.
	Gen uint64
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
	if s.Sightings, err = h.store.SightingsPerDay(ctx, now, 30); err != nil {
		return nil, err
	}
	tags, err := h.store.Tags(ctx)
	if err != nil {
		return nil, err
	}
	tokens, err := h.store.CountTokens(ctx, "")
	if err != nil {
		return nil, err
	}
	feeds, err := h.store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	s.Counts = dashboardCounts{Tags: int64(len(tags)), Tokens: int64(tokens), Feeds: int64(len(feeds))}
	for _, f := range feeds {
		if f.Enabled && f.LastError != "" {
			s.Counts.FeedsFailing++
		}
	}
	h.statsMu.Lock()
	prev := h.stats
	h.statsMu.Unlock()
	h.indexStats(s, prev)
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
	if d.Flows, err = h.flowPanels(ctx); err != nil {
		h.fault(w, r, "compute the flow panels", err)
		return
	}
	d.Sightings = columnChart("Sightings per day, last 30 days", s.Sightings)
	d.Tags = barChart("Top tags by prefixes", s.Tags)
	d.Countries = barChart("Top countries of recently seen prefixes", s.Countries)
	d.ASNs = barChart("Top networks (ASN) of recently seen prefixes", s.ASNs)
	h.render(w, r, http.StatusOK, "dashboard", "Dashboard", "dashboard", d)
}

// recentSample bounds the geo charts: they describe the most recently seen
// stored prefixes.
const recentSample = 5000

// indexStats fills the counts of stored prefixes and the tag, country and ASN
// charts from one walk of the index's effective views: a prefix counts under
// a tag when its view carries the tag (inherited or its own, not suppressed),
// exactly as a search by that tag lists it. When the index has not changed
// since prev was computed, prev's figures are kept: the walk resolves every
// stored prefix.
func (h *Handler) indexStats(s, prev *dashboardStats) {
	snap := h.ix.Snapshot()
	s.Gen = snap.Gen()
	if prev != nil && prev.Gen == s.Gen {
		s.Counts.Prefixes, s.Counts.Malicious = prev.Counts.Prefixes, prev.Counts.Malicious
		s.Tags, s.Countries, s.ASNs = prev.Tags, prev.Countries, prev.ASNs
		return
	}
	tags := map[string]int64{}
	recent := make(recentHeap, 0, recentSample)
	snap.Walk(func(p netip.Prefix, v resolve.View) bool {
		s.Counts.Prefixes++
		if v.Classification == resolve.Malicious {
			s.Counts.Malicious++
		}
		for _, t := range v.TagNames() {
			tags[t]++
		}
		switch {
		case len(recent) < recentSample:
			heap.Push(&recent, seen{p, v.LastSeen})
		case v.LastSeen.After(recent[0].at):
			recent[0] = seen{p, v.LastSeen}
			heap.Fix(&recent, 0)
		}
		return true
	})
	countries, asns := map[string]int64{}, map[string]int64{}
	for _, r := range recent {
		g, ok := geoOf(snap, r.p)
		if !ok {
			continue
		}
		if g.Country != "" {
			countries[g.Country]++
		}
		if g.ASN != 0 {
			asns[fmt.Sprintf("AS%d %s", g.ASN, g.Org)]++
		}
	}
	s.Tags, s.Countries, s.ASNs = topBuckets(tags, 10), topBuckets(countries, 10), topBuckets(asns, 10)
}

// seen is a stored prefix and when it was last seen.
type seen struct {
	p  netip.Prefix
	at time.Time
}

// recentHeap is a min-heap of prefixes by last seen: its root is the least
// recently seen of those kept.
type recentHeap []seen

func (h recentHeap) Len() int           { return len(h) }
func (h recentHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h recentHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recentHeap) Push(x any)        { *h = append(*h, x.(seen)) }
func (h *recentHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// topBuckets returns the limit largest counts, largest first, ties by label.
func topBuckets(counts map[string]int64, limit int) []store.Bucket {
	out := make([]store.Bucket, 0, len(counts))
	for l, n := range counts {
		out = append(out, store.Bucket{Label: l, Count: n})
	}
	slices.SortFunc(out, func(a, b store.Bucket) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
	return out[:min(limit, len(out))]
}
