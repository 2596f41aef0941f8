// Package resolve turns the assertions stored on the prefixes that contain an
// address (or network) into its effective view. It is a pure function of its
// input and the clock: no database, no I/O.
//
// The rules (DESIGN.md §3):
//   - Expired assertions do not count.
//   - Tags are the union of every live tag on every containing prefix, except
//     automatic tags that a manual "suppress" on any containing prefix hides.
//     Manual tags are never hidden.
//   - Classification is the manual one on the most specific prefix that has one;
//     otherwise the most severe automatic one (malicious > suspicious > benign >
//     unknown), the more specific prefix winning a tie.
//   - The note is the manual one on the most specific prefix, else the most specific.
package resolve

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Assertion kinds.
const (
	KindTag            = "tag"
	KindClassification = "classification"
	KindNote           = "note"
	KindSuppress       = "suppress"
)

// Classifications, least to most severe.
const (
	Unknown    = "unknown"
	Benign     = "benign"
	Suspicious = "suspicious"
	Malicious  = "malicious"
)

// ManualPrefix starts the source of every assertion a person made.
const ManualPrefix = "manual:"

// Assertion is one source saying one thing about one prefix.
type Assertion struct {
	Kind      string
	Value     string
	Source    string
	FirstSeen time.Time
	LastSeen  time.Time
	ExpiresAt *time.Time
}

// Live reports whether the assertion has not expired at now.
func (a Assertion) Live(now time.Time) bool {
	return a.ExpiresAt == nil || a.ExpiresAt.After(now)
}

// Prefix is a stored prefix with its assertions.
type Prefix struct {
	Prefix     netip.Prefix
	FirstSeen  time.Time
	LastSeen   time.Time
	Sightings  int64
	Assertions []Assertion
}

// TagFact is a tag in a view with the assertion behind it.
type TagFact struct {
	Name      string
	Source    string
	Prefix    netip.Prefix
	FirstSeen time.Time
	LastSeen  time.Time
	ExpiresAt *time.Time
}

// View is the effective view of an address or network.
type View struct {
	Classification       string
	ClassificationSource string
	ClassificationPrefix netip.Prefix
	Tags                 []TagFact
	Suppressed           []TagFact
	Sources              []string
	Note                 string
	FirstSeen            time.Time
	LastSeen             time.Time
	// Sightings counts the sightings of the exact prefix looked up.
	Sightings int64
	// Steps explains the resolution, one sentence a step.
	Steps []string
}

// TagNames returns the distinct tag names of the view, sorted.
func (v View) TagNames() []string {
	names := make([]string, 0, len(v.Tags))
	for _, t := range v.Tags {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// IsManual reports whether source names a person.
func IsManual(source string) bool { return strings.HasPrefix(source, ManualPrefix) }

// Severity orders classifications; unknown values rank as unknown.
func Severity(c string) int {
	switch c {
	case Malicious:
		return 3
	case Suspicious:
		return 2
	case Benign:
		return 1
	}
	return 0
}

// ValidClassification reports whether c is one of the four classifications.
func ValidClassification(c string) bool {
	switch c {
	case Malicious, Suspicious, Benign, Unknown:
		return true
	}
	return false
}

// Resolve computes the effective view of target from the stored prefixes that
// contain it (in any order). Prefixes that do not contain target are ignored.
func Resolve(target netip.Prefix, prefixes []Prefix, now time.Time) View {
	ps := make([]Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if p.Prefix.Bits() <= target.Bits() && p.Prefix.Contains(target.Addr()) {
			ps = append(ps, p)
		}
	}
	// Most specific first; the order is total so the result is deterministic.
	slices.SortFunc(ps, func(a, b Prefix) int { return cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()) })

	v := View{Classification: Unknown}
	suppressed := map[string]string{} // tag -> "source on prefix" that hides it
	sources := map[string]bool{}
	for _, p := range ps {
		if v.FirstSeen.IsZero() || p.FirstSeen.Before(v.FirstSeen) {
			v.FirstSeen = p.FirstSeen
		}
		if p.LastSeen.After(v.LastSeen) {
			v.LastSeen = p.LastSeen
		}
		if p.Prefix == target {
			v.Sightings = p.Sightings
		}
		for _, a := range p.Assertions {
			if a.Live(now) && a.Kind == KindSuppress && IsManual(a.Source) {
				if _, ok := suppressed[a.Value]; !ok {
					suppressed[a.Value] = fmt.Sprintf("%s on %s", a.Source, p.Prefix)
				}
			}
		}
	}

	var (
		manualCls, autoCls *Assertion
		manualClsPrefix    netip.Prefix
		autoClsPrefix      netip.Prefix
		manualNote         bool
	)
	for _, p := range ps {
		for i := range p.Assertions {
			a := p.Assertions[i]
			if !a.Live(now) {
				v.Steps = append(v.Steps, fmt.Sprintf("%s: %s %s %q expired at %s; ignored", p.Prefix, a.Source, a.Kind, a.Value, a.ExpiresAt.UTC().Format(time.RFC3339)))
				continue
			}
			sources[a.Source] = true
			manual := IsManual(a.Source)
			switch a.Kind {
			case KindTag:
				fact := TagFact{Name: a.Value, Source: a.Source, Prefix: p.Prefix, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, ExpiresAt: a.ExpiresAt}
				if by, ok := suppressed[a.Value]; ok && !manual {
					v.Suppressed = append(v.Suppressed, fact)
					v.Steps = append(v.Steps, fmt.Sprintf("%s: tag %q from %s is suppressed by %s", p.Prefix, a.Value, a.Source, by))
					continue
				}
				v.Tags = append(v.Tags, fact)
				v.Steps = append(v.Steps, fmt.Sprintf("%s: tag %q from %s", p.Prefix, a.Value, a.Source))
			case KindClassification:
				if manual {
					if manualCls == nil {
						manualCls, manualClsPrefix = &a, p.Prefix
					}
				} else if autoCls == nil || Severity(a.Value) > Severity(autoCls.Value) {
					autoCls, autoClsPrefix = &a, p.Prefix
				}
			case KindNote:
				if manual && !manualNote {
					v.Note, manualNote = a.Value, true
				} else if v.Note == "" {
					v.Note = a.Value
				}
			}
		}
	}
	switch {
	case manualCls != nil:
		v.Classification, v.ClassificationSource, v.ClassificationPrefix = manualCls.Value, manualCls.Source, manualClsPrefix
		v.Steps = append(v.Steps, fmt.Sprintf("classification %s: manual assertion by %s on %s, the most specific manual one, beats every automatic one", manualCls.Value, manualCls.Source, manualClsPrefix))
	case autoCls != nil:
		v.Classification, v.ClassificationSource, v.ClassificationPrefix = autoCls.Value, autoCls.Source, autoClsPrefix
		v.Steps = append(v.Steps, fmt.Sprintf("classification %s: the most severe automatic one, from %s on %s", autoCls.Value, autoCls.Source, autoClsPrefix))
	default:
		v.Steps = append(v.Steps, "classification unknown: no live classification on any containing prefix")
	}
	for s := range sources {
		v.Sources = append(v.Sources, s)
	}
	slices.Sort(v.Sources)
	return v
}
