package onetruth_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/muninn/muninn/server/resolve"
)

// The universes live in the documentation ranges, which no built-in guard
// entry covers.
var bases = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

var (
	tagNames = []string{"t0", "t1", "t2", "t3", "t4", "t5"}
	sources  = []string{"s1", "s2", "s3", "s4"}
	v6Bits   = []int{32, 40, 48, 56, 64, 96, 112, 120, 127, 128}
)

// universe builds a random universe through the API, round after round.
type universe struct {
	r          *rand.Rand
	pool       []netip.Prefix // every prefix written so far
	overridden []netip.Prefix // prefixes with a manual override written
	notes      int
}

// randomIn returns a random address of p.
func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if r.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// newPrefix returns a random prefix: half the time nested in one already in the
// pool, else in a documentation range.
func (u *universe) newPrefix() netip.Prefix {
	parent := bases[u.r.IntN(len(bases))]
	if len(u.pool) > 0 && u.r.IntN(100) < 60 {
		parent = u.pool[u.r.IntN(len(u.pool))]
	}
	maxBits := parent.Addr().BitLen()
	if parent.Bits() == maxBits {
		return parent
	}
	var bits int
	if parent.Addr().Is4() {
		bits = parent.Bits() + u.r.IntN(maxBits-parent.Bits()+1)
		if u.r.IntN(3) == 0 {
			bits = maxBits
		}
	} else {
		var choices []int
		for _, b := range v6Bits {
			if b >= parent.Bits() {
				choices = append(choices, b)
			}
		}
		bits = choices[u.r.IntN(len(choices))]
	}
	p, err := randomIn(u.r, parent).Prefix(bits)
	if err != nil {
		panic(err)
	}
	return p
}

// pick returns a prefix of the pool or, one time in four, a new one.
func (u *universe) pick() netip.Prefix {
	if len(u.pool) == 0 || u.r.IntN(3) == 0 {
		p := u.newPrefix()
		if !slices.Contains(u.pool, p) {
			u.pool = append(u.pool, p)
		}
		return p
	}
	return u.pool[u.r.IntN(len(u.pool))]
}

// some returns up to n distinct random elements of from.
func some(r *rand.Rand, from []string, n int) []string {
	out := []string{}
	for _, i := range r.Perm(len(from))[:r.IntN(n+1)] {
		out = append(out, from[i])
	}
	return out
}

// observations returns n random observations: several sources, tags,
// classifications, notes, and TTLs that are none, far or already over.
func (u *universe) observations(n int, now time.Time) []map[string]any {
	var out []map[string]any
	for range n {
		p := u.pick()
		seen := now.Add(-time.Duration(1+u.r.IntN(600)) * time.Minute)
		o := map[string]any{"ip": p.String(), "source": sources[u.r.IntN(len(sources))]}
		if tags := some(u.r, tagNames, 3); len(tags) > 0 {
			o["tags"] = tags
		}
		if u.r.IntN(3) == 0 {
			o["classification"] = resolve.Classifications[u.r.IntN(len(resolve.Classifications))]
		}
		if u.r.IntN(4) == 0 {
			u.notes++
			o["note"] = fmt.Sprintf("auto note %d", u.notes)
		}
		switch u.r.IntN(6) {
		case 0: // expired before it was written
			seen = now.Add(-time.Duration(12+u.r.IntN(5)) * time.Hour)
			o["ttl"] = "1h"
		case 1:
			o["ttl"] = "8760h"
		case 2: // expires in a later round
			o["ttl"] = fmt.Sprintf("%dm", 60+u.r.IntN(600))
		}
		o["seen_at"] = seen.UTC().Format(time.RFC3339)
		out = append(out, o)
	}
	return out
}

