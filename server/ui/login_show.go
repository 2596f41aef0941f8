package ui

import (
	"net/http"

	"github.com/muninn/muninn/server/api"
)

// loginPage is the data of login.html.
type loginPage struct {
	Username string
	Next     string
	Error    string
	CSRF     string
}

// showLogin serves GET /ui/login.
func (h *Handler) showLogin(w http.ResponseWriter, r *http.Request) {
	if _, err := h.lookupSession(r); err == nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	h.renderLogin(w, r, http.StatusOK, loginPage{Next: r.URL.Query().Get("next")})
}

// renderLogin shows the login form with a fresh pre-session CSRF token.
func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, lp loginPage) {
	lp.CSRF = api.NewSecret("")
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: lp.CSRF, Path: "/ui/login", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: h.secure(r), MaxAge: 3600})
	lp.Next = safeNext(lp.Next)
	h.render(w, r, status, "login", "Log in", "login", lp)
}
