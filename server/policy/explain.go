package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/muninn/muninn/server/resolve"
)

// TagFact is one tag assertion in an address's view: the tag, the source
// that asserted it and the prefix it is asserted on.
type TagFact struct {
	Tag    string       `json:"tag"`
	Source string       `json:"source"`
	Prefix netip.Prefix `json:"prefix"`
}

// AddrFacts is the effective view of one address (DESIGN.md §3) as Explain
// shows it: the resolver's view with its provenance and the geo facts.
type AddrFacts struct {
	// Tags are the effective tag assertions, each with its source and prefix.
	Tags []TagFact `json:"tags"`
	// Suppressed are the tag assertions a manual suppress hides.
	Suppressed []TagFact `json:"suppressed"`
	// Classification is the classification conditions match: "" when no
	// live classification assertion applies.
	Classification string `json:"classification"`
	// ClassificationFrom is the prefix the classification is asserted on and
	// ClassificationSource the source asserting it.
	ClassificationFrom   netip.Prefix `json:"classification_from"`
	ClassificationSource string       `json:"classification_source"`
	// Manual says the classification is a person's, not an automatic one.
	Manual  bool     `json:"manual"`
	Sources []string `json:"sources"`
	// Steps are the resolver's steps, one sentence each.
	Steps []string `json:"steps"`
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

// Explain evaluates rs for one address, showing every step. v is the
// address's effective view from the one resolver (server/resolve), lists the
// named lists' selectors and geo the geo nets (those not containing addr are
// ignored; the most specific containing one is used). It agrees with Compile
// over the Entry of the most specific stored prefix containing addr (EntryOf
// of the same view): the address is in the set of rule Decided (and of each
// rule in Logged), or in Unmatched when Decided is -1.
func Explain(rs *Ruleset, lists map[string][]Cond, addr netip.Addr, v resolve.View, geo []GeoNet) (Explanation, error) {
	addr = addr.Unmap()
	ex := Explanation{Addr: addr, Decided: -1, Action: rs.Default}
	facts := AddrFacts{Classification: ViewClass(v), Sources: v.Sources, Steps: v.Steps, Geo: mostSpecificGeo(geo, addr)}
	if facts.Classification != "" {
		facts.ClassificationFrom, facts.ClassificationSource = v.ClassificationPrefix, v.ClassificationSource
		facts.Manual = resolve.IsManual(v.ClassificationSource)
	}
	if err := checkClass(facts.Classification); err != nil {
		return ex, fmt.Errorf("policy: explain %s: %w", addr, err)
	}
	for _, t := range v.Tags {
		facts.Tags = append(facts.Tags, TagFact{Tag: t.Name, Source: t.Source, Prefix: t.Prefix})
	}
	for _, t := range v.Suppressed {
		facts.Suppressed = append(facts.Suppressed, TagFact{Tag: t.Name, Source: t.Source, Prefix: t.Prefix})
	}
	ex.Facts = facts
	f := &Facts{Lists: lists}
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
				have = append(have, fmt.Sprintf("%q from %s on %s", t.Tag, t.Source, t.Prefix))
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
			why += fmt.Sprintf(" (%s, from %s on %s)", kind, af.ClassificationSource, af.ClassificationFrom)
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
