package ui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store"
)

// submitLogin serves POST /ui/login: checks the CSRF token, the rate limit and
// the password, then starts a session.
func (h *Handler) submitLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || !validCSRF(r.PostFormValue(csrfField), c.Value) {
		h.csrfRefused(w, r)
		return
	}
	name := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	lp := loginPage{Username: name, Next: r.PostFormValue("next")}
	if name == "" || password == "" {
		lp.Error = "Enter your username and password."
		h.renderLogin(w, r, http.StatusUnprocessableEntity, lp)
		return
	}
	ip, now := clientIP(r), h.now()
	failures, err := h.store.LoginFailures(ctx, name, ip, now.Add(-loginWindow))
	if err != nil {
		h.fault(w, r, "check the login rate limit", err)
		return
	}
	if failures >= maxLoginFailures {
		h.log.WarnContext(ctx, "Refused a login: too many failures.", "username", name, "ip", ip)
		lp.Error = "Too many failed logins for this user from your address. Wait 15 minutes, then try again."
		h.renderLogin(w, r, http.StatusTooManyRequests, lp)
		return
	}
	u, err := h.store.UserByName(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.fault(w, r, "look up the user", err)
		return
	}
	hash := u.PasswordHash
	if err != nil {
		hash = dummyHash
	}
	if !CheckPassword(hash, password) || u.ID == 0 {
		if err := h.store.RecordLoginFailure(ctx, name, ip, now, now.Add(-loginWindow)); err != nil {
			h.fault(w, r, "record a failed login", err)
			return
		}
		h.log.InfoContext(ctx, "A login failed.", "username", name, "ip", ip)
		lp.Error = "Wrong username or password."
		h.renderLogin(w, r, http.StatusUnauthorized, lp)
		return
	}
	if err := h.store.ClearLoginFailures(ctx, name, ip); err != nil {
		h.fault(w, r, "clear failed logins", err)
		return
	}
	secret := api.NewSecret("")
	expires := now.Add(h.sessionTTL)
	if err := h.store.CreateSession(ctx, store.HashSecret(secret), u.ID, api.NewSecret(""), now, expires, ip, r.UserAgent()); err != nil {
		h.fault(w, r, "start a session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: secret, Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: h.secure(r), Expires: expires})
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Path: "/ui/login", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.secure(r)})
	h.log.InfoContext(ctx, "A user logged in.", "username", name, "ip", ip)
	http.Redirect(w, r, safeNext(lp.Next), http.StatusSeeOther)
}
