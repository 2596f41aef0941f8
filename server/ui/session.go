package ui

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store"
)

const (
	sessionCookie = "muninn_session"
	// loginCSRFCookie carries the login form's token before there is a session
	// (double-submit), so a cross-site page cannot log a browser in.
	loginCSRFCookie = "muninn_login_csrf"
	csrfField       = "csrf"
)

type sessionKey struct{}

// sessionFrom returns the session requireSession put in ctx.
func sessionFrom(ctx context.Context) (store.Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(store.Session)
	return s, ok
}

// lookupSession returns the live session of r's cookie.
func (h *Handler) lookupSession(r *http.Request) (store.Session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return store.Session{}, store.ErrNotFound
	}
	return h.store.SessionByHash(r.Context(), store.HashSecret(c.Value), h.now())
}

// requireSession lets through requests with a live session, with the user as
// the principal (so the audit log names them), and checks the CSRF token of
// every unsafe method. Without a session, GETs go to the login page.
func (h *Handler) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := h.lookupSession(r)
		if errors.Is(err, store.ErrNotFound) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.fail(w, r, http.StatusForbidden, "Your session has ended. Log in again, then repeat what you were doing.")
			return
		}
		if err != nil {
			h.fault(w, r, "check your session", err)
			return
		}
		ctx := context.WithValue(r.Context(), sessionKey{}, s)
		ctx = api.WithPrincipal(ctx, api.Principal{Kind: "user", Name: s.User.Name, Role: s.User.Role, ID: s.User.ID})
		r = r.WithContext(ctx)
		if !safeMethod(r.Method) && !validCSRF(r.PostFormValue(csrfField), s.CSRF) {
			h.csrfRefused(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func validCSRF(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (h *Handler) csrfRefused(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, http.StatusForbidden, "The form did not carry a valid security token (CSRF), so nothing was changed. "+
		"This happens when a form is sent from another site or an old tab: reload the page and try again.")
}

// requireRole refuses users whose role is below role.
func (h *Handler) requireRole(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := sessionFrom(r.Context())
			if api.RoleRank(s.User.Role) < api.RoleRank(role) {
				h.fail(w, r, http.StatusForbidden, "This needs the "+role+" role; you ("+s.User.Name+") have the "+s.User.Role+" role.")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// safeNext returns next when it is a path inside the UI, else /ui/ (no open redirects).
func safeNext(next string) string {
	if strings.HasPrefix(next, "/ui/") && !strings.HasPrefix(next, "//") && !strings.Contains(next, "\\") && !strings.HasPrefix(next, "/ui/login") {
		return next
	}
	return "/ui/"
}
