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
	return func(ctx context.Context, p netip.Prefix) (Facts, error) {
		if holder != nil {
			if ix := holder.Load(); ix != nil {
				select {
				case <-ix.Ready():
					return SnapFacts(ix.Snapshot(), p), nil
				default:
				}
			}
		}
		return fallback(ctx, p)
	}
}

// FromStore returns the facts of addresses read from st at now: the stored
// prefixes containing the address and its geo network (store.AddressChain),
// resolved by resolve.Effective, the rules the index answers with.
func FromStore(st *store.Store, now func() time.Time) FactsFunc {
	return func(ctx context.Context, p netip.Prefix) (Facts, error) {
		at := now()
		chain, geo, err := st.PrefixChain(ctx, at, p)
		if err != nil {
			return Facts{}, fmt.Errorf("alert: facts of %s: %w", p, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		v := resolve.Effective(p.Masked(), chain, at)
		f := viewFacts(v, v.Exists())
		if geo != nil {
			f.Known = true
			f.Country, f.ASN, f.ASOrg = geo.Country, geo.ASN, geo.ASOrg
		}
		return f, nil
	}
}

// SnapFacts returns the facts of p (an address as a host prefix, or a
// prefix) in one index snapshot.
func SnapFacts(snap *index.Snap, p netip.Prefix) Facts {
	v, ok := snap.Network(p)
	f := viewFacts(v, ok)
	if g, ok := snap.GeoNetwork(p); ok {
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
