// Package policy implements the muninn ruleset language (DESIGN.md §4): its text
// and JSON forms, validation, and the compiler that turns a ruleset plus the
// stored facts into exact per-rule prefix sets.
package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Action is what a rule (or the default) does with a matching packet.
type Action string

// Actions of the policy language.
const (
	ActionBlock    Action = "block"
	ActionAllow    Action = "allow"
	ActionLog      Action = "log"
	ActionThrottle Action = "throttle"
)

// Hooks a ruleset can attach to.
const (
	HookInput   = "input"
	HookForward = "forward"
)

// Condition kinds.
const (
	KindTag            = "tag"
	KindClassification = "classification"
	KindCountry        = "country"
	KindContinent      = "continent"
	KindASN            = "asn"
	KindOrg            = "org"
	KindCIDR           = "cidr"
	KindList           = "list"
	KindSource         = "source"
)

// Limits of the text form.
const (
	// MaxTextSize is the largest ruleset or selector text Parse accepts.
	MaxTextSize = 256 << 10
	// MaxRules is the largest number of rules in one ruleset.
	MaxRules = 1000
)

// condKinds lists the condition kinds in the order error messages name them.
var condKinds = []string{KindTag, KindClassification, KindCountry, KindContinent, KindASN, KindOrg, KindCIDR, KindList, KindSource}

// Ruleset is an ordered policy: the first matching rule decides, Default applies
// when none does.
type Ruleset struct {
	Name     string   `json:"name"`
	Hook     string   `json:"hook"`
	Scope    Scope    `json:"scope"`
	Default  Action   `json:"default,omitempty"`
	Honeypot Honeypot `json:"honeypot"`
	Rules    []Rule   `json:"rules"`
}

// Scope restricts the traffic a ruleset looks at; packets outside it are not touched.
type Scope struct {
	// Protocol is "tcp", "udp" or "" for any.
	Protocol string      `json:"protocol"`
	DPorts   []PortRange `json:"dports"`
	IIfNames []string    `json:"iifnames"`
}

// Honeypot lists destination ports whose packets mark their source as a scanner.
type Honeypot struct {
	TCP []uint16 `json:"tcp"`
	UDP []uint16 `json:"udp"`
}

// Rule is one line of a ruleset: an action and conditions joined by "and".
type Rule struct {
	Action Action `json:"action"`
	// Rate is the nftables limit of a throttle rule, e.g. "10/second".
	Rate  string `json:"rate,omitempty"`
	Conds []Cond `json:"conds"`
}

// Cond is one condition; it matches when any of Values matches, negated by Not.
type Cond struct {
	Kind   string   `json:"kind"`
	Not    bool     `json:"not,omitempty"`
	Values []string `json:"values"`
}

// PortRange is an inclusive destination port range; a single port has From == To.
// Its JSON form is a number for a single port and a "from-to" string for a range.
type PortRange struct {
	From uint16
	To   uint16
}

// String returns "80" or "1000-2000".
func (p PortRange) String() string {
	if p.From == p.To {
		return strconv.Itoa(int(p.From))
	}
	return strconv.Itoa(int(p.From)) + "-" + strconv.Itoa(int(p.To))
}

// MarshalJSON encodes a single port as a number and a range as "from-to".
func (p PortRange) MarshalJSON() ([]byte, error) {
	if p.From == p.To {
		return []byte(strconv.Itoa(int(p.From))), nil
	}
	return json.Marshal(p.String())
}

// UnmarshalJSON accepts a number or a "from-to" string.
func (p *PortRange) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("policy: port range: %w", err)
		}
	} else {
		s = string(b)
	}
	r, err := parsePortRange(s)
	if err != nil {
		return fmt.Errorf("policy: port range: %w", err)
	}
	*p = r
	return nil
}

