// Package resolve is muninn's one resolver: it turns the assertions stored on
// the prefixes that contain an address (or a network) into its effective view.
// Every answer muninn gives — lookups, search, exports, explain, renders, deny
// and named lists, the CrowdSec API, the UI — goes through this package. It is
// a pure function of its input and the clock: no database, no I/O.
//
// # The rules (DESIGN.md §3)
//
// The effective view of a target T (an address, i.e. a /32 or /128, or a
// stored network) is computed from the stored prefixes that contain T (T
// itself included), most specific first:
//
//   - Expired assertions do not count: an assertion is live at now when it
//     has no expiry or its expiry is after now.
//   - A stored prefix with no live assertion and no sighting does not exist
//     for any output (see [Prefix.Exists]); it contributes nothing to a view,
//     not even its first or last seen times.
//   - Tags are the union of the live tags of every containing prefix, except
//     that a live manual suppress of tag X on a prefix P hides every automatic
//     X for every address in P, whichever prefix asserted it: one containing
//     P or one contained in P. For the view of T that means: a suppress on any
//     prefix containing T hides every automatic X in T's view. Manual tags are
//     never hidden, and a suppress from an automatic source does nothing.
//   - Classification is the manual one on the most specific prefix that has
//     one (on one prefix, the newest manual one by last seen); otherwise the
//     most severe automatic one in the order [Classifications] (malicious >
//     suspicious > benign > unknown), the more specific prefix winning a tie;
//     with none at all it is unknown.
//   - The note is the manual one on the most specific prefix that has one;
//     otherwise the newest automatic one by last seen (the more specific
//     prefix, then the smaller source name, winning a tie).
//   - Sources are the sorted union of the sources of every live assertion;
//     first and last seen span every containing prefix that exists; the
//     sighting count is the target's own.
//
// Because the stored prefixes that contain an address are nested, the view of
// an address equals the view of the most specific stored prefix that contains
// it (apart from the sighting count, which is the target's own), so the view of
// every stored prefix is enough for every output.
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

// Classifications lists the four classifications from least to most severe;
// an index in it is the classification's [Severity]. This is muninn's one
// definition of the order.
var Classifications = [...]string{Unknown, Benign, Suspicious, Malicious}

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

