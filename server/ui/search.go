package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// searchPage is the data of search.html.
type searchPage struct {
	Query string
	// What says what the query was read as.
	What  string
	Items []store.Item
	Next  string
	First string
	Error string
}

const searchPageSize = 50

// showSearch serves GET /ui/search?q=: an address goes to its page; a CIDR lists
// the stored prefixes inside it; a classification or anything else (a tag)
// lists the prefixes carrying it. Pages follow an id cursor (after=).
func (h *Handler) showSearch(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	sp := searchPage{Query: q}
	if q == "" {
		h.render(w, r, http.StatusOK, "search", "Search", "search", sp)
		return
	}
	var f store.Filter
	switch {
	case strings.Contains(q, "/"):
		p, err := parseTarget(q)
		if err != nil {
			sp.Error = capitalise(err.Error()) + "."
			h.render(w, r, http.StatusBadRequest, "search", "Search", "search", sp)
			return
		}
		f.Within, sp.What = &p, "stored prefixes inside "+p.String()
	case resolve.ValidClassification(q):
		f.Classification, sp.What = q, "prefixes classified "+q
	default:
		if p, err := parseTarget(q); err == nil {
			http.Redirect(w, r, prefixURL(p), http.StatusSeeOther)
			return
		}
		f.Tag, sp.What = q, "prefixes tagged "+strconv.Quote(q)
	}
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	items, err := h.store.Search(r.Context(), f, after, searchPageSize+1, h.now())
	if err != nil {
		h.fault(w, r, "search", err)
		return
	}
	if len(items) > searchPageSize {
		items = items[:searchPageSize]
		sp.Next = "/ui/search?q=" + url.QueryEscape(q) + "&after=" + strconv.FormatInt(items[len(items)-1].ID, 10)
	}
	if after > 0 {
		sp.First = "/ui/search?q=" + url.QueryEscape(q)
	}
	sp.Items = items
	h.render(w, r, http.StatusOK, "search", "Search: "+q, "search", sp)
}