// parsePortRange parses "80" or "1000-2000".
func parsePortRange(s string) (PortRange, error) {
	from, to, isRange := strings.Cut(s, "-")
	f, err := parsePort(from)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{From: f, To: f}, nil
	}
	t, err := parsePort(to)
	if err != nil {
		return PortRange{}, err
	}
	if t < f {
		return PortRange{}, fmt.Errorf("port range %q ends before it starts", s)
	}
	return PortRange{From: f, To: t}, nil
}

// parsePort parses a port number 1..65535.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

var (
	continents = map[string]bool{"AF": true, "AN": true, "AS": true, "EU": true, "NA": true, "OC": true, "SA": true}
	rateUnits  = map[string]bool{"second": true, "minute": true, "hour": true, "day": true}
)

// canonicalValue checks one condition value and returns its canonical form.
func canonicalValue(kind, v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("empty %s value", kind)
	}
	if !utf8.ValidString(v) {
		// JSON cannot carry it, so the two forms could not round-trip.
		return "", fmt.Errorf("%s value %q is not valid UTF-8", kind, v)
	}
	switch kind {
	case KindTag, KindOrg, KindSource:
		return v, nil
	case KindList:
		if !isName(v) {
			return "", fmt.Errorf("list name %q must be letters, digits, '-', '_' or '.'", v)
		}
		return v, nil
	case KindClassification:
		c := strings.ToLower(v)
		if err := checkClass(c); err != nil {
			return "", fmt.Errorf("classification %q is not one of malicious, suspicious, benign, unknown", v)
		}
		return c, nil
	case KindCountry:
		c := strings.ToUpper(v)
		if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
			return "", fmt.Errorf("country %q is not an ISO 3166 alpha-2 code", v)
		}
		return c, nil
	case KindContinent:
		c := strings.ToUpper(v)
		if !continents[c] {
			return "", fmt.Errorf("continent %q is not one of AF, AN, AS, EU, NA, OC, SA", v)
		}
		return c, nil
	case KindASN:
		n, err := parseASN(v)
		if err != nil {
			return "", err
		}
		return "AS" + strconv.FormatUint(uint64(n), 10), nil
	case KindCIDR:
		p, err := parseCIDR(v)
		if err != nil {
			return "", err
		}
		return p.String(), nil
	}
	return "", fmt.Errorf("unknown condition kind %q", kind)
}

// parseASN accepts "AS123", "as123" or "123".
func parseASN(v string) (uint32, error) {
	s := v
	if len(s) > 2 && strings.EqualFold(s[:2], "AS") {
		s = s[2:]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("asn %q is not a number or AS<number>", v)
	}
	return uint32(n), nil
}

// parseCIDR parses a prefix or a bare address into canonical form: host bits
// zeroed and IPv4-mapped IPv6 unmapped.
func parseCIDR(v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("cidr %q is not a prefix or an address", v)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return CanonicalPrefix(p), nil
}

// CanonicalPrefix returns p with host bits zeroed and IPv4-mapped IPv6 unmapped
// (::ffff:1.2.3.0/120 becomes 1.2.3.0/24; a mapped prefix shorter than /96 stays IPv6).
func CanonicalPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// isName reports whether s is a ruleset or list name.
func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkRate validates a throttle rate "N/unit".
func checkRate(s string) error {
	n, unit, ok := strings.Cut(s, "/")
	v, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil || v == 0 || (len(n) > 1 && n[0] == '0') || !rateUnits[unit] {
		return fmt.Errorf("rate %q is not <number>/second|minute|hour|day", s)
	}
	return nil
}

