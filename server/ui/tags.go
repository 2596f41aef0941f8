package ui

import (
	"net/http"

	"github.com/muninn/muninn/server/store"
)

// listTags serves GET /ui/tags.
func (h *Handler) listTags(w http.ResponseWriter, r *http.Request) {
	tags, err := h.store.Tags(r.Context())
	if err != nil {
		h.fault(w, r, "list tags", err)
		return
	}
	h.render(w, r, http.StatusOK, "tags", "Tags", "tags", struct{ Tags []store.Tag }{tags})
}
