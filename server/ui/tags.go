package ui

import (
	"net/http"

	"github.com/muninn/muninn/server/store"
)

// tagRow is a tag's definition with how many existing prefixes carry it in
// their effective view (from the index, as GET /api/v1/tags reports it).
type tagRow struct {
	store.Tag
	Prefixes int64
}

// listTags serves GET /ui/tags.
func (h *Handler) listTags(w http.ResponseWriter, r *http.Request) {
	tags, err := h.store.Tags(r.Context())
	if err != nil {
		h.fault(w, r, "list tags", err)
		return
	}
	counts := h.ix.Snapshot().TagCounts()
	rows := make([]tagRow, len(tags))
	for i, t := range tags {
		rows[i] = tagRow{Tag: t, Prefixes: counts[t.Name]}
	}
	h.render(w, r, http.StatusOK, "tags", "Tags", "tags", struct{ Tags []tagRow }{rows})
}
