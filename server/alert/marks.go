package alert

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// Wanted says which marks the enabled rules of the kinds
// store.EventAddressTag and store.EventAddressClassification ask for: the
// tags and classifications of their filters, or all of either kind when a
// rule has no such filter. The zero Wanted asks for nothing.
type Wanted struct {
	AllTags, AllClassifications bool
	Tags, Classifications       map[string]bool
}

// WantedBy returns what rules ask for.
func WantedBy(rules []store.AlertRule) Wanted {
	w := Wanted{Tags: map[string]bool{}, Classifications: map[string]bool{}}
	for _, r := range rules {
		if !r.Enabled {
			continue
		}
		switch r.Kind {
		case store.EventAddressTag:
			if r.Filters.Tag == "" {
				w.AllTags = true
			} else {
				w.Tags[r.Filters.Tag] = true
			}
		case store.EventAddressClassification:
			if r.Filters.Classification == "" {
				w.AllClassifications = true
			} else {
				w.Classifications[r.Filters.Classification] = true
			}
		}
	}
	return w
}

// Empty reports whether w asks for nothing.
func (w Wanted) Empty() bool {
	return !w.AllTags && !w.AllClassifications && len(w.Tags) == 0 && len(w.Classifications) == 0
}

func (w Wanted) tag(t string) bool { return w.AllTags || w.Tags[t] }
func (w Wanted) class(c string) bool {
	return c != resolve.Unknown && c != "" && (w.AllClassifications || w.Classifications[c])
}

// Diff compares the effective views (through the index, so the resolver)
// of the stored prefixes that changed between snapshots prev and cur, and
// returns a report for every wanted tag or classification that appeared or
// went away on one of them, at cur's sequence and instant. Nothing when w
// asks for nothing or cur cannot say what changed since prev (a full
// reload, or a history that no longer reaches back).
func Diff(prev, cur *index.Snap, w Wanted) []store.Mark {
	if w.Empty() || prev == nil || cur.Gen() == prev.Gen() {
		return nil
	}
	spans, _, ok := cur.ChangedSince(prev.Gen())
	if !ok {
		return nil
	}
	var out []store.Mark
	for _, p := range spans {
		bv, bok := prev.Network(p)
		av, aok := cur.Network(p)
		subjectType, subject := "prefix", p.String()
		if p.IsSingleIP() {
			subjectType, subject = "address", p.Addr().String()
		}
		mark := func(name string, present bool, ev store.Event) {
			ev.At, ev.SubjectType, ev.Subject = cur.At(), subjectType, subject
			out = append(out, store.Mark{Subject: subject, Mark: name, Present: present, Seq: cur.Seq(), At: cur.At(), Event: ev})
		}
		var before, after []resolve.TagFact
		if bok {
			before = bv.Tags
		}
		if aok {
			after = av.Tags
		}
		has := func(ts []resolve.TagFact, name string) bool {
			return slices.ContainsFunc(ts, func(t resolve.TagFact) bool { return t.Name == name })
		}
		for i, t := range after {
			if w.tag(t.Name) && !has(before, t.Name) && !has(after[:i], t.Name) {
				mark("tag:"+t.Name, true, store.Event{Kind: store.EventAddressTag,
					Details: map[string]any{"tag": t.Name, "source": t.Source, "prefix": t.Prefix.String()}})
			}
		}
		for i, t := range before {
			if w.tag(t.Name) && !has(after, t.Name) && !has(before[:i], t.Name) {
				mark("tag:"+t.Name, false, store.Event{})
			}
		}
		bc, ac := resolve.Unknown, resolve.Unknown
		if bok {
			bc = bv.Classification
		}
		if aok {
			ac = av.Classification
		}
		if bc != ac {
			if w.class(bc) {
				mark("classification:"+bc, false, store.Event{})
			}
			if w.class(ac) {
				mark("classification:"+ac, true, store.Event{Kind: store.EventAddressClassification,
					Details: map[string]any{"classification": ac, "source": av.ClassificationSource, "prefix": av.ClassificationPrefix.String()}})
			}
		}
	}
	return out
}

// rulesTTL is how long WatchMarks reuses the rules it read.
const rulesTTL = 2 * time.Second

// WatchMarks follows ix's snapshots until ctx ends and reports, through
// st.ReportMarks, the tags and classifications the enabled rules ask for
// appearing or going away on changed stored prefixes: the database stores
// one event per transition however many serve processes report it. It
// runs beside ingest, never in its path: a write returns before its change
// is compared here. Failures are logged and the comparison moves on (the
// next change is compared from the snapshot that failed).
func WatchMarks(ctx context.Context, ix *index.Index, st *store.Store, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-ix.Ready():
	}
	var (
		want    Wanted
		wantAt  time.Time
		wantErr bool
	)
	prev := ix.Snapshot()
	for {
		ch := ix.Changed()
		cur := ix.Snapshot()
		if cur.Gen() != prev.Gen() {
			if time.Since(wantAt) > rulesTTL {
				rules, err := st.AlertRules(ctx)
				if err != nil {
					if !wantErr && ctx.Err() == nil {
						log.WarnContext(ctx, "Could not read the alert rules to compare tags and classifications; retrying.", "error", err)
					}
					wantErr = true
				} else {
					want, wantAt, wantErr = WantedBy(rules), time.Now(), false
				}
			}
			if marks := Diff(prev, cur, want); len(marks) > 0 {
				if _, err := st.ReportMarks(ctx, marks); err != nil && ctx.Err() == nil {
					log.WarnContext(ctx, "Could not report tag and classification changes for alerts.", "error", err, "marks", len(marks))
				}
			}
			prev = cur
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}
