package alert

import (
	"net/netip"
	"sync/atomic"

	"github.com/muninn/muninn/server/index"
)

// FromIndex returns the facts of addresses from the index its holder
// points to (nil: no index yet, no facts): the effective view from the
// resolver (classification, tags with their sources as reason lines) and
// the geo network (country, ASN).
func FromIndex(holder *atomic.Pointer[index.Index]) FactsFunc {
	return func(a netip.Addr) Facts {
		ix := holder.Load()
		if ix == nil {
			return Facts{}
		}
		return SnapFacts(ix.Snapshot(), a)
	}
}

// SnapFacts returns the facts of a in one index snapshot.
func SnapFacts(snap *index.Snap, a netip.Addr) Facts {
	var f Facts
	if v, ok := snap.Lookup(a); ok {
		f.Known = true
		f.Classification = v.Classification
		f.Tags = v.TagNames()
		if v.ClassificationPrefix.IsValid() {
			f.Reasons = append(f.Reasons, "classification "+v.Classification+" from "+v.ClassificationSource+" on "+v.ClassificationPrefix.String())
		}
		for _, t := range v.Tags {
			f.Reasons = append(f.Reasons, "tag "+t.Name+" from "+t.Source+" on "+t.Prefix.String())
		}
	}
	if g, ok := snap.Geo(a); ok {
		f.Known = true
		f.Country, f.ASN, f.ASOrg = g.Country, int64(g.ASN), g.Org
	}
	return f
}
