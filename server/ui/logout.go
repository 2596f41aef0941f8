package ui

import (
	"net/http"

	"github.com/muninn/muninn/server/store"
)

// logout serves POST /ui/logout: ends the session and clears the cookie.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := h.store.DeleteSession(r.Context(), store.HashSecret(c.Value)); err != nil {
			h.fault(w, r, "end the session", err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.secure(r)})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
