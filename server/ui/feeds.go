package ui

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/feed"
)

// listFeeds serves GET /ui/feeds: every feed with its health.
func (h *Handler) listFeeds(w http.ResponseWriter, r *http.Request) {
	feeds, err := h.store.Feeds(r.Context())
	if err != nil {
		h.fault(w, r, "list feeds", err)
		return
	}
	h.render(w, r, http.StatusOK, "feeds", "Feeds", "feeds", struct{ Feeds []store.Feed }{feeds})
}

// feedPage is the data of feed.html.
type feedPage struct {
	Feed store.Feed
	Runs []store.FeedRun
	// Rejects is the newest run with rejected lines, if any.
	Rejects *store.FeedRun
}

// showFeed serves GET /ui/feeds/{name}: a feed and its recent runs.
func (h *Handler) showFeed(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	f, err := h.store.FeedByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "There is no feed named "+name+".")
		return
	}
	if err != nil {
		h.fault(w, r, "read the feed", err)
		return
	}
	runs, err := h.store.FeedRuns(r.Context(), name, 30)
	if err != nil {
		h.fault(w, r, "list the feed's runs", err)
		return
	}
	f.URL = feed.RedactURL(f.URL)
	page := feedPage{Feed: f, Runs: runs}
	for i := range runs {
		if len(runs[i].RejectedLines) > 0 {
			page.Rejects = &runs[i]
			break
		}
	}
	h.render(w, r, http.StatusOK, "feed", "Feed "+name, "feeds", page)
}