// Canonicalize checks a ruleset that did not come from Parse (e.g. decoded from
// JSON) and rewrites it to canonical form in place: values canonicalised,
// empty slices made nil, a missing hook set to input. It returns an error for
// anything Parse would reject.
func (rs *Ruleset) Canonicalize() error {
	if !isName(rs.Name) {
		return fmt.Errorf("policy: ruleset name %q must be 1-64 letters, digits, '-', '_' or '.'", rs.Name)
	}
	switch rs.Hook {
	case "":
		rs.Hook = HookInput
	case HookInput, HookForward:
	default:
		return fmt.Errorf("policy: ruleset %s: hook %q is not input or forward", rs.Name, rs.Hook)
	}
	switch rs.Scope.Protocol {
	case "", "tcp", "udp":
	default:
		return fmt.Errorf("policy: ruleset %s: scope protocol %q is not tcp or udp", rs.Name, rs.Scope.Protocol)
	}
	for _, p := range rs.Scope.DPorts {
		if p.From == 0 || p.To < p.From {
			return fmt.Errorf("policy: ruleset %s: invalid scope port range %d-%d", rs.Name, p.From, p.To)
		}
	}
	for _, n := range rs.Scope.IIfNames {
		if !isIfName(n) {
			return fmt.Errorf("policy: ruleset %s: invalid interface name %q", rs.Name, n)
		}
	}
	for _, ports := range [][]uint16{rs.Honeypot.TCP, rs.Honeypot.UDP} {
		for _, p := range ports {
			if p == 0 {
				return fmt.Errorf("policy: ruleset %s: honeypot port 0", rs.Name)
			}
		}
	}
	switch rs.Default {
	case "", ActionAllow, ActionBlock:
	default:
		return fmt.Errorf("policy: ruleset %s: default %q is not allow or block", rs.Name, rs.Default)
	}
	if len(rs.Rules) == 0 && rs.Default == "" {
		return fmt.Errorf("policy: ruleset %s: no rules and no default", rs.Name)
	}
	if len(rs.Rules) > MaxRules {
		return fmt.Errorf("policy: ruleset %s: %d rules, at most %d allowed", rs.Name, len(rs.Rules), MaxRules)
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		switch r.Action {
		case ActionBlock, ActionAllow, ActionLog:
			if r.Rate != "" {
				return fmt.Errorf("policy: ruleset %s: rule %d: only throttle takes a rate", rs.Name, i+1)
			}
		case ActionThrottle:
			if err := checkRate(r.Rate); err != nil {
				return fmt.Errorf("policy: ruleset %s: rule %d: %w", rs.Name, i+1, err)
			}
		default:
			return fmt.Errorf("policy: ruleset %s: rule %d: action %q is not block, allow, log or throttle", rs.Name, i+1, r.Action)
		}
		if err := canonicalizeConds(r.Conds); err != nil {
			return fmt.Errorf("policy: ruleset %s: rule %d: %w", rs.Name, i+1, err)
		}
	}
	rs.Scope.DPorts = nilIfEmpty(rs.Scope.DPorts)
	rs.Scope.IIfNames = nilIfEmpty(rs.Scope.IIfNames)
	rs.Honeypot.TCP = nilIfEmpty(rs.Honeypot.TCP)
	rs.Honeypot.UDP = nilIfEmpty(rs.Honeypot.UDP)
	rs.Rules = nilIfEmpty(rs.Rules)
	return nil
}

// CanonicalizeSelector checks a selector that did not come from ParseSelector
// and rewrites its values to canonical form in place.
func CanonicalizeSelector(conds []Cond) error {
	if err := canonicalizeConds(conds); err != nil {
		return fmt.Errorf("policy: selector: %w", err)
	}
	return nil
}

func canonicalizeConds(conds []Cond) error {
	if len(conds) == 0 {
		return fmt.Errorf("no conditions")
	}
	for i := range conds {
		c := &conds[i]
		if len(c.Values) == 0 {
			return fmt.Errorf("condition %d (%s) has no values", i+1, c.Kind)
		}
		for j, v := range c.Values {
			cv, err := canonicalValue(c.Kind, v)
			if err != nil {
				return fmt.Errorf("condition %d: %w", i+1, err)
			}
			c.Values[j] = cv
		}
	}
	return nil
}

// isIfName reports whether s is a plausible Linux interface name (nftables
// accepts a trailing '*' wildcard).
func isIfName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c == '"' || c == ',' || c == '#' || c == '/' || c >= 0x7f {
			return false
		}
	}
	return true
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
