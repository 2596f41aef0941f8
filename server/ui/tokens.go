package ui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store"
)

// tokensPage is the data of tokens.html.
type tokensPage struct {
	Tokens []store.Token
	// Secret is a just-created token's secret, shown this once.
	Secret  string
	Created string
	Form    tokenForm
}

// tokenForm is the create-token form as typed.
type tokenForm struct {
	Name    string
	Role    string
	Expires string
	Errors  map[string]string
}

// Roles lists the choices of the role field.
func (tokenForm) Roles() []string { return []string{api.RoleReader, api.RoleWriter, api.RoleAdmin} }

// listTokens serves GET /ui/tokens.
func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request) {
	h.renderTokens(w, r, http.StatusOK, tokensPage{Form: tokenForm{Role: api.RoleReader}})
}

func (h *Handler) renderTokens(w http.ResponseWriter, r *http.Request, status int, tp tokensPage) {
	var err error
	if tp.Tokens, err = h.store.Tokens(r.Context()); err != nil {
		h.fault(w, r, "list tokens", err)
		return
	}
	h.render(w, r, status, "tokens", "API tokens", "tokens", tp)
}

// createToken serves POST /ui/tokens. The secret is shown in the answer to
// this POST, once, and never again (it is not stored), so this is the one
// form that renders instead of redirecting; the page is not cached.
func (h *Handler) createToken(w http.ResponseWriter, r *http.Request) {
	f := tokenForm{Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role"),
		Expires: strings.TrimSpace(r.PostFormValue("expires")), Errors: map[string]string{}}
	if f.Name == "" {
		f.Errors["name"] = "Give the token a name, e.g. the host or pipeline that will use it."
	} else if len(f.Name) > 100 {
		f.Errors["name"] = "The name is longer than 100 characters."
	}
	if api.RoleRank(f.Role) == 0 {
		f.Errors["role"] = "Choose reader, writer or admin."
	}
	var exp *time.Time
	if f.Expires != "" {
		d, err := parseLifetime(f.Expires)
		if err != nil {
			f.Errors["expires"] = "Use a lifetime such as 720h or 90d, or leave it empty to never expire."
		} else {
			t := h.now().Add(d)
			exp = &t
		}
	}
	if len(f.Errors) > 0 {
		h.renderTokens(w, r, http.StatusUnprocessableEntity, tokensPage{Form: f})
		return
	}
	s, _ := sessionFrom(r.Context())
	t, secret, err := api.CreateToken(r.Context(), h.store, f.Name, f.Role, exp, s.User.Name)
	if errors.Is(err, store.ErrConflict) {
		f.Errors["name"] = "A token with this name exists already."
		h.renderTokens(w, r, http.StatusUnprocessableEntity, tokensPage{Form: f})
		return
	}
	if err != nil {
		h.fault(w, r, "create the token", err)
		return
	}
	h.log.InfoContext(r.Context(), "Created a token.", "token", t.Name, "role", t.Role, "actor", s.User.Name)
	h.renderTokens(w, r, http.StatusOK, tokensPage{Secret: secret, Created: t.Name, Form: tokenForm{Role: api.RoleReader}})
}

// revokeToken serves POST /ui/tokens/{id}/revoke.
func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "That is not a token id.")
		return
	}
	s, _ := sessionFrom(r.Context())
	err = h.store.DeleteToken(r.Context(), id, s.User.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.redirect(w, r, "/ui/tokens", "That token was revoked already.")
	case err != nil:
		h.fault(w, r, "revoke the token", err)
	default:
		h.redirect(w, r, "/ui/tokens", "Token revoked. Clients using it are refused within seconds.")
	}
}
