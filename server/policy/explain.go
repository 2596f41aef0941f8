package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// TagFact is one effective tag of an address and the prefix that carries it.
type TagFact struct {
	Tag    string       `json:"tag"`
	Prefix netip.Prefix `json:"prefix"`
}

// AddrFacts is the effective view of one address (DESIGN.md §3).
type AddrFacts struct {
	// Entries are the stored prefixes containing the address, least specific first.
	Entries []Entry `json:"entries"`
	// Tags are the effective tags, each with the most specific prefix adding it.
	Tags []TagFact `json:"tags"`
	// Suppressed are inherited tags hidden by a suppression on Prefix.
	Suppressed []TagFact `json:"suppressed"`
	// Classification is the effective classification ("" when none).
	Classification string `json:"classification"`
	// ClassificationFrom is the prefix the classification comes from.
	ClassificationFrom netip.Prefix `json:"classification_from"`
	// Manual says the classification is a person's, not an automatic one.
	Manual  bool     `json:"manual"`
	Sources []string `json:"sources"`
	// Geo is the most specific geo net containing the address, nil if none.
	Geo *GeoNet `json:"geo"`
}

// CondExplanation says whether one condition matched and why.
type CondExplanation struct {
	Text    string `json:"text"`
	Matched bool   `json:"matched"`
	Reason  string `json:"reason"`
}

// RuleExplanation says whether one rule matched.
type RuleExplanation struct {
	Index   int               `json:"index"`
	Text    string            `json:"text"`
	Matched bool              `json:"matched"`
	Conds   []CondExplanation `json:"conds"`
}

// Explanation is the answer to "what does the ruleset do with this address".
type Explanation struct {
	Addr  netip.Addr        `json:"addr"`
	Facts AddrFacts         `json:"facts"`
	Rules []RuleExplanation `json:"rules"`
	// Decided is the index of the first matching non-log rule, -1 when the
	// default applies.
	Decided int `json:"decided"`
	// Action is the decision: the deciding rule's action, else the default
	// ("" when the ruleset has no default: the packet passes untouched).
	Action Action `json:"action"`
	// Logged are the indices of matching log rules evaluated before the decision.
	Logged []int `json:"logged"`
}

// Explain evaluates rs for one address over the facts f, showing every step.
// It agrees with Compile: the address is in the set of rule Decided (and of
// each rule in Logged), or in Unmatched when Decided is -1.
func Explain(rs *Ruleset, f *Facts, addr netip.Addr) (Explanation, error) {
	addr = addr.Unmap()
	ex := Explanation{Addr: addr, Decided: -1, Action: rs.Default}
	facts, err := addrFacts(f, addr)
	if err != nil {
		return ex, fmt.Errorf("policy: explain %s: %w", addr, err)
	}
	ex.Facts = facts
	for i, r := range rs.Rules {
		re := RuleExplanation{Index: i, Text: FormatRule(r), Matched: true}
		for _, c := range r.Conds {
			ce, err := explainCond(c, f, addr, &facts, nil)
			if err != nil {
				return ex, fmt.Errorf("policy: explain %s: rule %d: %w", addr, i+1, err)
			}
			re.Conds = append(re.Conds, ce)
			re.Matched = re.Matched && ce.Matched
		}
		ex.Rules = append(ex.Rules, re)
		if re.Matched && ex.Decided < 0 {
			if r.Action == ActionLog {
				ex.Logged = append(ex.Logged, i)
			} else {
				ex.Decided, ex.Action = i, r.Action
			}
		}
	}
	return ex, nil
}

