package ui

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/store"
)

// eventsPage is the data of events.html.
type eventsPage struct {
	Kind, Subject string
	Events        []eventRow
	Next, First   string
}

// eventRow is an event with its one-line summary and, for an address, the
// address page.
type eventRow struct {
	store.Event
	Summary string
	Link    string
}

const eventsPageSize = 50

// listEvents serves GET /ui/events?kind=&subject=&before=ID.
func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ep := eventsPage{Kind: strings.TrimSpace(q.Get("kind")), Subject: strings.TrimSpace(q.Get("subject"))}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	evs, err := h.store.ListEvents(r.Context(), store.EventFilter{Kind: ep.Kind, Subject: ep.Subject, Before: before, Limit: eventsPageSize + 1})
	if err != nil {
		h.fault(w, r, "list events", err)
		return
	}
	keep := url.Values{"kind": {ep.Kind}, "subject": {ep.Subject}}
	if len(evs) > eventsPageSize {
		evs = evs[:eventsPageSize]
		next := url.Values{"kind": {ep.Kind}, "subject": {ep.Subject}, "before": {strconv.FormatInt(evs[len(evs)-1].ID, 10)}}
		ep.Next = "/ui/events?" + next.Encode()
	}
	if before > 0 {
		ep.First = "/ui/events?" + keep.Encode()
	}
	for _, ev := range evs {
		row := eventRow{Event: ev, Summary: alert.Summary(ev)}
		if a, ok := alert.Addr(ev); ok {
			row.Link = prefixURL(netip.PrefixFrom(a, a.BitLen()))
		}
		ep.Events = append(ep.Events, row)
	}
	h.render(w, r, http.StatusOK, "events", "Events", "events", ep)
}