// Exists reports whether the prefix exists for outputs at now: it has a live
// assertion or a sighting.
func (p Prefix) Exists(now time.Time) bool {
	if p.Sightings > 0 {
		return true
	}
	for _, a := range p.Assertions {
		if a.Live(now) {
			return true
		}
	}
	return false
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
	// ClassificationPrefix is the prefix of the deciding assertion; invalid
	// when no classification was asserted.
	ClassificationPrefix netip.Prefix
	// Tags are the live, not suppressed tag assertions, most specific prefix
	// first, then by name and source; a tag asserted by several sources
	// appears once per source.
	Tags []TagFact
	// Suppressed are the automatic tag assertions a manual suppress hides,
	// in the order of Tags.
	Suppressed []TagFact
	// Sources are the sources of every live assertion, sorted.
	Sources    []string
	Note       string
	NoteSource string
	// FirstSeen and LastSeen span the existing containing prefixes.
	FirstSeen time.Time
	LastSeen  time.Time
	// Sightings counts the sightings of the exact prefix looked up.
	Sightings int64
	// Prefixes are the existing stored prefixes containing the target, most
	// specific first.
	Prefixes []netip.Prefix
	// Steps explains the resolution, one sentence a step; only [Resolve]
	// fills it.
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

// SuppressedNames returns the distinct names of the suppressed tags, sorted.
func (v View) SuppressedNames() []string {
	names := make([]string, 0, len(v.Suppressed))
	for _, t := range v.Suppressed {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// HasTag reports whether name is one of the view's effective tags.
func (v View) HasTag(name string) bool {
	return slices.ContainsFunc(v.Tags, func(t TagFact) bool { return t.Name == name })
}

// Exists reports whether the view rests on at least one existing stored prefix.
func (v View) Exists() bool { return len(v.Prefixes) > 0 }

// SourceMatches reports whether source matches pattern: equal to it, or,
// for a pattern ending in "*", starting with what precedes the "*"
// ("feed:*" matches every feed). This is the one definition of source
// patterns (ruleset "source" conditions, search filters).
func SourceMatches(pattern, source string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(source, prefix)
	}
	return pattern == source
}

// IsManual reports whether source names a person.
func IsManual(source string) bool { return strings.HasPrefix(source, ManualPrefix) }

// Severity ranks a classification by its index in [Classifications]:
// unknown 0, benign 1, suspicious 2, malicious 3; other values rank as unknown.
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
	return slices.Contains(Classifications[:], c)
}

// Resolve computes the effective view of target from the stored prefixes that
// contain it (in any order; the others are ignored), with the explanation
// steps. Use it for one answer (a lookup, explain); for bulk outputs use
// [Effective], which applies the same rules without writing the steps.
func Resolve(target netip.Prefix, prefixes []Prefix, now time.Time) View {
	v, _ := resolve(target, prefixes, now, modeExplain)
	return v
}

// Effective is [Resolve] without the explanation steps.
func Effective(target netip.Prefix, prefixes []Prefix, now time.Time) View {
	v, _ := resolve(target, prefixes, now, modeView)
	return v
}

// Summary is the compact form of an effective view that compilers and bulk
// outputs need: what [Effective] gives, without provenance.
type Summary struct {
	// Tags are the distinct effective tag names, sorted; nil when none.
	Tags []string
	// Classification is the effective classification.
	Classification string
	// Sources are the sources of every live assertion, sorted.
	Sources []string
}

// Summarize is [Effective] reduced to a [Summary], by the same rules at a
// fraction of the cost (no tag facts, no containing prefixes).
func Summarize(target netip.Prefix, prefixes []Prefix, now time.Time) Summary {
	v, names := resolve(target, prefixes, now, modeSummary)
	if len(names) == 0 {
		names = nil
	}
	slices.Sort(names)
	return Summary{Tags: slices.Compact(names), Classification: v.Classification, Sources: v.Sources}
}

// How much resolve writes down.
const (
	modeSummary = iota // tag names only, no facts, no prefixes
	modeView           // the full view
	modeExplain        // the full view and the explanation steps
)

// resolve applies the rules. In modeSummary it returns the effective tag
// names (unsorted, with repeats) instead of filling the view's tag facts,
// suppressed facts and prefixes.
func resolve(target netip.Prefix, prefixes []Prefix, now time.Time, mode int) (View, []string) {
	explain, summary := mode == modeExplain, mode == modeSummary
	var names []string
	var buf [8]*Prefix
	ps := buf[:0]
	for i := range prefixes {
		p := &prefixes[i]
		if p.Prefix.Bits() <= target.Bits() && p.Prefix.Contains(target.Addr()) && p.Exists(now) {
			ps = append(ps, p)
		}
	}
	// Most specific first; stored prefixes are unique, so the order is total
	// and the result deterministic.
	if !slices.IsSortedFunc(ps, moreSpecificFirst) {
		slices.SortFunc(ps, moreSpecificFirst)
	}

	v := View{Classification: Unknown}
	if len(ps) > 0 {
		if !summary {
			v.Prefixes = make([]netip.Prefix, 0, len(ps))
		}
		// Sized once: growing these slices was most of a bulk walk's cost.
		tags, all := 0, 0
		for _, p := range ps {
			all += len(p.Assertions)
			for i := range p.Assertions {
				if p.Assertions[i].Kind == KindTag {
					tags++
				}
			}
		}
		switch {
		case tags > 0 && summary:
			names = make([]string, 0, tags)
		case tags > 0:
			v.Tags = make([]TagFact, 0, tags)
		}
		if all > 0 {
			v.Sources = make([]string, 0, min(all, 8))
		}
	}
	var suppressed []suppression
	for _, p := range ps {
		if !summary {
			v.Prefixes = append(v.Prefixes, p.Prefix)
		}
		if v.FirstSeen.IsZero() || (!p.FirstSeen.IsZero() && p.FirstSeen.Before(v.FirstSeen)) {
			v.FirstSeen = p.FirstSeen
		}
		if p.LastSeen.After(v.LastSeen) {
			v.LastSeen = p.LastSeen
		}
		if p.Prefix == target {
			v.Sightings = p.Sightings
		}
		for i := range p.Assertions {
			a := &p.Assertions[i]
			if a.Kind == KindSuppress && IsManual(a.Source) && a.Live(now) &&
				!slices.ContainsFunc(suppressed, func(s suppression) bool { return s.tag == a.Value }) {
				suppressed = append(suppressed, suppression{tag: a.Value, by: a, on: p.Prefix})
			}
		}
	}

	var (
		manualCls, autoCls, manualNote, autoNote *Assertion
		manualClsPrefix, autoClsPrefix           netip.Prefix
		manualNotePrefix, autoNotePrefix         netip.Prefix
	)
	for _, p := range ps {
		for i := range p.Assertions {
			a := &p.Assertions[i]
			if !a.Live(now) {
				if explain {
					v.Steps = append(v.Steps, fmt.Sprintf("%s: %s %s %q expired at %s; ignored", p.Prefix, a.Source, a.Kind, a.Value, a.ExpiresAt.UTC().Format(time.RFC3339)))
				}
				continue
			}
			if !slices.Contains(v.Sources, a.Source) {
				v.Sources = append(v.Sources, a.Source)
			}
			manual := IsManual(a.Source)
			switch a.Kind {
			case KindTag:
				if summary {
					if manual || !slices.ContainsFunc(suppressed, func(s suppression) bool { return s.tag == a.Value }) {
						names = append(names, a.Value)
					}
					continue
				}
				fact := TagFact{Name: a.Value, Source: a.Source, Prefix: p.Prefix, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, ExpiresAt: a.ExpiresAt}
				if i := slices.IndexFunc(suppressed, func(s suppression) bool { return s.tag == a.Value }); i >= 0 && !manual {
					v.Suppressed = append(v.Suppressed, fact)
					if explain {
						v.Steps = append(v.Steps, fmt.Sprintf("%s: tag %q from %s is suppressed by %s on %s", p.Prefix, a.Value, a.Source, suppressed[i].by.Source, suppressed[i].on))
					}
					continue
				}
				v.Tags = append(v.Tags, fact)
				if explain {
					v.Steps = append(v.Steps, fmt.Sprintf("%s: tag %q from %s", p.Prefix, a.Value, a.Source))
				}
			case KindClassification:
				if manual {
					// The most specific prefix first; on one prefix the newest.
					if manualCls == nil || (manualClsPrefix == p.Prefix && newer(a, manualCls)) {
						manualCls, manualClsPrefix = a, p.Prefix
					}
				} else if autoCls == nil || Severity(a.Value) > Severity(autoCls.Value) ||
					(Severity(a.Value) == Severity(autoCls.Value) && autoClsPrefix == p.Prefix && a.Source < autoCls.Source) {
					autoCls, autoClsPrefix = a, p.Prefix
				}
			case KindNote:
				if manual {
					if manualNote == nil || (manualNotePrefix == p.Prefix && newer(a, manualNote)) {
						manualNote, manualNotePrefix = a, p.Prefix
					}
				} else if autoNote == nil || a.LastSeen.After(autoNote.LastSeen) ||
					(a.LastSeen.Equal(autoNote.LastSeen) && autoNotePrefix == p.Prefix && a.Source < autoNote.Source) {
					// A tie keeps the more specific prefix (visited first), and on
					// one prefix the smaller source.
					autoNote, autoNotePrefix = a, p.Prefix
				}
			}
		}
	}
	switch {
	case manualCls != nil:
		v.Classification, v.ClassificationSource, v.ClassificationPrefix = manualCls.Value, manualCls.Source, manualClsPrefix
		if explain {
			v.Steps = append(v.Steps, fmt.Sprintf("classification %s: manual assertion by %s on %s, the most specific manual one, beats every automatic one", manualCls.Value, manualCls.Source, manualClsPrefix))
		}
	case autoCls != nil:
		v.Classification, v.ClassificationSource, v.ClassificationPrefix = autoCls.Value, autoCls.Source, autoClsPrefix
		if explain {
			v.Steps = append(v.Steps, fmt.Sprintf("classification %s: the most severe automatic one, from %s on %s", autoCls.Value, autoCls.Source, autoClsPrefix))
		}
	case explain:
		v.Steps = append(v.Steps, "classification unknown: no live classification on any containing prefix")
	}
	switch {
	case manualNote != nil:
		v.Note, v.NoteSource = manualNote.Value, manualNote.Source
		if explain {
			v.Steps = append(v.Steps, fmt.Sprintf("note from %s: the manual one on the most specific prefix", manualNote.Source))
		}
	case autoNote != nil:
		v.Note, v.NoteSource = autoNote.Value, autoNote.Source
		if explain {
			v.Steps = append(v.Steps, fmt.Sprintf("note from %s: the newest automatic one", autoNote.Source))
		}
	}
	// Empty is nil, however the slices were sized.
	if len(v.Sources) == 0 {
		v.Sources = nil
	}
	if len(v.Tags) == 0 {
		v.Tags = nil
	}
	slices.Sort(v.Sources)
	// Whatever order the assertions came in: most specific prefix first, then
	// by name and source.
	slices.SortStableFunc(v.Tags, compareFacts)
	slices.SortStableFunc(v.Suppressed, compareFacts)
	return v, names
}

// suppression is a live manual suppress of tag, the first (most specific)
// one found.
type suppression struct {
	tag string
	by  *Assertion
	on  netip.Prefix
}

func moreSpecificFirst(a, b *Prefix) int { return cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()) }