// addrFacts resolves the effective view of addr from every containing entry
// (least specific first: suppressions hide inherited tags, then the prefix's
// own tags are added) and the most specific containing geo net.
func addrFacts(f *Facts, addr netip.Addr) (AddrFacts, error) {
	var af AddrFacts
	for _, e := range f.Entries {
		if CanonicalPrefix(e.Prefix).Contains(addr) {
			af.Entries = append(af.Entries, e)
		}
	}
	slices.SortStableFunc(af.Entries, func(a, b Entry) int { return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()) })
	tags := map[string]netip.Prefix{}
	var auto uint8
	var autoFrom netip.Prefix
	for i := 0; i < len(af.Entries); {
		p := CanonicalPrefix(af.Entries[i].Prefix)
		j := i
		for j < len(af.Entries) && CanonicalPrefix(af.Entries[j].Prefix) == p {
			j++
		}
		for _, e := range af.Entries[i:j] {
			for _, t := range e.Suppressed {
				if _, ok := tags[t]; ok {
					delete(tags, t)
					af.Suppressed = append(af.Suppressed, TagFact{Tag: t, Prefix: p})
				}
			}
		}
		for _, e := range af.Entries[i:j] {
			for _, t := range e.Tags {
				tags[t] = p
			}
			for _, s := range e.Sources {
				if !slices.Contains(af.Sources, s) {
					af.Sources = append(af.Sources, s)
				}
			}
			a, err := classSeverity(e.Classification)
			if err != nil {
				return af, fmt.Errorf("entry %s: %w", p, err)
			}
			if a > auto {
				auto, autoFrom = a, p
			}
			if e.ManualClassification != "" {
				if _, err := classSeverity(e.ManualClassification); err != nil {
					return af, fmt.Errorf("entry %s: manual %w", p, err)
				}
				af.Classification, af.ClassificationFrom, af.Manual = e.ManualClassification, p, true
			}
		}
		i = j
	}
	if !af.Manual {
		af.Classification, af.ClassificationFrom = severityNames[auto], autoFrom
	}
	for t, p := range tags {
		af.Tags = append(af.Tags, TagFact{Tag: t, Prefix: p})
	}
	slices.SortFunc(af.Tags, func(a, b TagFact) int { return strings.Compare(a.Tag, b.Tag) })
	for i := range f.Geo {
		g := &f.Geo[i]
		p := CanonicalPrefix(g.Prefix)
		if p.Contains(addr) && (af.Geo == nil || p.Bits() >= CanonicalPrefix(af.Geo.Prefix).Bits()) {
			af.Geo = g
		}
	}
	return af, nil
}

// explainCond evaluates one condition on the facts of addr; stack holds the
// lists being expanded.
func explainCond(c Cond, f *Facts, addr netip.Addr, af *AddrFacts, stack []string) (CondExplanation, error) {
	ce := CondExplanation{Text: FormatSelector([]Cond{c})}
	var hit bool
	var why string
	switch c.Kind {
	case KindTag:
		var have []string
		for _, t := range af.Tags {
			if slices.Contains(c.Values, t.Tag) {
				have = append(have, fmt.Sprintf("%q from %s", t.Tag, t.Prefix))
			}
		}
		hit = len(have) > 0
		why = "has tag " + strings.Join(have, ", ")
		if !hit {
			why = "has none of these tags"
		}
	case KindClassification:
		hit = af.Classification != "" && slices.Contains(c.Values, af.Classification)
		why = fmt.Sprintf("classification is %q", af.Classification)
		if af.Classification != "" {
			kind := "automatic"
			if af.Manual {
				kind = "manual"
			}
			why += fmt.Sprintf(" (%s, from %s)", kind, af.ClassificationFrom)
		}
	case KindCountry, KindContinent, KindASN, KindOrg:
		org := ""
		if af.Geo != nil {
			org = strings.ToLower(af.Geo.Org)
			why = fmt.Sprintf("geo net %s: country %q, continent %q, AS%d %q", af.Geo.Prefix, af.Geo.Country, af.Geo.Continent, af.Geo.ASN, af.Geo.Org)
		} else {
			why = "no geo data covers the address"
		}
		hit = geoMatches(c.Kind, c.Values, af.Geo, org)
	case KindCIDR:
		why = "inside none of these prefixes"
		for _, v := range c.Values {
			p, err := parseCIDR(v)
			if err != nil {
				return ce, err
			}
			if p.Contains(addr) {
				hit, why = true, "inside "+p.String()
				break
			}
		}
	case KindSource:
		why = fmt.Sprintf("sources are %s", strings.Join(af.Sources, ", "))
		if len(af.Sources) == 0 {
			why = "no sources"
		}
		for _, pat := range c.Values {
			for _, s := range af.Sources {
				hit = hit || sourceMatches(pat, s)
			}
		}
	case KindList:
		var parts []string
		for _, name := range c.Values {
			if slices.Contains(stack, name) {
				return ce, fmt.Errorf("list cycle: %s -> %s", strings.Join(stack, " -> "), name)
			}
			conds, ok := f.Lists[name]
			if !ok || len(conds) == 0 {
				return ce, fmt.Errorf("unknown or empty list %q", name)
			}
			all := true
			var failed string
			for _, sc := range conds {
				se, err := explainCond(sc, f, addr, af, append(stack, name))
				if err != nil {
					return ce, fmt.Errorf("list %s: %w", name, err)
				}
				if !se.Matched && all {
					all, failed = false, se.Text+": "+se.Reason
				}
			}
			if all {
				hit = true
				parts = append(parts, "in list "+name)
			} else {
				parts = append(parts, fmt.Sprintf("not in list %s (%s)", name, failed))
			}
		}
		why = strings.Join(parts, "; ")
	default:
		return ce, fmt.Errorf("unknown condition kind %q", c.Kind)
	}
	ce.Matched = hit != c.Not
	ce.Reason = why
	return ce, nil
}
