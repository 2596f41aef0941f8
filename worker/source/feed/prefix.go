package feed

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Default widest prefix lengths accepted when Options.MaxPrefixLen is zero.
const (
	DefaultMinBitsV4 = 8
	DefaultMinBitsV6 = 32
)

// MaxPrefixLen guards against feeds that list huge networks by mistake (or on
// purpose: FireHOL level1 carries 224.0.0.0/3). A prefix shorter than V4 (IPv4)
// or V6 (IPv6) bits is refused and reported as a rejected line. Zero selects the
// defaults (/8 and /32); a negative value accepts every length.
type MaxPrefixLen struct {
	V4 int
	V6 int
}

func (m MaxPrefixLen) limits() (v4, v6 int) {
	v4, v6 = m.V4, m.V6
	if v4 == 0 {
		v4 = DefaultMinBitsV4
	}
	if v6 == 0 {
		v6 = DefaultMinBitsV6
	}
	return v4, v6
}

var errEmpty = errors.New("empty value")

// ParsePrefix parses an address or CIDR and returns it in canonical form: host
// bits zeroed, IPv4-mapped IPv6 unmapped, a single address as /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errEmpty
	}
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %q", s)
		}
		return Canonical(p)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Canonical returns p with host bits zeroed and an IPv4-mapped IPv6 prefix
// (::ffff:a.b.c.d/96 or longer) turned into its IPv4 form.
func Canonical(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("invalid prefix")
	}
	a, bits := p.Addr(), p.Bits()
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %s has a zone", p)
	}
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix %s is shorter than /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}