func compareFacts(a, b TagFact) int {
	if c := cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.Source, b.Source)
}

// newer orders two assertions on one prefix: the later last seen first, then
// the smaller source.
func newer(a, b *Assertion) bool {
	if !a.LastSeen.Equal(b.LastSeen) {
		return a.LastSeen.After(b.LastSeen)
	}
	return a.Source < b.Source
}

// Expiry returns the instant after which every view resting on prefixes is
// empty: the latest expiry of their live assertions at now. Callers pass
// every stored prefix a set of views rests on (for a network N: those
// containing N and those inside it), at once or in parts (the latest of the
// parts' ends, lasting when one part lasts); after the returned instant none
// of them has a live assertion, so each view is that of an address without
// stored prefix, or (a prefix with sightings still exists) classification
// unknown and nothing else. lasting is true when there is no such instant: a
// live assertion without expiry lasts for good. end is zero when no
// assertion is live.
func Expiry(prefixes []Prefix, now time.Time) (end time.Time, lasting bool) {
	for _, p := range prefixes {
		for _, a := range p.Assertions {
			switch {
			case !a.Live(now):
			case a.ExpiresAt == nil:
				return time.Time{}, true
			case a.ExpiresAt.After(end):
				end = *a.ExpiresAt
			}
		}
	}
	return end, false
}
