package bouncer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// AddrSet is the normalized content of one rule for one address family: single
// addresses go to a hash set (cheap to change), wider prefixes to an interval set of
// ranges that are disjoint and not adjacent (merged with netipx, because the kernel
// rejects overlapping intervals). An address may be in both.
//
// An AddrSet is immutable, so readers on other goroutines (the state file saver, a
// layout being built) never see it change. A delta builds a new AddrSet that shares
// every part of the old one it does not touch: its cost follows the size of the
// delta, not of the set (a chunked sorted sequence; see chunked). The zero value is
// the empty set.
type AddrSet struct {
	addrs  chunked[addrKey]
	ranges chunked[rangeKey]
}

// NewAddrSet returns the set of the single addresses addrs (in any order, duplicates
// allowed) and the ranges (overlapping or adjacent ones are merged). Every address
// must be of one family, without a zone and not IPv4-mapped IPv6; ranges must be
// valid. Input that is already sorted and normalized is taken without a merge.
func NewAddrSet(addrs []netip.Addr, ranges []netipx.IPRange) (AddrSet, error) {
	var first netip.Addr // sets the family
	family := func(a netip.Addr) error {
		switch {
		case !a.IsValid():
			return errors.New("invalid address")
		case a.Zone() != "" || a.Is4In6():
			return fmt.Errorf("address %s: zones and IPv4-mapped IPv6 addresses are not allowed", a)
		case !first.IsValid():
			first = a
		case first.Is6() != a.Is6():
			return fmt.Errorf("address %s: all addresses must be of one family", a)
		}
		return nil
	}
	for _, a := range addrs {
		if err := family(a); err != nil {
			return AddrSet{}, fmt.Errorf("address set: %w", err)
		}
	}
	normal := true
	for i, r := range ranges {
		if !r.IsValid() {
			return AddrSet{}, fmt.Errorf("address set: range %s-%s is not valid", r.From(), r.To())
		}
		if err := family(r.From()); err != nil {
			return AddrSet{}, fmt.Errorf("address set: %w", err)
		}
		if err := family(r.To()); err != nil {
			return AddrSet{}, fmt.Errorf("address set: %w", err)
		}
		// Normalized: each range starts after the address following the previous one.
		if i > 0 {
			next := ranges[i-1].To().Next()
			normal = normal && next.IsValid() && next.Less(r.From())
		}
	}
	if !slices.IsSortedFunc(addrs, netip.Addr.Compare) {
		addrs = sortUnique(addrs)
	}
	if !normal {
		var b netipx.IPSetBuilder
		for _, r := range ranges {
			b.AddRange(r)
		}
		set, err := b.IPSet()
		if err != nil {
			return AddrSet{}, fmt.Errorf("address set: merge ranges: %w", err)
		}
		ranges = set.Ranges()
	}
	return AddrSet{addrs: addrSeq(slices.Values(addrs)), ranges: rangeSeq(slices.Values(ranges))}, nil
}

// Len is the number of kernel set elements (one per address, one per range).
func (a AddrSet) Len() int { return a.addrs.Len() + a.ranges.Len() }

// NumAddrs is the number of single addresses (hash set elements).
func (a AddrSet) NumAddrs() int { return a.addrs.Len() }

// NumRanges is the number of ranges (interval set elements).
func (a AddrSet) NumRanges() int { return a.ranges.Len() }

// Addrs yields the single addresses in ascending order.
func (a AddrSet) Addrs() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for k := range a.addrs.all() {
			if !yield(k.addr()) {
				return
			}
		}
	}
}

// Ranges yields the ranges in ascending order.
func (a AddrSet) Ranges() iter.Seq[netipx.IPRange] {
	return func(yield func(netipx.IPRange) bool) {
		for k := range a.ranges.all() {
			if !yield(k.ipRange()) {
				return
			}
		}
	}
}

// onlyAddrs is the hash set part of a; onlyRanges the interval part.
func (a AddrSet) onlyAddrs() AddrSet  { return AddrSet{addrs: a.addrs} }
func (a AddrSet) onlyRanges() AddrSet { return AddrSet{ranges: a.ranges} }

