package ui

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// confirmPage is the data of confirm.html: what an override will change.
type confirmPage struct {
	impact
	Target      netip.Prefix
	Form        overrideForm
	AddedTags   []string
	RemovedTags []string
	// Wide says the target is wider than the width limit (an admin is
	// confirming; the form then carries allow_wide=yes), with what it covers.
	Wide string
	// WouldBlock lists, for a wide target, each ruleset that would block it
	// and its bouncers.
	WouldBlock []rulesetChange
}

// ClassificationChanges reports whether the classification will change.
func (c confirmPage) ClassificationChanges() bool {
	return c.Before.Classification != c.After.Classification
}

// submitOverride serves POST /ui/override. Without confirm=yes it shows what
// the override will change; with it, it stores the override.
func (h *Handler) submitOverride(w http.ResponseWriter, r *http.Request) {
	ctx, now := r.Context(), h.now()
	f, target, o := readOverrideForm(r, now)
	actor, role := "", ""
	if s, ok := sessionFrom(ctx); ok {
		actor, role = s.User.Name, s.User.Role
	}
	// The one width rule; lifting it is what allow_wide does in the API, so
	// the same role may do it here, and only after this confirmation.
	wide := len(f.Errors) == 0 && policy.CheckWidth(target) != nil
	if wide && !api.MaySendParam(policy.AllowWideParam, role) {
		f.Errors["prefix"] = fmt.Sprintf("%s is wider than %s: it covers %s. Only an %s may override a network this wide.",
			target.String(), widthLimit(target), policy.Coverage(target), api.ParamRole(policy.AllowWideParam))
	}
	if len(f.Errors) > 0 {
		h.rerenderForm(w, r, f)
		return
	}
	if r.PostFormValue("confirm") == "yes" && (!wide || r.PostFormValue(policy.AllowWideParam) == "yes") {
		o.WidthLifted = wide
		if err := h.store.PutOverride(ctx, target, o, actor, now); err != nil {
			h.fault(w, r, "save the override", err)
			return
		}
		h.log.InfoContext(ctx, "Saved an override.", "prefix", target.String(), "actor", actor)
		h.catchUp(ctx)
		h.redirect(w, r, prefixURL(target), "Override saved for "+prefixTitle(target)+".")
		return
	}
	im, err := h.previewOverride(ctx, target, o, actor)
	if err != nil {
		h.fault(w, r, "work out what the override changes", err)
		return
	}
	c := confirmPage{impact: im, Target: target, Form: f}
	if wide {
		c.Wide = fmt.Sprintf("%s is wider than %s: it covers %s.", target.String(), widthLimit(target), policy.Coverage(target))
		for _, rc := range im.Rulesets {
			for _, ch := range rc.Changes {
				if ch.Prefix == target && strings.HasPrefix(ch.After, "block") {
					c.WouldBlock = append(c.WouldBlock, rc)
					break
				}
			}
		}
	}
	tagsBefore, tagsAfter := c.Before.TagNames(), c.After.TagNames()
	for _, t := range tagsAfter {
		if !slices.Contains(tagsBefore, t) {
			c.AddedTags = append(c.AddedTags, t)
		}
	}
	for _, t := range tagsBefore {
		if !slices.Contains(tagsAfter, t) {
			c.RemovedTags = append(c.RemovedTags, t)
		}
	}
	h.render(w, r, http.StatusOK, "confirm", "Confirm override of "+prefixTitle(target), "search", c)
}

// widthLimit names the limit of p's family: "/8 (the widest IPv4 network
// accepted without confirmation)".
func widthLimit(p netip.Prefix) string {
	if p.Addr().Is4() {
		return fmt.Sprintf("/%d, the widest IPv4 network accepted without an admin's confirmation", policy.MinBitsV4)
	}
	return fmt.Sprintf("/%d, the widest IPv6 network accepted without an admin's confirmation", policy.MinBitsV6)
}

// rerenderForm shows the page the form came from again, with the typed values
// and an error next to each bad field.
func (h *Handler) rerenderForm(w http.ResponseWriter, r *http.Request, f overrideForm) {
	page, err := parseTarget(f.Page)
	if err != nil {
		page, err = parseTarget(f.Prefix)
	}
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "The form does not say which address or network it is about.")
		return
	}
	pp, err := h.loadPrefix(r.Context(), page)
	if err != nil {
		h.fault(w, r, "look up "+page.String(), err)
		return
	}
	pp.currentForm() // sets HasOverride
	pp.Form = f
	h.render(w, r, http.StatusUnprocessableEntity, "prefix", prefixTitle(page), "search", pp)
}

// withOverride returns prefixes as they will be once o replaces the manual
// assertions on target, for the impact preview. prefixes is not changed.
func withOverride(prefixes []resolve.Prefix, target netip.Prefix, o store.Override, actor string, now time.Time) []resolve.Prefix {
	out := make([]resolve.Prefix, 0, len(prefixes)+1)
	found := false
	for _, p := range prefixes {
		if p.Prefix == target {
			found = true
			var kept []resolve.Assertion
			for _, a := range p.Assertions {
				if !resolve.IsManual(a.Source) {
					kept = append(kept, a)
				}
			}
			p.Assertions = append(kept, overrideAssertions(o, actor, now)...)
		}
		out = append(out, p)
	}
	if !found {
		out = append(out, resolve.Prefix{Prefix: target, FirstSeen: now, LastSeen: now, Assertions: overrideAssertions(o, actor, now)})
		// Most specific first, as the store returns them.
		slices.SortStableFunc(out, func(a, b resolve.Prefix) int { return b.Prefix.Bits() - a.Prefix.Bits() })
	}
	return out
}

func overrideAssertions(o store.Override, actor string, now time.Time) []resolve.Assertion {
	src := resolve.ManualPrefix + actor
	mk := func(kind, v string) resolve.Assertion {
		return resolve.Assertion{Kind: kind, Value: v, Source: src, FirstSeen: now, LastSeen: now, ExpiresAt: o.ExpiresAt}
	}
	var as []resolve.Assertion
	if o.Classification != "" {
		as = append(as, mk(resolve.KindClassification, o.Classification))
	}
	for _, t := range o.AddTags {
		as = append(as, mk(resolve.KindTag, t))
	}
	for _, t := range o.SuppressTags {
		as = append(as, mk(resolve.KindSuppress, t))
	}
	if o.Note != "" {
		as = append(as, mk(resolve.KindNote, o.Note))
	}
	return as
}
