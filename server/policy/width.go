package policy

import (
	"fmt"
	"net/netip"
)

// The widest prefixes accepted by default, wherever a prefix enters (ingest,
// overrides, the never-block guard, the cidr terms of rulesets and lists): one
// line such as 0.0.0.0/0 would otherwise block (or unblock) the whole
// internet. Feeds apply the same defaults (worker/source/feed).
const (
	MinBitsV4 = 8
	MinBitsV6 = 32
)

// AllowWideParam is the query parameter with which an admin accepts prefixes
// wider than the default limit for one request (declared in openapi.yaml).
const AllowWideParam = "allow_wide"

// WidthError is a prefix wider than the default limit of its family.
type WidthError struct {
	// Prefix is the canonical prefix (IPv4-mapped IPv6 unmapped).
	Prefix netip.Prefix
	// Limit is the shortest length accepted for the family: MinBitsV4 or MinBitsV6.
	Limit int
}

func (e *WidthError) Error() string {
	fam := "IPv6"
	if e.Prefix.Addr().Is4() {
		fam = "IPv4"
	}
	return fmt.Sprintf("%s is wider than /%d, the widest %s prefix accepted (it covers %s); an admin may accept it with %s=true",
		e.Prefix, e.Limit, fam, coverage(e.Prefix), AllowWideParam)
}

// CheckWidth is the one width rule: it returns a *WidthError when p is wider
// than /8 (IPv4) or /32 (IPv6), nil otherwise. An IPv4-mapped IPv6 prefix
// (::ffff:0:0/96 and longer) is judged at its IPv4 width, so ::ffff:0:0/96 is
// 0.0.0.0/0.
func CheckWidth(p netip.Prefix) error {
	p = CanonicalPrefix(p)
	limit := MinBitsV6
	if p.Addr().Is4() {
		limit = MinBitsV4
	}
	if p.Bits() < limit {
		return &WidthError{Prefix: p, Limit: limit}
	}
	return nil
}

// coverage says how much of the address space p covers, for people deciding
// whether to lift the limit: "all of IPv4", "1/128 of IPv6 (2^121 addresses)".
func coverage(p netip.Prefix) string {
	fam, bits := "IPv6", 128
	if p.Addr().Is4() {
		fam, bits = "IPv4", 32
	}
	if p.Bits() == 0 {
		return "all of " + fam
	}
	host := bits - p.Bits()
	if host < 63 {
		return fmt.Sprintf("1/%d of %s, %d addresses", uint64(1)<<p.Bits(), fam, uint64(1)<<host)
	}
	return fmt.Sprintf("1/%d of %s, 2^%d addresses", uint64(1)<<p.Bits(), fam, host)
}

// Coverage is the human description of what a prefix covers, as shown when
// someone is about to accept a wide one.
func Coverage(p netip.Prefix) string { return coverage(CanonicalPrefix(p)) }

// WideTerm is a cidr value of a ruleset or selector wider than the limit.
type WideTerm struct {
	// Pointer is the JSON Pointer of the value in the JSON form, e.g.
	// "/rules/0/conds/1/values/0" (a selector: "/conds/1/values/0").
	Pointer string
	// Rule is the 1-based rule number (0 for a selector).
	Rule int
	Err  *WidthError
}

// Reason is the field error text: which rule and why.
func (w WideTerm) Reason() string {
	if w.Rule == 0 {
		return "cidr " + w.Err.Error()
	}
	return fmt.Sprintf("rule %d: cidr %s", w.Rule, w.Err.Error())
}

// WideCIDRs returns every cidr value of rs wider than the limit (CheckWidth),
// in rule order.
func (rs *Ruleset) WideCIDRs() []WideTerm {
	var out []WideTerm
	for i, r := range rs.Rules {
		for _, w := range wideConds(r.Conds, fmt.Sprintf("/rules/%d", i)) {
			w.Rule = i + 1
			out = append(out, w)
		}
	}
	return out
}

// WideSelectorCIDRs returns every cidr value of a selector (a list) wider
// than the limit.
func WideSelectorCIDRs(conds []Cond) []WideTerm {
	return wideConds(conds, "")
}

func wideConds(conds []Cond, base string) []WideTerm {
	var out []WideTerm
	for j, c := range conds {
		if c.Kind != KindCIDR {
			continue
		}
		for k, v := range c.Values {
			p, err := parseCIDR(v)
			if err != nil {
				continue // Parse and Canonicalize report malformed values
			}
			if we, ok := CheckWidth(p).(*WidthError); ok {
				out = append(out, WideTerm{Pointer: fmt.Sprintf("%s/conds/%d/values/%d", base, j, k), Err: we})
			}
		}
	}
	return out
}
