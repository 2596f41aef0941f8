package onetruth_test

import (
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
)

// uiPassword is the password of the UI's writer.
const uiPassword = "writer-password"

// browser is a logged-in UI session: a cookie jar, redirects not followed.
type browser struct {
	s    *server
	http *http.Client
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (s *server) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	b := &browser{s: s, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	_, page := b.get(t, "/ui/login")
	status, body := b.post(t, "/ui/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"writer"}, "password": {uiPassword}})
	require.Equal(t, http.StatusSeeOther, status, "login: %s", body)
	return b
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	require.NotNil(t, m, "no CSRF field in the page")
	return m[1]
}

func (b *browser) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := b.http.Get(b.s.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func (b *browser) post(t *testing.T, path string, form url.Values) (int, string) {
	t.Helper()
	resp, err := b.http.PostForm(b.s.url+path, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

var (
	uiClassRe      = regexp.MustCompile(`id="classification">([a-z]+)<`)
	uiTagRe        = regexp.MustCompile(`<a class="tag" href="/ui/search\?q=[^"]*">([^<]+)</a>`)
	uiSuppressedRe = regexp.MustCompile(`<span class="tag off">([^<]+)</span>`)
	uiChangeRe     = regexp.MustCompile(`<li><a href="[^"]*">([^<]+)</a>: ([a-z]+) \((?:rule (\d+)|default)[^→]*→ <strong>([a-z]+) \((?:rule (\d+)|default)`)
)

// distinct returns the distinct matches of re's first group, sorted.
func distinct(re *regexp.Regexp, page string) []string {
	out := []string{}
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		if v := html.UnescapeString(m[1]); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// uiPages checks the UI's address page of each address against the model:
// classification, tags and suppressed tags.
func (c *checker) uiPages(b *browser, addrs []netip.Addr) {
	for _, a := range addrs {
		want := c.m.view(addrPrefix(a))
		status, page := b.get(c.t, "/ui/ips/"+a.String())
		require.Equal(c.t, http.StatusOK, status, "/ui/ips/%s", a)
		if !want.Exists() {
			if !strings.Contains(page, "Nothing is stored about") {
				c.errorf("UI page of %s: the model has nothing live containing it, the page shows a view", a)
			}
			continue
		}
		cls := uiClassRe.FindStringSubmatch(page)
		require.NotNil(c.t, cls, "UI page of %s: no classification", a)
		got := fmt.Sprintf("classification %s, tags %v, suppressed %v", cls[1], distinct(uiTagRe, page), distinct(uiSuppressedRe, page))
		exp := fmt.Sprintf("classification %s, tags %v, suppressed %v", want.Classification, nonNil(want.TagNames()), nonNil(want.SuppressedNames()))
		if got != exp {
			c.errorf("UI page of %s disagrees with the model:\n  model: %s\n  page:  %s\n  model view %s", a, exp, got, viewString(want))
		}
	}
}

// withOverride returns the model with the manual assertions on target
// replaced by an override's, as PUT …/override would store them.
func (m *model) withOverride(target netip.Prefix, classification string, add, suppress []string, note string) *model {
	var as []resolve.Assertion
	mk := func(kind, v string) {
		as = append(as, resolve.Assertion{Kind: kind, Value: v, Source: "manual:writer", FirstSeen: m.now, LastSeen: m.now})
	}
	if classification != "" {
		mk(resolve.KindClassification, classification)
	}
	for _, t := range add {
		mk(resolve.KindTag, t)
	}
	for _, t := range suppress {
		mk(resolve.KindSuppress, t)
	}
	if note != "" {
		mk(resolve.KindNote, note)
	}
	out := &model{now: m.now}
	found := false
	for _, p := range m.prefixes {
		if p.Prefix == target {
			found = true
			var kept []resolve.Assertion
			for _, a := range p.Assertions {
				if !resolve.IsManual(a.Source) {
					kept = append(kept, a)
				}
			}
			p.Assertions = append(kept, as...)
		}
		out.prefixes = append(out.prefixes, p)
	}
	if !found {
		out.prefixes = append(out.prefixes, resolve.Prefix{Prefix: target, FirstSeen: m.now, LastSeen: m.now, Assertions: as})
	}
	return out
}

// decision is "action (rule N)" or "action (default)" as the impact preview
// words a ruleset's decision; a ruleset deciding nothing passes.
func (rs ruleset) decision(v resolve.View) string {
	d := rs.decide(v)
	if d < 0 {
		action := rs.def
		if action == "" {
			action = "pass"
		}
		return action + " (default)"
	}
	return fmt.Sprintf("%s (rule %d)", rs.rules[d].action, d+1)
}

// uiImpact asks the UI to preview random overrides on the targets (addresses
// and networks; none is confirmed) and checks the decisions it says change,
// per ruleset and prefix, against the model with the override applied. The
// prefixes of a network target are the target and the existing stored
// prefixes inside it.
func (c *checker) uiImpact(b *browser, r *rand.Rand, targets []netip.Prefix) {
	_, page := b.get(c.t, "/ui/search")
	csrf := csrfOf(c.t, page)
	for _, target := range targets {
		cl := ""
		if r.IntN(2) == 0 {
			cl = resolve.Classifications[r.IntN(len(resolve.Classifications))]
		}
		add, suppress := some(r, tagNames, 2), some(r, tagNames, 3)
		if cl == "" && len(add) == 0 && len(suppress) == 0 {
			// The form refuses an empty override.
			suppress = []string{tagNames[r.IntN(len(tagNames))]}
		}
		name := target.String()
		if target.IsSingleIP() {
			name = target.Addr().String()
		}
		form := url.Values{"csrf": {csrf}, "page": {name}, "prefix": {name}, "classification": {cl},
			"add_tags": {strings.Join(add, ", ")}, "suppress_tags": {strings.Join(suppress, ", ")}, "note": {""}, "expires": {""}}
		status, body := b.post(c.t, "/ui/override", form)
		require.Equal(c.t, http.StatusOK, status, "override preview of %s: %s", target, body)
		require.Contains(c.t, body, "Confirm override of")

		affected := []netip.Prefix{target}
		for _, p := range c.m.existing() {
			if p != target && p.Bits() > target.Bits() && target.Contains(p.Addr()) {
				affected = append(affected, p)
			}
		}
		after := c.m.withOverride(target, cl, add, suppress, "")
		want := []string{}
		var views []string
		for _, p := range affected {
			vb, va := c.m.view(p), after.view(p)
			for _, rs := range c.rulesets {
				if db, da := rs.decision(vb), rs.decision(va); db != da {
					want = append(want, rs.name+" "+p.String()+": "+db+" → "+da)
					views = append(views, fmt.Sprintf("%s before %s\n    after %s", p, viewString(vb), viewString(va)))
				}
			}
		}
		got := []string{}
		if i := strings.Index(body, `id="ruleset-changes"`); i >= 0 {
			// One item per ruleset, each with its changes, one per prefix.
			for _, item := range strings.Split(body[i:], `<li><a href="/ui/rulesets/`)[1:] {
				rs := item[:strings.Index(item, `"`)]
				for _, m := range uiChangeRe.FindAllStringSubmatch(item, -1) {
					got = append(got, rs+" "+prefixOf(m[1])+": "+wording(m[2], m[3])+" → "+wording(m[4], m[5]))
				}
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			c.errorf("UI impact preview of %s with classification %q, add_tags %v, suppress_tags %v disagrees with the model:\n  model:   %q\n  preview: %q\n  model views of the changes:\n    %s",
				target, cl, add, suppress, want, got, strings.Join(views, "\n    "))
		}
	}
}

// prefixOf reads a prefix as a page shows it: a CIDR, or an address for a /32 or /128.
func prefixOf(s string) string {
	s = html.UnescapeString(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return addrPrefix(a).String()
	}
	return s
}

func wording(action, rule string) string {
	if rule == "" {
		return action + " (default)"
	}
	return action + " (rule " + rule + ")"
}
