package ui

import (
	"context"
	"errors"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store"
)

// usernamePattern is what a username may be: short, and safe to store, log
// and show anywhere.
var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ValidUsername reports whether name may be a username: 1–64 letters, digits
// or ._@- starting with a letter or digit.
func ValidUsername(name string) bool { return usernamePattern.MatchString(name) }

// maxPasswordBytes bounds the password a login hashes.
const maxPasswordBytes = 1024

// submitLogin serves POST /ui/login: checks the CSRF token, claims an attempt
// of the username's throttle, then checks the password (a bounded number at
// once) and starts a session.
func (h *Handler) submitLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || !validCSRF(r.PostFormValue(csrfField), c.Value) || !h.validLoginToken(ctx, c.Value) {
		h.csrfRefused(w, r)
		return
	}
	name := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	lp := loginPage{Next: r.PostFormValue("next")}
	if name == "" || password == "" {
		lp.Error = "Enter your username and password."
		h.renderLogin(w, r, http.StatusUnprocessableEntity, lp)
		return
	}
	ip, now := api.ClientOf(r, h.trusted).Addr.String(), h.now()
	if !ValidUsername(name) || len(password) > maxPasswordBytes {
		// No such user can exist: nothing to hash, store or log verbatim.
		h.log.InfoContext(ctx, "A login failed: the username is not a valid one.", "username_bytes", len(name), "ip", ip)
		lp.Error = "Wrong username or password."
		h.renderLogin(w, r, http.StatusUnauthorized, lp)
		return
	}
	lp.Username = name
	wait, err := h.store.ClaimLoginAttempt(ctx, name, now, now.Add(-loginWindow), loginDelay)
	if err != nil {
		h.fault(w, r, "check the login rate limit", err)
		return
	}
	if wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		h.log.WarnContext(ctx, "Refused a login: failed logins for this user must wait.", "username", name, "ip", ip, "wait_s", secs)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		lp.Error = "Too many failed logins for this user. Wait " + strconv.Itoa(secs) + " seconds, then try again."
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
	ok, err := h.checkPassword(ctx, hash, password)
	if err != nil {
		h.log.WarnContext(ctx, "Refused a login: every password check slot is busy.", "username", name, "ip", ip)
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "Too many logins are being checked at once. Try again in a few seconds.")
		return
	}
	if !ok || u.ID == 0 {
		h.log.InfoContext(ctx, "A login failed.", "username", name, "ip", ip)
		lp.Error = "Wrong username or password."
		h.renderLogin(w, r, http.StatusUnauthorized, lp)
		return
	}
	if err := h.store.LoginSucceeded(ctx, name); err != nil {
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

// errHashBusy is checkPassword's answer when no slot freed up in time.
var errHashBusy = errors.New("ui: every password check slot is busy")

// checkPassword checks password against hash in one of the bounded slots:
// argon2id takes 19 MiB a check, and logins must not be a way to exhaust
// the server's memory.
func (h *Handler) checkPassword(ctx context.Context, hash, password string) (bool, error) {
	t := time.NewTimer(hashSlotWait)
	defer t.Stop()
	select {
	case h.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
		return false, errHashBusy
	}
	defer func() { <-h.hashSlots }()
	return h.check(hash, password), nil
}
