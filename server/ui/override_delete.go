package ui

import (
	"errors"
	"net/http"

	"github.com/muninn/muninn/server/store"
)

// deleteOverride serves POST /ui/override/delete: removes the manual override
// of the form's prefix.
func (h *Handler) deleteOverride(w http.ResponseWriter, r *http.Request) {
	target, err := parseTarget(r.PostFormValue("prefix"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, capitalise(err.Error())+".")
		return
	}
	s, _ := sessionFrom(r.Context())
	err = h.store.DeleteOverride(r.Context(), target, s.User.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.redirect(w, r, prefixURL(target), "There was no override on "+prefixTitle(target)+".")
	case err != nil:
		h.fault(w, r, "delete the override", err)
	default:
		h.log.InfoContext(r.Context(), "Deleted an override.", "prefix", target.String(), "actor", s.User.Name)
		h.catchUp(r.Context())
		h.redirect(w, r, prefixURL(target), "Override deleted from "+prefixTitle(target)+".")
	}
}
