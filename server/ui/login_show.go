package ui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

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
	tok, err := h.loginToken(r.Context())
	if err != nil {
		h.fault(w, r, "make the login form's security token", err)
		return
	}
	lp.CSRF = tok
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: lp.CSRF, Path: "/ui/login", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: h.secure(r), MaxAge: 3600})
	lp.Next = safeNext(lp.Next)
	h.render(w, r, status, "login", "Log in", "login", lp)
}

// loginTokenTTL is how long a login form's CSRF token is good for.
const loginTokenTTL = time.Hour

// loginToken returns a fresh login CSRF token: a random nonce and an expiry,
// signed with the servers' shared key (HMAC-SHA256). The form and a cookie
// both carry it (double submit); the signature means a token planted in a
// cookie by anyone but a muninn server is refused.
func (h *Handler) loginToken(ctx context.Context) (string, error) {
	key, err := h.loginKey(ctx)
	if err != nil {
		return "", err
	}
	nonce := api.NewSecret("")
	payload := nonce + "." + strconv.FormatInt(h.now().Add(loginTokenTTL).Unix(), 10)
	return payload + "." + signLogin(key, payload), nil
}

// validLoginToken checks a login token's signature and expiry.
func (h *Handler) validLoginToken(ctx context.Context, tok string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return false
	}
	payload, mac := tok[:i], tok[i+1:]
	_, exp, ok := strings.Cut(payload, ".")
	if !ok {
		return false
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || h.now().Unix() > expires {
		return false
	}
	key, err := h.loginKey(ctx)
	if err != nil {
		h.log.ErrorContext(ctx, "Could not load the login token key.", "error", err)
		return false
	}
	return hmac.Equal([]byte(mac), []byte(signLogin(key, payload)))
}

func signLogin(key []byte, payload string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("muninn login csrf\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// loginKey is the HMAC key of login tokens, shared by every process through
// the store and cached after the first load.
func (h *Handler) loginKey(ctx context.Context) ([]byte, error) {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if h.csrfKey != nil {
		return h.csrfKey, nil
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh) // crypto/rand.Read never fails on supported platforms
	key, err := h.store.ServerKey(ctx, "login_csrf", fresh)
	if err != nil {
		return nil, fmt.Errorf("ui: login token key: %w", err)
	}
	h.csrfKey = key
	return key, nil
}
