package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// Aggregator merges feed lines into the minimal CIDR lists per family. IPv4
// lines are parsed without allocation into integer ranges (one uint64 each:
// first address in the high half, last in the low half), which Prefixes
// sorts by radix, merges and turns into CIDRs; IPv6 (rare in feeds) goes
// through net/netip.
type Aggregator struct {
	v4  []uint64
	v6  []netipx.IPRange
	buf []byte
	// Lines counts the lines read; Entries the lines that held an address.
	Lines, Entries int
}

// Add reads feed lines from r. It understands the formats of
// ../shared/data/feeds: one address or prefix per line ('#' and ';' comments),
// "IP<TAB>count" (ipsum), "prefix ; SBLnnn" (Spamhaus), "start<TAB>end<TAB>..."
// ranges (DShield), CSV with the address first (Stratosphere) and NDJSON
// objects with a "cidr" field (Spamhaus JSON). Lines without an address are skipped.
func (a *Aggregator) Add(r io.Reader) error {
	buf := a.buf[:0]
	for {
		if cap(buf)-len(buf) < 4096 {
			buf = slices.Grow(buf, max(64<<10, len(buf)))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			a.buf = buf
			return fmt.Errorf("policy: aggregate: %w", err)
		}
	}
	a.buf = buf
	for len(buf) > 0 {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			buf = nil
		}
		a.Lines++
		if a.addLine(line) {
			a.Entries++
		}
	}
	return nil
}

// addLine adds the address, prefix or range on one line, if any.
func (a *Aggregator) addLine(line []byte) bool {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] == '#' || line[0] == ';' {
		return false
	}
	if line[0] == '{' {
		i := bytes.Index(line, []byte(`"cidr":"`))
		if i < 0 {
			return false
		}
		rest := line[i+len(`"cidr":"`):]
		end := bytes.IndexByte(rest, '"')
		if end < 0 {
			return false
		}
		return a.addField(rest[:end])
	}
	first, rest := field(line)
	if second, _ := field(rest); len(second) > 0 {
		// "start end ..." is a range when both fields are addresses.
		if from, ok := parseV4(first); ok {
			if to, ok := parseV4(second); ok && from <= to {
				a.v4 = append(a.v4, uint64(from)<<32|uint64(to))
				return true
			}
		}
		if isV6(first) || isV6(second) {
			from, err1 := netip.ParseAddr(string(first))
			to, err2 := netip.ParseAddr(string(second))
			if err1 == nil && err2 == nil {
				if r := netipx.IPRangeFrom(from.Unmap(), to.Unmap()); r.IsValid() {
					a.addRange(r)
					return true
				}
			}
		}
	}
	return a.addField(first)
}

// isV6 reports whether b can only be an IPv6 address (it has a colon).
func isV6(b []byte) bool { return bytes.IndexByte(b, ':') >= 0 }

