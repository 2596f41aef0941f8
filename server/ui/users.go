package ui

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store"
)

// usersPage is the data of users.html.
type usersPage struct {
	Users []store.User
	// Me is the logged-in admin, whose own row offers no action (an admin
	// cannot lock themselves out).
	Me string
}

// Roles lists the choices of the role field.
func (usersPage) Roles() []string { return []string{api.RoleReader, api.RoleWriter, api.RoleAdmin} }

// listUsers serves GET /ui/users.
func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := h.store.Users(r.Context())
	if err != nil {
		h.fault(w, r, "list users", err)
		return
	}
	s, _ := sessionFrom(r.Context())
	h.render(w, r, http.StatusOK, "users", "Users", "users", usersPage{Users: us, Me: s.User.Name})
}

// changeUser serves POST /ui/users/{name}/{action} (role, disable, enable,
// delete): the same store calls as `muninn user`. Disabling or deleting ends
// the user's sessions at once.
func (h *Handler) changeUser(w http.ResponseWriter, r *http.Request) {
	name, action := chi.URLParam(r, "name"), chi.URLParam(r, "action")
	s, _ := sessionFrom(r.Context())
	if name == s.User.Name {
		h.fail(w, r, http.StatusBadRequest, "You cannot change your own account here (that could lock every admin out): ask another admin, or use `muninn user` on the server.")
		return
	}
	var err error
	var done string
	now := h.now()
	switch action {
	case "role":
		role := r.PostFormValue("role")
		if api.RoleRank(role) == 0 {
			h.fail(w, r, http.StatusBadRequest, "Choose reader, writer or admin.")
			return
		}
		_, err = h.store.UpdateUser(r.Context(), name, store.UserChange{Role: &role}, now, s.User.Name)
		done = name + " is now " + role + "."
	case "disable", "enable":
		disabled := action == "disable"
		_, err = h.store.UpdateUser(r.Context(), name, store.UserChange{Disabled: &disabled}, now, s.User.Name)
		done = name + " is enabled."
		if disabled {
			done = name + " is disabled; their sessions have ended."
		}
	case "delete":
		err = h.store.DeleteUser(r.Context(), name, s.User.Name)
		done = name + " is deleted; their sessions have ended."
	default:
		h.fail(w, r, http.StatusNotFound, "No such action on a user: "+action+".")
		return
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.redirect(w, r, "/ui/users", "There is no user named "+name+" (any more).")
	case err != nil:
		h.fault(w, r, "change the user", err)
	default:
		h.log.InfoContext(r.Context(), "Changed a user.", "user", name, "action", action, "actor", s.User.Name)
		h.redirect(w, r, "/ui/users", done)
	}
}
