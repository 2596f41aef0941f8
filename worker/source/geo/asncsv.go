package geo

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"go4.org/netipx"
)

// asnRange is one row of an ip-location-db ASN CSV:
// range_start,range_end,asn,org (for example
// `1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."`).
type asnRange struct {
	start, end netip.Addr
	asn        uint32
	org        string
}

// asnTable is a sorted list of non-overlapping ranges.
type asnTable []asnRange

// loadASNCSV reads the given CSV files into one sorted table. Overlapping rows
// are clipped to the part not covered by an earlier row so lookups stay a
// binary search.
func loadASNCSV(paths []string) (asnTable, error) {
	var t asnTable
	orgs := map[string]string{} // intern: many rows share an organisation
	for _, path := range paths {
		if err := t.read(path, orgs); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(t, func(a, b asnRange) int { return a.start.Compare(b.start) })
	out := t[:0]
	for _, r := range t {
		if n := len(out); n > 0 && r.start.Compare(out[n-1].end) <= 0 {
			if r.end.Compare(out[n-1].end) <= 0 {
				continue
			}
			r.start = out[n-1].end.Next()
		}
		out = append(out, r)
	}
	return slices.Clip(out), nil
}

func (t *asnTable) read(path string, orgs map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("geo: open asn csv: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("geo: read asn csv %s: %w", path, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 {
			return fmt.Errorf("geo: read asn csv %s line %d: want range_start,range_end,asn[,org]", path, line)
		}
		start, err1 := netip.ParseAddr(rec[0])
		end, err2 := netip.ParseAddr(rec[1])
		asn, err3 := strconv.ParseUint(rec[2], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			if line == 1 && strings.Contains(strings.ToLower(rec[0]), "start") {
				continue // header row
			}
			return fmt.Errorf("geo: read asn csv %s line %d: %w", path, line, err)
		}
		if start.Is4In6() || end.Is4In6() {
			continue // aliases of IPv4 space in an IPv6 file
		}
		if start.BitLen() != end.BitLen() || end.Less(start) {
			return fmt.Errorf("geo: read asn csv %s line %d: bad range %s-%s", path, line, start, end)
		}
		org := ""
		if len(rec) > 3 {
			org = rec[3]
			if o, ok := orgs[org]; ok {
				org = o
			} else {
				org = strings.Clone(org)
				orgs[org] = org
			}
		}
		*t = append(*t, asnRange{start: start, end: end, asn: uint32(asn), org: org})
	}
}

// find returns the index of the first range whose end is >= a.
func (t asnTable) find(a netip.Addr) int {
	i, _ := slices.BinarySearchFunc(t, a, func(r asnRange, a netip.Addr) int { return r.end.Compare(a) })
	return i
}

// lookup returns the range holding a.
func (t asnTable) lookup(a netip.Addr) (asnRange, bool) {
	i := t.find(a)
	if i < len(t) && !a.Less(t[i].start) {
		return t[i], true
	}
	return asnRange{}, false
}

// split calls fn for each piece of p: the parts covered by one ASN range
// (with that range) and the gaps (with ok false), in address order.
func (t asnTable) split(p netip.Prefix, fn func(q netip.Prefix, r asnRange, ok bool) error) error {
	first, last := p.Masked().Addr(), netipx.PrefixLastIP(p)
	emit := func(from, to netip.Addr, r asnRange, ok bool) error {
		if from == first && to == last {
			return fn(p.Masked(), r, ok)
		}
		for _, q := range netipx.IPRangeFrom(from, to).Prefixes() {
			if err := fn(q, r, ok); err != nil {
				return err
			}
		}
		return nil
	}
	cur := first
	for i := t.find(first); i < len(t) && !last.Less(t[i].start); i++ {
		r := t[i]
		if cur.Less(r.start) {
			if err := emit(cur, r.start.Prev(), asnRange{}, false); err != nil {
				return err
			}
			cur = r.start
		}
		end := r.end
		if last.Less(end) {
			end = last
		}
		if err := emit(cur, end, r, true); err != nil {
			return err
		}
		if end == last {
			return nil
		}
		cur = end.Next()
	}
	return emit(cur, last, asnRange{}, false)
}

// containing returns the widest prefix around a that lies inside [start,end]
// and is no wider than within.
func containing(a netip.Addr, start, end netip.Addr, within netip.Prefix) netip.Prefix {
	for bits := within.Bits(); bits <= a.BitLen(); bits++ {
		p := netip.PrefixFrom(a, bits).Masked()
		if !p.Addr().Less(start) && !end.Less(netipx.PrefixLastIP(p)) {
			return p
		}
	}
	return netip.PrefixFrom(a, a.BitLen())
}
