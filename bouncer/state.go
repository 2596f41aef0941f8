package bouncer

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go4.org/netipx"
)

// ErrDeltaMismatch reports a delta that does not fit the applied render (another base
// version, or other rules). The syncer answers it by asking for a full render.
var ErrDeltaMismatch = errors.New("delta does not match the applied render")

// RuleState is one rule, normalized for enforcement.
type RuleState struct {
	ID     int64
	Action string
	// Rate is the parsed throttle rate; zero unless Action is throttle.
	Rate Rate
	Text string
	V4   AddrSet
	V6   AddrSet
}

// Rate is a throttle rate: Count packets per Per.
type Rate struct {
	Count uint64
	Per   time.Duration
}

// String formats the rate as nft does ("10/second").
func (r Rate) String() string {
	unit := map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour", 24 * time.Hour: "day", 7 * 24 * time.Hour: "week"}[r.Per]
	return fmt.Sprintf("%d/%s", r.Count, unit)
}

// ParseRate parses an nft limit rate such as "10/second" or "600/minute".
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want <count>/<unit>", s)
	}
	count, err := strconv.ParseUint(strings.TrimSpace(n), 10, 64)
	if err != nil || count == 0 {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive integer", s)
	}
	per, ok := map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour, "week": 7 * 24 * time.Hour}[strings.TrimSpace(unit)]
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: unit must be second, minute, hour, day or week", s)
	}
	return Rate{Count: count, Per: per}, nil
}

// RulesetState is one ruleset as enforced: the render's metadata and its normalized rules.
type RulesetState struct {
	Name         string
	Version      int64
	Hash         string
	GeneratedAt  time.Time
	Hook         string
	Scope        Scope
	Default      string
	Honeypot     Honeypot
	Rules        []RuleState
	GuardRemoved []GuardRemoved
}

// State is everything the bouncer enforces, rulesets sorted by name.
type State struct {
	Rulesets []RulesetState
}

// Applied returns the applied version per ruleset.
func (s *State) Applied() map[string]int64 {
	out := make(map[string]int64, len(s.Rulesets))
	for _, rs := range s.Rulesets {
		out[rs.Name] = rs.Version
	}
	return out
}

// Ruleset returns the ruleset called name, or nil.
func (s *State) Ruleset(name string) *RulesetState {
	for i := range s.Rulesets {
		if s.Rulesets[i].Name == name {
			return &s.Rulesets[i]
		}
	}
	return nil
}

