package render

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go4.org/netipx"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
)

// expiryBounder is implemented by fact snapshots that can bound when the views
// of a network stop changing (the index does: index.Snap.ExpiryBound, which
// applies resolve.Expiry).
type expiryBounder interface {
	ExpiryBound(p netip.Prefix) (time.Time, bool)
}

// lastingSet returns the addresses rs may block once every assertion has
// expired (cidr conditions, negations, a default of block): rs compiled with
// no entry at all (an address without stored prefix) and again with every
// address in an existing stored prefix without assertions (one with
// sightings: classification unknown, nothing else), united. nil (every ban
// may last) when rs uses geo facts (withGeo) or named lists: those change
// without a new render, which would leave a decision set's lasting set
// stale, so their bans carry the cap.
func lastingSet(rs *policy.Ruleset, withGeo bool) *netipx.IPSet {
	if rs == nil || withGeo {
		return nil
	}
	for _, r := range rs.Rules {
		if slices.ContainsFunc(r.Conds, func(c policy.Cond) bool { return c.Kind == policy.KindList }) {
			return nil
		}
	}
	var facts policy.Facts
	var b netipx.IPSetBuilder
	for _, entries := range [][]policy.Entry{nil, {
		{Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Classification: resolve.Unknown},
		{Prefix: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Classification: resolve.Unknown},
	}} {
		facts.Entries = entries
		c, err := policy.Compile(rs, &facts)
		if err != nil {
			return nil
		}
		v4, v6 := policy.DenyList(c)
		for _, p := range slices.Concat(v4, v6) {
			b.AddPrefix(p)
		}
	}
	set, _ := b.IPSet() // only fails on invalid prefixes
	return set
}

// Lasting reports whether a ban on p may outlive every assertion: the ruleset
// blocks some address of p without any assertion (cidr conditions,
// negations, a default of block), or uses geo or list conditions, or that
// could not be computed. A decision on p then has no end the assertions
// bound. It depends on the rules' text only (see lastingSet), which the
// decisions' scenarios carry.
func (s *DecisionSet) Lasting(p netip.Prefix) bool {
	return s.lasting == nil || s.lasting.OverlapsPrefix(p)
}

// Overlapping returns the decisions on prefixes that contain p or lie inside
// it, in address order.
func (s *DecisionSet) Overlapping(p netip.Prefix) []Decision {
	var out []Decision
	for bits := 0; bits < p.Bits(); bits++ {
		if d, ok := s.Lookup(netip.PrefixFrom(p.Addr(), bits).Masked()); ok {
			out = append(out, d)
		}
	}
	lo, _ := slices.BinarySearchFunc(s.List, p.Addr(), func(d Decision, a netip.Addr) int { return d.Prefix.Addr().Compare(a) })
	last := netipx.PrefixLastIP(p)
	for _, d := range s.List[lo:] {
		if last.Less(d.Prefix.Addr()) || d.Prefix.Addr().BitLen() != p.Addr().BitLen() {
			break
		}
		if d.Prefix.Bits() >= p.Bits() {
			out = append(out, d)
		}
	}
	return out
}

// Expiries bounds the durations of CrowdSec decisions by the facts of one
// moment: a ban's end is the latest expiry of the live assertions its
// addresses' views rest on, unless the ban may outlive them (see
// [DecisionSet.Lasting]) or one of them never expires.
type Expiries struct {
	facts FactSnapshot
	// Seq is the change-feed sequence of the facts (a bouncer's cursor for
	// the next pull).
	Seq int64
	// Changed holds, sorted, the stored prefixes whose assertions changed
	// after the sequence asked about (what may have moved a ban's end);
	// Known is false when that cannot be told here.
	Changed []netip.Prefix
	Known   bool
}

// End returns the instant after which the ban of set's decision on p ends at
// the latest, unless a source says more by then (which the caller sees in
// Changed); ok is false when there is no such instant.
func (e *Expiries) End(set *DecisionSet, p netip.Prefix) (end time.Time, ok bool) {
	if e == nil || set == nil || set.Lasting(p) {
		return time.Time{}, false
	}
	b, can := e.facts.(expiryBounder)
	if !can {
		return time.Time{}, false
	}
	return b.ExpiryBound(p)
}

// seqGen pairs a change-feed sequence with the first local generation of the
// facts seen at it.
type seqGen struct {
	seq int64
	gen uint64
}

// seqGens is what a hub remembers of the fact snapshots it saw, oldest first.
type seqGens struct {
	mu   sync.Mutex
	list []seqGen
}

// keepSeqGens bounds the remembered sequences; older cursors get every
// decision again.
const keepSeqGens = 4096

func (s *seqGens) note(f FactSnapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.list); n > 0 && s.list[n-1].seq >= f.Seq() {
		return // the first generation at a sequence covers the most
	}
	s.list = append(s.list, seqGen{seq: f.Seq(), gen: f.Gen()})
	if len(s.list) > keepSeqGens {
		s.list = slices.Clone(s.list[len(s.list)-keepSeqGens:])
	}
}

// at returns the generation of the latest sequence seen at or before seq.
func (s *seqGens) at(seq int64) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.list, seq, func(x seqGen, q int64) int { return int(min(max(x.seq-q, -1), 1)) })
	if found {
		return s.list[i].gen, true
	}
	if i == 0 {
		return 0, false
	}
	return s.list[i-1].gen, true
}

// Expiries returns the current facts as [Expiries], with the stored prefixes
// changed after the facts at sequence since (a bouncer's last pull; 0 for
// none). Changes this process cannot name (since is older than what it saw,
// or the source reloaded in full) leave Known false.
func (h *Hub) Expiries(ctx context.Context, since int64) (*Expiries, error) {
	f, err := h.src.Snapshot(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("render: expiries: %w", err)
	}
	h.seqs.note(f)
	e := &Expiries{facts: f, Seq: f.Seq()}
	if since <= 0 {
		return e, nil
	}
	if since >= f.Seq() {
		// Nothing newer here (another process may be ahead: it sent what
		// it knew; the cursor goes back to what this answer rests on).
		e.Known = true
		return e, nil
	}
	gen, ok := h.seqs.at(since)
	if !ok {
		return e, nil
	}
	e.Changed, _, e.Known = f.ChangedSince(gen)
	return e, nil
}
