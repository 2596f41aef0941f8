package ui

import (
	"net/http"

	"github.com/muninn/muninn/server/store"
)

// listBouncers serves GET /ui/bouncers: every bouncer with its health.
func (h *Handler) listBouncers(w http.ResponseWriter, r *http.Request) {
	bs, err := h.store.Bouncers(r.Context())
	if err != nil {
		h.fault(w, r, "list bouncers", err)
		return
	}
	h.render(w, r, http.StatusOK, "bouncers", "Bouncers", "bouncers", struct{ Bouncers []store.Bouncer }{bs})
}
