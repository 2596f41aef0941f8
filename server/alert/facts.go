package alert

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// FromIndex returns the facts of addresses from the index its holder
// points to once that index has loaded; before (or in a process without an
// index: muninn worker, holder nil or empty) it reads them from st through
// the same resolver (FromStore), so messages carry the facts wherever they
// are composed.
func FromIndex(holder *atomic.Pointer[index.Index], st *store.Store, now func() time.Time) FactsFunc {
	fallback := FromStore(st, now)
	return func(ctx context.Context, a netip.Addr) (Facts, error) {
		if holder != nil {
			if ix := holder.Load(); ix != nil {
				select {
				case <-ix.Ready():
					return SnapFacts(ix.Snapshot(), a), nil
				default:
				}
			}
		}
		return fallback(ctx, a)
	}
}

// FromStore returns the facts of addresses read from st at now: the stored
// prefixes containing the address and its geo network (store.AddressChain),
// resolved by resolve.Effective, the rules the index answers with.
func FromStore(st *store.Store, now func() time.Time) FactsFunc {
	return func(ctx context.Context, a netip.Addr) (Facts, error) {
		a = a.Unmap()
		at := now()
		chain, geo, err := st.AddressChain(ctx, at, a)
		if err != nil {
			return Facts{}, fmt.Errorf("alert: facts of %s: %w", a, err)
		}
		v := resolve.Effective(netip.PrefixFrom(a, a.BitLen()), chain, at)
		f := viewFacts(v, v.Exists())
		if geo != nil {
			f.Known = true
			f.Country, f.ASN, f.ASOrg = geo.Country, geo.ASN, geo.ASOrg
		}
		return f, nil
	}
}

// SnapFacts returns the facts of a in one index snapshot.
func SnapFacts(snap *index.Snap, a netip.Addr) Facts {
	v, ok := snap.Lookup(a)
	f := viewFacts(v, ok)
	if g, ok := snap.Geo(a); ok {
		f.Known = true
		f.Country, f.ASN, f.ASOrg = g.Country, int64(g.ASN), g.Org
	}
	return f
}

// viewFacts are the facts of an effective view (ok: a stored prefix
// contains the address).
func viewFacts(v resolve.View, ok bool) Facts {
	var f Facts
	if !ok {
		return f
	}
	f.Known = true
	f.Classification = v.Classification
	f.Tags = v.TagNames()
	if v.ClassificationPrefix.IsValid() {
		f.Reasons = append(f.Reasons, "classification "+v.Classification+" from "+v.ClassificationSource+" on "+v.ClassificationPrefix.String())
	}
	for _, t := range v.Tags {
		f.Reasons = append(f.Reasons, "tag "+t.Name+" from "+t.Source+" on "+t.Prefix.String())
	}
	return f
}
