package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"

	"go4.org/netipx"
)

// Aggregator merges feed lines into the minimal CIDR lists per family.
type Aggregator struct {
	b netipx.IPSetBuilder
	// Lines counts the lines read; Entries the lines that held an address.
	Lines, Entries int
}

// Add reads feed lines from r. It understands the formats of
// ../shared/data/feeds: one address or prefix per line ('#' and ';' comments),
// "IP<TAB>count" (ipsum), "prefix ; SBLnnn" (Spamhaus), "start<TAB>end<TAB>..."
// ranges (DShield), CSV with the address first (Stratosphere) and NDJSON
// objects with a "cidr" field (Spamhaus JSON). Lines without an address are skipped.
func (a *Aggregator) Add(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		a.Lines++
		if a.addLine(sc.Bytes()) {
			a.Entries++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("policy: aggregate: %w", err)
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
		from, err1 := netip.ParseAddr(string(first))
		to, err2 := netip.ParseAddr(string(second))
		if err1 == nil && err2 == nil {
			r := netipx.IPRangeFrom(from.Unmap(), to.Unmap())
			if r.IsValid() {
				a.b.AddRange(r)
				return true
			}
		}
	}
	return a.addField(first)
}

// field splits off the first field, ending at whitespace, ',' or ';'.
func field(b []byte) (first, rest []byte) {
	b = bytes.TrimLeft(b, " \t")
	i := bytes.IndexAny(b, " \t,;")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+1:]
}

// addField adds a prefix or a bare address.
func (a *Aggregator) addField(f []byte) bool {
	p, err := parseCIDR(string(f))
	if err != nil {
		return false
	}
	a.b.AddPrefix(p)
	return true
}

// Prefixes returns the merged minimal CIDR lists.
func (a *Aggregator) Prefixes() (v4, v6 []netip.Prefix, err error) {
	s, err := a.b.IPSet()
	if err != nil {
		return nil, nil, fmt.Errorf("policy: aggregate: %w", err)
	}
	for _, p := range s.Prefixes() {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6, nil
}
