package ui

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store"
)

// bouncersPage is the data of bouncers.html.
type bouncersPage struct {
	Bouncers []store.Bouncer
	// Error says why a CrowdSec settings form was refused, for bouncer Failed.
	Error, Failed string
	// ServerVersion is this server's version.
	ServerVersion string
}

// Unsupported reports whether a bouncer of version v is too far from this
// server's version (api.BouncerCompatibility).
func (p bouncersPage) Unsupported(v string) bool {
	return api.BouncerCompatibility(p.ServerVersion, v) == api.CompatUnsupported
}

// ExpandModes lists the choices of the CrowdSec range expansion.
func (bouncersPage) ExpandModes() []string {
	return []string{store.ExpandOff, store.ExpandScopes, store.ExpandAlways}
}

// listBouncers serves GET /ui/bouncers: every bouncer with its health, the
// CrowdSec settings and what a CrowdSec bouncer reported.
func (h *Handler) listBouncers(w http.ResponseWriter, r *http.Request) {
	h.renderBouncers(w, r, http.StatusOK, bouncersPage{})
}

func (h *Handler) renderBouncers(w http.ResponseWriter, r *http.Request, status int, p bouncersPage) {
	bs, err := h.store.Bouncers(r.Context())
	if err != nil {
		h.fault(w, r, "list bouncers", err)
		return
	}
	p.Bouncers, p.ServerVersion = bs, h.version
	h.render(w, r, status, "bouncers", "Bouncers", "bouncers", p)
}

// submitBouncerCrowdSec serves POST /ui/bouncers/{name}/crowdsec: the range
// expansion of the CrowdSec-compatible API for one bouncer (the same bounds
// as PUT /api/v1/bouncers/{name}).
func (h *Handler) submitBouncerCrowdSec(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	cs := store.CrowdSecSettings{Expand: r.PostFormValue("expand")}
	v4, err4 := strconv.Atoi(r.PostFormValue("v4_bits"))
	v6, err6 := strconv.Atoi(r.PostFormValue("v6_bits"))
	cs.V4Bits, cs.V6Bits = v4, v6
	var msg string
	switch {
	case cs.Expand != store.ExpandOff && cs.Expand != store.ExpandScopes && cs.Expand != store.ExpandAlways:
		msg = "Choose off, scopes or always."
	case err4 != nil || v4 < 16 || v4 > 32:
		msg = "The IPv4 width is a prefix length from 16 to 32 (a /24 expands into 256 addresses)."
	case err6 != nil || v6 < 112 || v6 > 128:
		msg = "The IPv6 width is a prefix length from 112 to 128."
	}
	if msg != "" {
		h.renderBouncers(w, r, http.StatusUnprocessableEntity, bouncersPage{Error: msg, Failed: name})
		return
	}
	s, _ := sessionFrom(r.Context())
	if _, err := h.store.SetBouncerCrowdSec(r.Context(), name, cs, s.User.Name); errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "There is no bouncer named "+name+".")
		return
	} else if err != nil {
		h.fault(w, r, "change the CrowdSec settings", err)
		return
	}
	h.redirect(w, r, "/ui/bouncers", "Saved the CrowdSec settings of "+name+".")
}
