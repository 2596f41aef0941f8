package render

import (
	"context"
	"net/netip"

	"github.com/muninn/muninn/server/policy"
)

// Source is what a Hub renders from: every stored prefix's effective view
// (policy.Entry, built with policy.EntryOf) and the geo networks. The
// in-memory index implements it (index.Index.RenderSource).
type Source interface {
	// Snapshot returns an immutable view of the current facts. withGeo says
	// whether the caller needs geo networks (a source may leave them out
	// otherwise). A source held in memory never fails.
	Snapshot(ctx context.Context, withGeo bool) (FactSnapshot, error)
	// Changed returns a channel closed at the next change of the facts
	// after the call. A nil channel means the source does not announce
	// changes; the hub then relies on the store's change notifications.
	Changed() <-chan struct{}
}

// FactSnapshot is an immutable view of a Source at one generation. Its
// methods are safe for concurrent use and return facts the caller must not
// modify (Facts.Lists is nil; the caller sets it on a copy of the struct).
type FactSnapshot interface {
	// Gen is the generation: it grows with every change of the facts.
	Gen() uint64
	// Seq is the change-feed sequence (store.Change.Seq) the facts include;
	// renders stored by several processes never go back to older facts.
	Seq() int64
	// Facts returns every entry and, when withGeo, every geo network.
	Facts(withGeo bool) *policy.Facts
	// SpanFacts returns the entries and (when withGeo) geo networks inside
	// span, plus the most specific entry and the most specific geo network
	// containing span (span itself included), which is what
	// policy.CompileSpan needs.
	SpanFacts(span netip.Prefix, withGeo bool) *policy.Facts
	// ChangedSince reports what changed between generation gen and this
	// snapshot: spans are stored prefixes whose assertions changed (added,
	// removed, expired or altered); every address whose effective view
	// changed lies inside one of them. geoChanged says the geo networks
	// changed. ok is false when the source cannot tell (gen is too old or
	// from another source): the caller must compile in full.
	ChangedSince(gen uint64) (spans []netip.Prefix, geoChanged, ok bool)
}
