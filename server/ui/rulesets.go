package ui

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

// rulesetRow is a ruleset in the list with the bouncers enforcing it.
type rulesetRow struct {
	store.Ruleset
	Bouncers []string
}

// listRulesets serves GET /ui/rulesets.
func (h *Handler) listRulesets(w http.ResponseWriter, r *http.Request) {
	rulesets, err := h.store.Rulesets(r.Context())
	if err != nil {
		h.fault(w, r, "list rulesets", err)
		return
	}
	bouncers, err := h.store.Bouncers(r.Context())
	if err != nil {
		h.fault(w, r, "list bouncers", err)
		return
	}
	rows := make([]rulesetRow, 0, len(rulesets))
	for _, rs := range rulesets {
		row := rulesetRow{Ruleset: rs}
		for _, b := range bouncers {
			if slices.Contains(b.Rulesets, rs.Name) {
				row.Bouncers = append(row.Bouncers, b.Name)
			}
		}
		rows = append(rows, row)
	}
	h.render(w, r, http.StatusOK, "rulesets", "Rulesets", "rulesets", struct{ Rulesets []rulesetRow }{rows})
}

// rulesetPage is the data of ruleset.html: a ruleset, its latest render and
// an explanation of one address.
type rulesetPage struct {
	Ruleset  store.Ruleset
	Render   *store.StoredRender
	IP       string
	IPError  string
	Explain  *policy.Explanation
	Bouncers []string
}

// showRuleset serves GET /ui/rulesets/{name}?ip=A.
func (h *Handler) showRuleset(w http.ResponseWriter, r *http.Request) {
	ctx, name := r.Context(), chi.URLParam(r, "name")
	stored, err := h.store.RulesetByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "There is no ruleset named "+name+".")
		return
	}
	if err != nil {
		h.fault(w, r, "read the ruleset", err)
		return
	}
	rp := rulesetPage{Ruleset: stored, IP: strings.TrimSpace(r.URL.Query().Get("ip"))}
	if rd, err := h.store.RenderSummary(ctx, name); err == nil {
		rp.Render = &rd
	} else if !errors.Is(err, store.ErrNotFound) {
		h.fault(w, r, "read the latest render", err)
		return
	}
	bouncers, err := h.store.Bouncers(ctx)
	if err != nil {
		h.fault(w, r, "list bouncers", err)
		return
	}
	for _, b := range bouncers {
		if slices.Contains(b.Rulesets, name) {
			rp.Bouncers = append(rp.Bouncers, b.Name)
		}
	}
	status := http.StatusOK
	if rp.IP != "" {
		addr, err := api.ParseAddr(rp.IP)
		if err != nil {
			rp.IPError, status = "Enter one IP address, e.g. 192.0.2.7.", http.StatusBadRequest
		} else if ex, err := h.explain(r, stored, addr); err != nil {
			h.fault(w, r, "explain the ruleset", err)
			return
		} else {
			rp.Explain = &ex
		}
	}
	h.render(w, r, status, "ruleset", "Ruleset "+name, "rulesets", rp)
}

// explain evaluates a stored ruleset for one address over the index: its
// view with the resolver's explanation and its geo network, with the named
// lists.
func (h *Handler) explain(r *http.Request, stored store.Ruleset, addr netip.Addr) (policy.Explanation, error) {
	rs, err := policy.Parse(stored.Text)
	if err != nil {
		return policy.Explanation{}, err
	}
	lists, err := render.ListSelectors(r.Context(), h.store)
	if err != nil {
		return policy.Explanation{}, err
	}
	addr = addr.Unmap()
	snap := h.ix.Snapshot()
	v, _ := snap.Explain(netip.PrefixFrom(addr, addr.BitLen()))
	return policy.Explain(rs, lists, addr, v, geoAt(snap, addr))
}
