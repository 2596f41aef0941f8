package ui

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
)

// searchPage is the data of search.html.
type searchPage struct {
	Query string
	// What says what the query was read as.
	What string
	// Items are stored prefixes with their effective views.
	Items []index.Row
	Next  string
	First string
	Error string
}

const searchPageSize = 50

// showSearch serves GET /ui/search?q=: an address goes to its page; a CIDR lists
// the stored prefixes inside it; a classification or anything else (a tag)
// lists the prefixes carrying it, each with its effective view from the index
// (an inner prefix inherits the tags and classification of the prefixes
// containing it, and loses the tags a suppress hides). Pages follow a prefix
// cursor (after=, the last prefix of the previous page).
func (h *Handler) showSearch(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	sp := searchPage{Query: q}
	if q == "" {
		h.render(w, r, http.StatusOK, "search", "Search", "search", sp)
		return
	}
	var f index.Filter
	switch {
	case strings.Contains(q, "/"):
		p, err := parseTarget(q)
		if err != nil {
			sp.Error = capitalise(err.Error()) + "."
			h.render(w, r, http.StatusBadRequest, "search", "Search", "search", sp)
			return
		}
		f.Within, sp.What = p, "stored prefixes inside "+p.String()
	case resolve.ValidClassification(q):
		f.Classification, sp.What = q, "prefixes classified "+q
	default:
		if p, err := parseTarget(q); err == nil {
			http.Redirect(w, r, prefixURL(p), http.StatusSeeOther)
			return
		}
		f.Tag, sp.What = q, "prefixes tagged "+strconv.Quote(q)
	}
	var after netip.Prefix
	if a := r.URL.Query().Get("after"); a != "" {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			sp.Error = "The page cursor " + strconv.Quote(a) + " is not a prefix; start again from the first page."
			h.render(w, r, http.StatusBadRequest, "search", "Search", "search", sp)
			return
		}
		after = p
	}
	items, next := h.ix.Snapshot().Search(f, after, searchPageSize)
	if next.IsValid() {
		sp.Next = "/ui/search?q=" + url.QueryEscape(q) + "&after=" + url.QueryEscape(next.String())
	}
	if after.IsValid() {
		sp.First = "/ui/search?q=" + url.QueryEscape(q)
	}
	sp.Items = items
	h.render(w, r, http.StatusOK, "search", "Search: "+q, "search", sp)
}