// Equal reports whether a and b hold the same addresses and ranges (however their
// storage is split).
func (a AddrSet) Equal(b AddrSet) bool {
	return a.addrs.Len() == b.addrs.Len() && a.ranges.Len() == b.ranges.Len() &&
		seqEqual(a.addrs.all(), b.addrs.all()) && seqEqual(a.ranges.all(), b.ranges.all())
}

func seqEqual[T comparable](a, b iter.Seq[T]) bool {
	next, stop := iter.Pull(b)
	defer stop()
	for x := range a {
		if y, ok := next(); !ok || x != y {
			return false
		}
	}
	_, more := next()
	return !more
}

// addrKey is an address as the two big-endian halves of its 16-byte form (IPv4 as
// IPv4-mapped IPv6). Within one family key order is address order. Keys hold no
// pointers (a netip.Addr does), so a set of a million addresses is 16 MB the garbage
// collector never scans.
type addrKey struct{ hi, lo uint64 }

func keyOf(a netip.Addr) addrKey {
	b := a.As16()
	return addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// addr converts k back; an IPv4-mapped key is an IPv4 address (sets never hold
// IPv4-mapped IPv6 addresses: parsePrefixes and NewAddrSet refuse them).
func (k addrKey) addr() netip.Addr {
	if k.hi == 0 && k.lo>>32 == 0xffff {
		v := uint32(k.lo)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

func (k addrKey) compare(o addrKey) int {
	if c := cmp.Compare(k.hi, o.hi); c != 0 {
		return c
	}
	return cmp.Compare(k.lo, o.lo)
}

// rangeKey is an interval element. The ranges of one set are disjoint, so they are
// ordered by their first address.
type rangeKey struct{ from, to addrKey }

func rangeKeyOf(r netipx.IPRange) rangeKey { return rangeKey{keyOf(r.From()), keyOf(r.To())} }

func (r rangeKey) ipRange() netipx.IPRange { return netipx.IPRangeFrom(r.from.addr(), r.to.addr()) }

func (r rangeKey) compare(o rangeKey) int { return r.from.compare(o.from) }

// addrSeq and rangeSeq build the chunked sequence of sorted, normalized input.
func addrSeq(s iter.Seq[netip.Addr]) chunked[addrKey] {
	return chunkedFrom(func(yield func(addrKey) bool) {
		for a := range s {
			if !yield(keyOf(a)) {
				return
			}
		}
	})
}

func rangeSeq(s iter.Seq[netipx.IPRange]) chunked[rangeKey] {
	return chunkedFrom(func(yield func(rangeKey) bool) {
		for r := range s {
			if !yield(rangeKeyOf(r)) {
				return
			}
		}
	})
}

func buildAddrSet(list []string, v6 bool) (AddrSet, error) {
	single, wide, err := parsePrefixes(list, v6)
	if err != nil {
		return AddrSet{}, err
	}
	slices.SortFunc(single, netip.Addr.Compare)
	out := AddrSet{addrs: addrSeq(slices.Values(slices.Compact(single)))}
	if len(wide) > 0 {
		var b netipx.IPSetBuilder
		for _, p := range wide {
			b.AddPrefix(p)
		}
		set, err := b.IPSet()
		if err != nil {
			return AddrSet{}, fmt.Errorf("merge prefixes: %w", err)
		}
		out.ranges = rangeSeq(slices.Values(set.Ranges()))
	}
	return out, nil
}

// apply deletes del, then adds add. It returns the new set and the exact kernel
// changes: only elements that really appear or disappear, so the kernel never sees a
// duplicate add or a delete of a missing element. a is not modified.
func (a AddrSet) apply(add, del []string, v6 bool) (AddrSet, SetDelta, error) {
	addSingle, addWide, err := parsePrefixes(add, v6)
	if err != nil {
		return AddrSet{}, SetDelta{}, fmt.Errorf("add: %w", err)
	}
	delSingle, delWide, err := parsePrefixes(del, v6)
	if err != nil {
		return AddrSet{}, SetDelta{}, fmt.Errorf("del: %w", err)
	}
	var d SetDelta
	out := a
	if len(addSingle)+len(delSingle) > 0 {
		out.addrs, d.AddHash, d.DelHash = applyHash(a.addrs, addSingle, delSingle)
	}
	if len(addWide)+len(delWide) > 0 {
		out.ranges, d.AddRanges, d.DelRanges, err = applyRanges(a.ranges, addWide, delWide)
		if err != nil {
			return AddrSet{}, SetDelta{}, err
		}
	}
	return out, d, nil
}

// applyHash computes (cur \ del) ∪ add with one lookup per changed address; added
// and removed come out sorted.
func applyHash(cur chunked[addrKey], add, del []netip.Addr) (next chunked[addrKey], added, removed []netip.Addr) {
	add = sortUnique(add)
	del = sortUnique(del)
	var ins, rem []addrKey
	for _, x := range add {
		if k := keyOf(x); !cur.has(k) {
			added = append(added, x)
			ins = append(ins, k)
		}
	}
	j := 0
	for _, x := range del {
		for j < len(add) && add[j].Less(x) {
			j++
		}
		if j < len(add) && add[j] == x {
			continue // deleted and added back by the same delta
		}
		if k := keyOf(x); cur.has(k) {
			removed = append(removed, x)
			rem = append(rem, k)
		}
	}
	return cur.edit(rem, ins), added, removed
}

func sortUnique(a []netip.Addr) []netip.Addr {
	a = slices.Clone(a)
	slices.SortFunc(a, netip.Addr.Compare)
	return slices.Compact(a)
}

// applyRanges computes (cur \ del) ∪ add on merged ranges. Only the ranges that
// overlap or touch a changed prefix are read and merged again, and only the chunks
// holding them are rebuilt, so a delta against a large interval set costs the size of
// the delta.
func applyRanges(cur chunked[rangeKey], add, del []netip.Prefix) (next chunked[rangeKey], added, removed []netipx.IPRange, err error) {
	var old []rangeKey
	mark := func(r netipx.IPRange) {
		lo, hi := r.From(), r.To()
		if p := lo.Prev(); p.IsValid() {
			lo = p
		}
		if n := hi.Next(); n.IsValid() {
			hi = n
		}
		klo, khi := keyOf(lo), keyOf(hi)
		// From the first range whose end reaches lo to the last that starts by hi.
		for x := range cur.seek(func(x rangeKey) bool { return x.to.compare(klo) >= 0 }) {
			if x.from.compare(khi) > 0 {
				break
			}
			old = append(old, x)
		}
	}
	for _, p := range del {
		mark(netipx.RangeOfPrefix(p))
	}
	for _, p := range add {
		mark(netipx.RangeOfPrefix(p))
	}
	slices.SortFunc(old, rangeKey.compare)
	old = slices.Compact(old)
	var b netipx.IPSetBuilder
	for _, r := range old {
		b.AddRange(r.ipRange())
	}
	for _, p := range del {
		b.RemovePrefix(p)
	}
	for _, p := range add {
		b.AddPrefix(p)
	}
	set, err := b.IPSet()
	if err != nil {
		return chunked[rangeKey]{}, nil, nil, fmt.Errorf("merge prefixes: %w", err)
	}
	fresh := set.Ranges()
	// Both lists are sorted and disjoint: walk them side by side.
	var ins, rem []rangeKey
	i, j := 0, 0
	for i < len(old) || j < len(fresh) {
		var f rangeKey
		if j < len(fresh) {
			f = rangeKeyOf(fresh[j])
		}
		switch {
		case j == len(fresh) || (i < len(old) && old[i].compare(f) < 0):
			rem = append(rem, old[i])
			i++
		case i == len(old) || old[i].compare(f) > 0:
			ins = append(ins, f)
			j++
		case old[i] == f:
			i++
			j++
		default: // same start, another end
			rem, ins = append(rem, old[i]), append(ins, f)
			i++
			j++
		}
	}
	for _, r := range ins {
		added = append(added, r.ipRange())
	}
	for _, r := range rem {
		removed = append(removed, r.ipRange())
	}
	return cur.edit(rem, ins), added, removed, nil
}

func (a AddrSet) strings() []string {
	out := make([]string, 0, a.Len())
	for x := range a.Addrs() {
		out = append(out, netip.PrefixFrom(x, x.BitLen()).String())
	}
	for r := range a.Ranges() {
		for _, p := range r.Prefixes() {
			out = append(out, p.String())
		}
	}
	return out
}