// overrides writes n random manual overrides and deletes some earlier ones.
func (u *universe) overrides(t *testing.T, s *server, n int, now time.Time) {
	t.Helper()
	for range n {
		p := u.pick()
		body := map[string]any{}
		if u.r.IntN(2) == 0 {
			body["classification"] = resolve.Classifications[u.r.IntN(len(resolve.Classifications))]
		}
		if tags := some(u.r, tagNames, 2); len(tags) > 0 {
			body["add_tags"] = tags
		}
		if tags := some(u.r, tagNames, 3); len(tags) > 0 {
			body["suppress_tags"] = tags
		}
		if u.r.IntN(3) == 0 || len(body) == 0 {
			u.notes++
			body["note"] = fmt.Sprintf("manual note %d", u.notes)
		}
		if u.r.IntN(3) == 0 { // most expire in a later round
			body["expires_at"] = now.Add(time.Duration(5+u.r.IntN(300)) * time.Minute).UTC().Format(time.RFC3339)
		}
		if u.r.IntN(10) == 0 {
			// An empty override replaces the manual assertions by none: it
			// leaves no override (and, on a prefix nothing else asserts, a
			// ghost at most).
			body = map[string]any{}
		}
		s.send(t, s.writer, http.MethodPut, overridePath(p), "application/json", jsonOf(t, body), http.StatusOK)
		i := slices.Index(u.overridden, p)
		switch {
		case len(body) == 0 && i >= 0:
			u.overridden = slices.Delete(u.overridden, i, i+1)
		case len(body) > 0 && i < 0:
			u.overridden = append(u.overridden, p)
		}
	}
	// A manual override on a prefix nothing else asserts, then deleted: it
	// leaves a prefix with nothing live, a ghost, when the store keeps it.
	ghost := u.newPrefix()
	if !slices.Contains(u.pool, ghost) {
		u.pool = append(u.pool, ghost)
		s.send(t, s.writer, http.MethodPut, overridePath(ghost), "application/json", jsonOf(t, map[string]any{"add_tags": []string{"t1"}, "note": "ghost"}), http.StatusOK)
		s.send(t, s.writer, http.MethodDelete, overridePath(ghost), "", nil, http.StatusNoContent)
	}
	// Deleting an override may leave a prefix with nothing live, too.
	for range u.r.IntN(len(u.overridden)/2 + 1) {
		i := u.r.IntN(len(u.overridden))
		p := u.overridden[i]
		u.overridden = slices.Delete(u.overridden, i, i+1)
		s.send(t, s.writer, http.MethodDelete, overridePath(p), "", nil, http.StatusNoContent)
	}
}

// addresses returns n random addresses to check: inside stored prefixes, at
// their first address, and anywhere in the documentation ranges.
func (u *universe) addresses(n int) []netip.Addr {
	var out []netip.Addr
	for range n {
		switch k := u.r.IntN(10); {
		case k < 5 && len(u.pool) > 0:
			out = append(out, randomIn(u.r, u.pool[u.r.IntN(len(u.pool))]))
		case k < 7 && len(u.pool) > 0:
			out = append(out, u.pool[u.r.IntN(len(u.pool))].Addr())
		default:
			out = append(out, randomIn(u.r, bases[u.r.IntN(len(bases))]))
		}
	}
	return out
}

// cond is one condition of a modelled rule: kind tag, classification or list.
type cond struct {
	kind   string
	values []string
}

// rule is a modelled ruleset rule: every condition must match.
type rule struct {
	action string
	conds  []cond
}

// ruleset is a ruleset as text and as the model evaluates it.
type ruleset struct {
	name  string
	rules []rule
	def   string // the default action; "" when none
}

// text is the ruleset's text form.
func (rs ruleset) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ruleset %s\n  hook input\n", rs.name)
	for _, r := range rs.rules {
		b.WriteString("  " + r.action + " " + condText(r.conds) + "\n")
	}
	if rs.def != "" {
		b.WriteString("  default " + rs.def + "\n")
	}
	return b.String()
}

func condText(cs []cond) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.kind+" "+strings.Join(c.values, ", "))
	}
	return strings.Join(parts, " and ")
}

// The named list of the test.
var (
	listName  = "otl"
	listConds = []cond{{"tag", []string{"t5"}}, {"classification", []string{"unknown", "suspicious"}}}
)

// testRulesets returns the rulesets of the test: tags, classifications and
// the named list, with and without a default.
func testRulesets() []ruleset {
	return []ruleset{
		{name: "ot1", rules: []rule{
			{"allow", []cond{{"tag", []string{"t0"}}}},
			{"block", []cond{{"tag", []string{"t1", "t2"}}}},
			{"block", []cond{{"classification", []string{"malicious"}}}},
			{"block", []cond{{"list", []string{listName}}}},
		}},
		{name: "ot2", def: "allow", rules: []rule{
			{"block", []cond{{"tag", []string{"t3"}}, {"classification", []string{"suspicious"}}}},
			{"allow", []cond{{"classification", []string{"benign"}}}},
			{"block", []cond{{"tag", []string{"t4"}}}},
		}},
	}
}

// matches reports whether a view matches every condition. An address no
// existing stored prefix contains has no tags and no classification.
func matches(cs []cond, v resolve.View) bool {
	for _, c := range cs {
		ok := false
		switch c.kind {
		case "tag":
			ok = slices.ContainsFunc(c.values, v.HasTag)
		case "classification":
			ok = v.Exists() && slices.Contains(c.values, v.Classification)
		case "list":
			ok = matches(listConds, v)
		}
		if !ok {
			return false
		}
	}
	return true
}

// decide returns the index of the first rule the view matches, or -1.
func (rs ruleset) decide(v resolve.View) int {
	for i, r := range rs.rules {
		if matches(r.conds, v) {
			return i
		}
	}
	return -1
}