// With returns a copy of s with rs added or replaced.
func (s *State) With(rs RulesetState) *State {
	out := &State{Rulesets: make([]RulesetState, 0, len(s.Rulesets)+1)}
	for _, cur := range s.Rulesets {
		if cur.Name != rs.Name {
			out.Rulesets = append(out.Rulesets, cur)
		}
	}
	out.Rulesets = append(out.Rulesets, rs)
	slices.SortFunc(out.Rulesets, func(a, b RulesetState) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Without returns a copy of s without the named rulesets.
func (s *State) Without(names ...string) *State {
	out := &State{}
	for _, cur := range s.Rulesets {
		if !slices.Contains(names, cur.Name) {
			out.Rulesets = append(out.Rulesets, cur)
		}
	}
	return out
}

// ElementCount is the number of kernel set elements the state needs.
func (s *State) ElementCount() int {
	n := 0
	for _, rs := range s.Rulesets {
		for _, r := range rs.Rules {
			n += r.V4.Len() + r.V6.Len()
		}
	}
	return n
}

var rulesetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// NewRulesetState validates a full render and normalizes its prefixes.
func NewRulesetState(r Render) (RulesetState, error) {
	if r.Delta {
		return RulesetState{}, fmt.Errorf("ruleset %q: a delta is not a full render", r.Ruleset)
	}
	rs := RulesetState{
		Name: r.Ruleset, Version: r.Version, Hash: r.Hash, GeneratedAt: r.GeneratedAt,
		Hook: r.Hook, Scope: r.Scope, Default: r.Default, Honeypot: r.Honeypot,
		GuardRemoved: r.GuardRemoved,
	}
	if err := validateMeta(&rs); err != nil {
		return RulesetState{}, err
	}
	seen := map[int64]bool{}
	for _, rr := range r.Rules {
		if seen[rr.ID] || rr.ID <= 0 {
			return RulesetState{}, fmt.Errorf("ruleset %q: rule id %d is not positive or not unique", r.Ruleset, rr.ID)
		}
		seen[rr.ID] = true
		rule := RuleState{ID: rr.ID, Action: rr.Action, Text: rr.Text}
		if err := validateAction(rr.Action, false); err != nil {
			return RulesetState{}, fmt.Errorf("ruleset %q rule %d: %w", r.Ruleset, rr.ID, err)
		}
		if rr.Action == ActionThrottle {
			rate, err := ParseRate(rr.Rate)
			if err != nil {
				return RulesetState{}, fmt.Errorf("ruleset %q rule %d: %w", r.Ruleset, rr.ID, err)
			}
			rule.Rate = rate
		}
		var err error
		if rule.V4, err = buildAddrSet(rr.V4, false); err != nil {
			return RulesetState{}, fmt.Errorf("ruleset %q rule %d v4: %w", r.Ruleset, rr.ID, err)
		}
		if rule.V6, err = buildAddrSet(rr.V6, true); err != nil {
			return RulesetState{}, fmt.Errorf("ruleset %q rule %d v6: %w", r.Ruleset, rr.ID, err)
		}
		rs.Rules = append(rs.Rules, rule)
	}
	return rs, nil
}

func validateMeta(rs *RulesetState) error {
	if !rulesetNameRE.MatchString(rs.Name) {
		return fmt.Errorf("ruleset %q: name must match %s", rs.Name, rulesetNameRE)
	}
	if rs.Hook != HookInput && rs.Hook != HookForward {
		return fmt.Errorf("ruleset %q: hook %q: want input or forward", rs.Name, rs.Hook)
	}
	switch rs.Scope.Protocol {
	case "tcp", "udp", "", "any":
	default:
		return fmt.Errorf("ruleset %q: scope protocol %q: want tcp, udp or any", rs.Name, rs.Scope.Protocol)
	}
	for _, name := range rs.Scope.IIFNames {
		if name == "" || len(name) > 15 {
			return fmt.Errorf("ruleset %q: interface name %q: want 1 to 15 bytes", rs.Name, name)
		}
	}
	if err := validateAction(rs.Default, true); err != nil {
		return fmt.Errorf("ruleset %q default: %w", rs.Name, err)
	}
	return nil
}

func validateAction(a string, isDefault bool) error {
	switch a {
	case ActionBlock, ActionAllow:
		return nil
	case "":
		// A ruleset without a default: unmatched packets pass untouched (DESIGN §4).
		if isDefault {
			return nil
		}
	case ActionLog, ActionThrottle:
		if !isDefault {
			return nil
		}
	}
	return fmt.Errorf("unsupported action %q", a)
}

func parsePrefixes(list []string, v6 bool) (single []netip.Addr, wide []netip.Prefix, err error) {
	for _, s := range list {
		var p netip.Prefix
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, nil, fmt.Errorf("parse prefix: %w", err)
		}
		if p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Addr().Is6() != v6 {
			return nil, nil, fmt.Errorf("prefix %s: wrong address family", s)
		}
		p = p.Masked()
		if p.IsSingleIP() {
			single = append(single, p.Addr())
		} else {
			wide = append(wide, p)
		}
	}
	return single, wide, nil
}

// SetDelta is the element changes of one AddrSet.
type SetDelta struct {
	AddHash   []netip.Addr
	DelHash   []netip.Addr
	AddRanges []netipx.IPRange
	DelRanges []netipx.IPRange
}

// Empty reports whether the delta changes nothing.
func (d SetDelta) Empty() bool {
	return len(d.AddHash)+len(d.DelHash)+len(d.AddRanges)+len(d.DelRanges) == 0
}

// RuleDelta is the element changes of one rule.
type RuleDelta struct {
	ID int64
	V4 SetDelta
	V6 SetDelta
}

// RulesetDelta is the element changes of one ruleset, from version Base to Version.
type RulesetDelta struct {
	Ruleset string
	Base    int64
	Version int64
	Rules   []RuleDelta
}

// ApplyDelta returns the ruleset after delta r and the kernel element changes that take
// rs there. rs is not modified. A delta that does not fit returns ErrDeltaMismatch.
func (rs *RulesetState) ApplyDelta(r Render) (RulesetState, RulesetDelta, error) {
	if !r.Delta || r.Ruleset != rs.Name || r.BaseVersion != rs.Version {
		return RulesetState{}, RulesetDelta{}, fmt.Errorf("ruleset %q: base version %d, applied %d: %w", r.Ruleset, r.BaseVersion, rs.Version, ErrDeltaMismatch)
	}
	next := *rs
	next.Version, next.Hash, next.GeneratedAt = r.Version, r.Hash, r.GeneratedAt
	if r.GuardRemoved != nil {
		next.GuardRemoved = r.GuardRemoved
	}
	next.Rules = slices.Clone(rs.Rules)
	out := RulesetDelta{Ruleset: rs.Name, Base: rs.Version, Version: r.Version}
	for _, rr := range r.Rules {
		i := slices.IndexFunc(next.Rules, func(x RuleState) bool { return x.ID == rr.ID })
		if i < 0 {
			return RulesetState{}, RulesetDelta{}, fmt.Errorf("ruleset %q: rule %d is not applied: %w", rs.Name, rr.ID, ErrDeltaMismatch)
		}
		rd := RuleDelta{ID: rr.ID}
		var err error
		if next.Rules[i].V4, rd.V4, err = next.Rules[i].V4.apply(rr.AddV4, rr.DelV4, false); err != nil {
			return RulesetState{}, RulesetDelta{}, fmt.Errorf("ruleset %q rule %d v4: %w", rs.Name, rr.ID, err)
		}
		if next.Rules[i].V6, rd.V6, err = next.Rules[i].V6.apply(rr.AddV6, rr.DelV6, true); err != nil {
			return RulesetState{}, RulesetDelta{}, fmt.Errorf("ruleset %q rule %d v6: %w", rs.Name, rr.ID, err)
		}
		if !rd.V4.Empty() || !rd.V6.Empty() {
			out.Rules = append(out.Rules, rd)
		}
	}
	return next, out, nil
}

// Render converts rs back to a full render, the form kept in the state file.
func (rs *RulesetState) Render() Render {
	r := Render{
		Ruleset: rs.Name, Version: rs.Version, Hash: rs.Hash, GeneratedAt: rs.GeneratedAt,
		Hook: rs.Hook, Scope: rs.Scope, Default: rs.Default, Honeypot: rs.Honeypot,
		GuardRemoved: rs.GuardRemoved, Rules: make([]RenderRule, 0, len(rs.Rules)),
	}
	for _, rule := range rs.Rules {
		rr := RenderRule{ID: rule.ID, Action: rule.Action, Text: rule.Text, V4: rule.V4.strings(), V6: rule.V6.strings()}
		if rule.Action == ActionThrottle {
			rr.Rate = rule.Rate.String()
		}
		r.Rules = append(r.Rules, rr)
	}
	return r
}