// field splits off the first field, ending at whitespace, ',' or ';'.
func field(b []byte) (first, rest []byte) {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for i, c := range b {
		if c == ' ' || c == '\t' || c == ',' || c == ';' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// addField adds a prefix or a bare address, with the syntax of netip.ParsePrefix
// and netip.ParseAddr (no zones).
func (a *Aggregator) addField(f []byte) bool {
	addr, bitsPart, hasBits := bytes.Cut(f, []byte{'/'})
	if v, ok := parseV4(addr); ok {
		n := 32
		if hasBits {
			if n, ok = parseBits(bitsPart, 32); !ok {
				return false
			}
		}
		mask := uint32(0)
		if n > 0 {
			mask = ^uint32(0) << (32 - n)
		}
		from := v & mask
		a.v4 = append(a.v4, uint64(from)<<32|uint64(from|^mask))
		return true
	}
	if !isV6(addr) {
		return false
	}
	p, err := parseCIDR(string(f))
	if err != nil {
		return false
	}
	a.addRange(netipx.RangeOfPrefix(p))
	return true
}

// addRange adds a range parsed through net/netip (IPv6, or IPv4-mapped IPv6
// that unmapped to IPv4).
func (a *Aggregator) addRange(r netipx.IPRange) {
	if r.From().Is4() {
		f, t := r.From().As4(), r.To().As4()
		from := uint32(f[0])<<24 | uint32(f[1])<<16 | uint32(f[2])<<8 | uint32(f[3])
		to := uint32(t[0])<<24 | uint32(t[1])<<16 | uint32(t[2])<<8 | uint32(t[3])
		a.v4 = append(a.v4, uint64(from)<<32|uint64(to))
		return
	}
	a.v6 = append(a.v6, r)
}

// parseV4 parses a dotted-quad IPv4 address as net/netip does: four decimal
// octets, no leading zeros.
func parseV4(b []byte) (uint32, bool) {
	var v uint32
	octets := 0
	for len(b) > 0 {
		n, digits := 0, 0
		for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' {
			n = n*10 + int(b[digits]-'0')
			digits++
			if digits > 3 {
				return 0, false
			}
		}
		if digits == 0 || n > 255 || (digits > 1 && b[0] == '0') {
			return 0, false
		}
		v = v<<8 | uint32(n)
		octets++
		b = b[digits:]
		if len(b) > 0 {
			if b[0] != '.' || octets == 4 || len(b) == 1 {
				return 0, false
			}
			b = b[1:]
		}
	}
	return v, octets == 4
}

// parseBits parses a prefix length as net/netip does: decimal, no leading zeros.
func parseBits(b []byte, max int) (int, bool) {
	if len(b) == 0 || len(b) > 3 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= max
}

// Prefixes returns the merged minimal CIDR lists.
func (a *Aggregator) Prefixes() (v4, v6 []netip.Prefix, err error) {
	radixSortHigh(a.v4)
	var cur uint64
	have := false
	for _, r := range a.v4 {
		from, to := r>>32, r&0xffffffff
		switch {
		case !have:
			cur, have = r, true
		case from <= cur&0xffffffff+1:
			if to > cur&0xffffffff {
				cur = cur&^0xffffffff | to
			}
		default:
			v4 = appendV4(v4, uint32(cur>>32), uint32(cur))
			cur = r
		}
	}
	if have {
		v4 = appendV4(v4, uint32(cur>>32), uint32(cur))
	}
	slices.SortFunc(a.v6, func(x, y netipx.IPRange) int { return x.From().Compare(y.From()) })
	var c6 netipx.IPRange
	for _, r := range a.v6 {
		switch {
		case !c6.IsValid():
			c6 = r
		case !c6.To().Next().IsValid() || !c6.To().Next().Less(r.From()):
			if c6.To().Less(r.To()) {
				c6 = netipx.IPRangeFrom(c6.From(), r.To())
			}
		default:
			v6 = c6.AppendPrefixes(v6)
			c6 = r
		}
	}
	if c6.IsValid() {
		v6 = c6.AppendPrefixes(v6)
	}
	return v4, v6, nil
}

// appendV4 appends the minimal CIDRs of the IPv4 range [from, to].
func appendV4(dst []netip.Prefix, from, to uint32) []netip.Prefix {
	lo, hi := uint64(from), uint64(to)
	for lo <= hi {
		// The largest aligned block at lo that ends at or before hi.
		k := bits.TrailingZeros64(lo | 1<<32)
		if m := bits.Len64(hi-lo+1) - 1; m < k {
			k = m
		}
		dst = append(dst, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)}), 32-k))
		lo += 1 << k
	}
	return dst
}

// radixSortHigh sorts xs by their high 32 bits (the first address), in two
// passes of 16 bits; ties keep no particular order, which merging ignores.
func radixSortHigh(xs []uint64) {
	if len(xs) < 256 {
		slices.Sort(xs)
		return
	}
	tmp := make([]uint64, len(xs))
	src, dst := xs, tmp
	for shift := 32; shift < 64; shift += 16 {
		var count [1 << 16]int
		for _, x := range src {
			count[(x>>shift)&0xffff]++
		}
		sum := 0
		for i, c := range count {
			count[i] = sum
			sum += c
		}
		for _, x := range src {
			d := (x >> shift) & 0xffff
			dst[count[d]] = x
			count[d]++
		}
		src, dst = dst, src
	}
}
