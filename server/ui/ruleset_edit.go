package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

// editorPage is the data of ruleset_edit.html.
type editorPage struct {
	// Name is the ruleset being edited; empty for a new one.
	Name string
	Text string
	// Error is the parse or compile error; Line and Col locate a syntax error.
	Error     string
	Line, Col int
	Preview   []previewRule
	Default   string
	// Wide lists the cidr values wider than the width limit, each with what
	// it covers: saving them needs allow_wide ticked (the confirmation).
	Wide      []string
	AllowWide bool
}

// previewRule is one compiled rule of a preview: how many prefixes it decides.
type previewRule struct {
	Text   string
	V4, V6 int
}

// editRuleset serves GET /ui/rulesets/{name}/edit and GET /ui/rulesets/new.
func (h *Handler) editRuleset(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if name == "" {
		h.render(w, r, http.StatusOK, "ruleset_edit", "New ruleset", "rulesets",
			editorPage{Text: "ruleset NAME\n  hook input\n  scope tcp dport 22\n  block classification malicious\n"})
		return
	}
	stored, err := h.store.RulesetByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "There is no ruleset named "+name+".")
		return
	}
	if err != nil {
		h.fault(w, r, "read the ruleset", err)
		return
	}
	h.render(w, r, http.StatusOK, "ruleset_edit", "Edit ruleset "+name, "rulesets", editorPage{Name: name, Text: stored.Text})
}

// submitRuleset serves POST /ui/rulesets (action=preview or save): the text is
// parsed and compiled; errors come back with line and column next to the
// editor; a preview compiles over the index (every stored prefix's effective
// view and every geo network) and shows how many
// prefixes each rule decides; save stores the canonical text.
func (h *Handler) submitRuleset(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ep := editorPage{Name: r.PostFormValue("name"), Text: strings.ReplaceAll(r.PostFormValue("text"), "\r\n", "\n")}
	title := "New ruleset"
	if ep.Name != "" {
		title = "Edit ruleset " + ep.Name
	}
	bad := func(msg string) {
		ep.Error = msg
		h.render(w, r, http.StatusUnprocessableEntity, "ruleset_edit", title, "rulesets", ep)
	}
	rs, err := policy.Parse(ep.Text)
	var se *policy.SyntaxError
	if errors.As(err, &se) {
		ep.Line, ep.Col = se.Line, se.Col
		bad(fmt.Sprintf("Line %d, column %d: %s.", se.Line, se.Col, se.Msg))
		return
	}
	if err != nil {
		bad(capitalise(err.Error()) + ".")
		return
	}
	if ep.Name != "" && rs.Name != ep.Name {
		bad(fmt.Sprintf("The text names the ruleset %q, but this is %q; to copy it, start a new ruleset.", rs.Name, ep.Name))
		return
	}
	lists, err := render.ListSelectors(ctx, h.store)
	if err != nil {
		h.fault(w, r, "load lists", err)
		return
	}
	facts := &policy.Facts{Lists: lists}
	preview := r.PostFormValue("action") != "save"
	s, _ := sessionFrom(ctx)
	wide := rs.WideCIDRs()
	var lifted []netip.Prefix
	for _, wt := range wide {
		ep.Wide = append(ep.Wide, fmt.Sprintf("Rule %d: cidr %s is wider than /%d: it covers %s.", wt.Rule, wt.Err.Prefix, wt.Err.Limit, policy.Coverage(wt.Err.Prefix)))
		lifted = append(lifted, wt.Err.Prefix)
	}
	ep.AllowWide = r.PostFormValue(policy.AllowWideParam) == "yes"
	if len(wide) > 0 && !preview && (!ep.AllowWide || !api.MaySendParam(policy.AllowWideParam, s.User.Role)) {
		bad(fmt.Sprintf("The ruleset has %d prefixes wider than /%d (IPv4) or /%d (IPv6); tick the box below to store them anyway.", len(wide), policy.MinBitsV4, policy.MinBitsV6))
		return
	}
	if preview {
		// A preview compiles over every stored prefix's effective view and
		// every geo network in the index, as a full render does; that costs
		// about what a render costs, which is fine for an admin's click.
		facts = h.ix.Snapshot().Entries(true)
		facts.Lists = lists
	}
	compiled, err := policy.Compile(rs, facts)
	if err != nil {
		bad(capitalise(err.Error()) + ".")
		return
	}
	if preview {
		for _, cr := range compiled.Rules {
			ep.Preview = append(ep.Preview, previewRule{Text: policy.FormatRule(cr.Rule), V4: len(cr.Set.V4), V6: len(cr.Set.V6)})
		}
		ep.Default = string(compiled.Default)
		h.render(w, r, http.StatusOK, "ruleset_edit", title, "rulesets", ep)
		return
	}
	js, err := json.Marshal(rs)
	if err != nil {
		h.fault(w, r, "encode the ruleset", err)
		return
	}
	if _, _, err := h.store.PutRuleset(ctx, rs.Name, policy.Format(rs), js, s.User.Name, lifted...); err != nil {
		h.fault(w, r, "save the ruleset", err)
		return
	}
	h.log.InfoContext(ctx, "Saved a ruleset.", "ruleset", rs.Name, "actor", s.User.Name)
	h.redirect(w, r, "/ui/rulesets/"+rs.Name, "Ruleset "+rs.Name+" saved; bouncers get the new render within a second.")
}
