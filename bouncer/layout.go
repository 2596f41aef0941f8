package bouncer

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// HoneypotTimeout is how long a honeypot source stays in the kernel's dynamic set
// after its last packet.
const HoneypotTimeout = time.Hour

// MarkerCounter is the named counter whose byte count holds the generation of the
// applied table: reading one small object tells whether the table is still ours.
const MarkerCounter = "muninn_generation"

// Layout is the nftables table the bouncer wants, independent of how it is written:
// bouncer/nft turns it into netlink messages and DryRun into an nft script, so both
// always describe the same table.
type Layout struct {
	Table      string
	Priority   int32
	Generation uint64
	// Server holds the addresses of the bouncer's muninn server, accepted
	// before any rule (ServerSetV4/ServerSetV6 are their sets).
	Server    []netip.Addr
	Counters  []CounterSpec
	PortSets  []PortSetSpec
	IfaceSets []IfaceSetSpec
	HPSets    []HoneypotSetSpec
	AddrSets  []AddrSetSpec
	// Chains holds the base chains first (Hook set), then one chain per ruleset.
	Chains []ChainSpec
}

// CounterSpec is a named counter for one rule (RuleID 0: the ruleset default).
type CounterSpec struct {
	Name    string
	Ruleset string
	RuleID  int64
}

// PortSetSpec is a named set of inet_service.
type PortSetSpec struct {
	Name  string
	Ports []uint16
}

// IfaceSetSpec is a named set of interface names.
type IfaceSetSpec struct {
	Name   string
	Ifaces []string
}

// HoneypotSetSpec is a dynamic set of source . l4proto . dport with timeouts.
type HoneypotSetSpec struct {
	Name    string
	Ruleset string
	V6      bool
}

// AddrSetSpec is one rule's address set for one family: a hash set of single
// addresses or an interval set of ranges. Elems holds only the addresses (a hash
// set) or only the ranges (an interval set), shared with the State it came from.
type AddrSetSpec struct {
	Name     string
	V6       bool
	Interval bool
	Elems    AddrSet
}

// Len is the number of elements of the set.
func (s AddrSetSpec) Len() int { return s.Elems.Len() }

// ChainSpec is a chain: a base chain when Hook is set, else a regular chain.
type ChainSpec struct {
	Name  string
	Hook  string
	Rules []Stmt
}

// Stmt is one nftables rule: the matches in field order, then counter, limit, log
// and the verdict.
type Stmt struct {
	NFProto   string // "ipv4" or "ipv6"
	L4Proto   string // "tcp" or "udp"
	DPortSet  string // th dport @set
	IIFSet    string // iifname @set
	SAddrSet  string // ip saddr @set / ip6 saddr @set (needs NFProto)
	Honeypot  string // update @set { saddr . l4proto . th dport } (needs NFProto, L4Proto)
	Counter   string // counter name
	Limit     *Rate  // limit rate over
	LogPrefix string
	// CtReply matches replies to connections the host opened:
	// ct state established,related ct direction reply.
	CtReply bool
	// NeighborDiscovery matches ICMPv6 router and neighbor solicitations and
	// advertisements (types 133-136), IPv6's ARP.
	NeighborDiscovery bool
	Verdict           string // "drop", "accept", "return", "jump" or "" (continue)
	Jump              string
}

// The sets of the server's addresses (see Layout.Server); ruleset sets all
// start with "rs_", so these never collide with one.
const (
	ServerSetV4 = "server_v4"
	ServerSetV6 = "server_v6"
)

// ChainName is the regular chain of a ruleset.
func ChainName(ruleset string) string { return "rs_" + ruleset }

// AddrSetName is the set of rule id for a family; kind is 'h' (hash) or 'i' (interval).
func AddrSetName(ruleset string, id int64, v6 bool, interval bool) string {
	fam, kind := "v4", "h"
	if v6 {
		fam = "v6"
	}
	if interval {
		kind = "i"
	}
	return "rs_" + ruleset + "_r" + strconv.FormatInt(id, 10) + "_" + fam + kind
}

// CounterName is the named counter of a rule; id 0 is the ruleset's default action.
func CounterName(ruleset string, id int64) string {
	if id == 0 {
		return "rs_" + ruleset + "_default"
	}
	return "rs_" + ruleset + "_r" + strconv.FormatInt(id, 10)
}

// BuildLayout is the pure description of the table enforcing st. server are
// the addresses of the bouncer's muninn server.
//
// Before the rules of any ruleset, every base chain accepts packets from the
// server's addresses, and the input chain accepts replies to connections the
// host opened itself (ct state established,related ct direction reply): a
// block that covers the server, or a default block without a port scope, can
// then never cut the host off from the server, and no fix could otherwise
// reach it. Inbound connections from a blocked source are still refused, and
// so are the packets of connections it opened before the block.
func BuildLayout(table string, priority int32, generation uint64, st *State, server []netip.Addr) (*Layout, error) {
	l := &Layout{Table: table, Priority: priority, Generation: generation}
	var v4, v6 []netip.Addr
	for _, a := range server {
		a = a.Unmap()
		switch {
		case !a.IsValid():
		case a.Is4() && !slices.Contains(v4, a):
			v4 = append(v4, a)
		case a.Is6() && !slices.Contains(v6, a.WithZone("")):
			v6 = append(v6, a.WithZone(""))
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	l.Server = append(v4, v6...)
	keep := func(hook string) []Stmt {
		var out []Stmt
		if hook == HookInput {
			// IPv6 reaches nothing without neighbor discovery (IPv4's ARP is
			// not filtered by inet tables at all), and a host without router
			// advertisements loses its default route.
			out = append(out, Stmt{CtReply: true, Verdict: "accept"},
				Stmt{NFProto: "ipv6", NeighborDiscovery: true, Verdict: "accept"})
		}
		if len(v4) > 0 {
			out = append(out, Stmt{NFProto: "ipv4", SAddrSet: ServerSetV4, Verdict: "accept"})
		}
		if len(v6) > 0 {
			out = append(out, Stmt{NFProto: "ipv6", SAddrSet: ServerSetV6, Verdict: "accept"})
		}
		return out
	}
	base := map[string]*ChainSpec{}
	var bases []*ChainSpec
	var rulesetChains []ChainSpec
	for _, rs := range st.Rulesets {
		if err := validateMeta(&rs); err != nil {
			return nil, fmt.Errorf("layout: %w", err)
		}
		bc := base[rs.Hook]
		if bc == nil {
			bc = &ChainSpec{Name: rs.Hook, Hook: rs.Hook, Rules: keep(rs.Hook)}
			base[rs.Hook] = bc
			bases = append(bases, bc)
		}
		prefix := "rs_" + rs.Name
		iif := ""
		if len(rs.Scope.IIFNames) > 0 {
			iif = prefix + "_iif"
			l.IfaceSets = append(l.IfaceSets, IfaceSetSpec{Name: iif, Ifaces: rs.Scope.IIFNames})
		}
		// Honeypot ports come before the scope: a packet to one of them is only ever
		// dropped and its source recorded, whatever the rules say.
		hpPorts := []struct {
			proto string
			ports []uint16
		}{{"tcp", rs.Honeypot.TCP}, {"udp", rs.Honeypot.UDP}}
		if len(rs.Honeypot.TCP)+len(rs.Honeypot.UDP) > 0 {
			l.HPSets = append(l.HPSets,
				HoneypotSetSpec{Name: prefix + "_hp_v4", Ruleset: rs.Name},
				HoneypotSetSpec{Name: prefix + "_hp_v6", Ruleset: rs.Name, V6: true})
		}
		for _, hp := range hpPorts {
			if len(hp.ports) == 0 {
				continue
			}
			ps := prefix + "_hp_" + hp.proto
			l.PortSets = append(l.PortSets, PortSetSpec{Name: ps, Ports: hp.ports})
			for _, fam := range []string{"ipv4", "ipv6"} {
				set := prefix + "_hp_v4"
				if fam == "ipv6" {
					set = prefix + "_hp_v6"
				}
				bc.Rules = append(bc.Rules, Stmt{NFProto: fam, L4Proto: hp.proto, DPortSet: ps, IIFSet: iif, Honeypot: set, Verdict: "drop"})
			}
		}
		chain := ChainName(rs.Name)
		var protos []string
		switch rs.Scope.Protocol {
		case "tcp", "udp":
			protos = []string{rs.Scope.Protocol}
		default:
			if len(rs.Scope.DPorts) > 0 {
				protos = []string{"tcp", "udp"}
			} else {
				protos = []string{""}
			}
		}
		dports := ""
		if len(rs.Scope.DPorts) > 0 {
			dports = prefix + "_dports"
			l.PortSets = append(l.PortSets, PortSetSpec{Name: dports, Ports: rs.Scope.DPorts})
		}
		for _, p := range protos {
			bc.Rules = append(bc.Rules, Stmt{L4Proto: p, DPortSet: dports, IIFSet: iif, Verdict: "jump", Jump: chain})
		}

		cs := ChainSpec{Name: chain}
		for _, r := range rs.Rules {
			counter := CounterName(rs.Name, r.ID)
			l.Counters = append(l.Counters, CounterSpec{Name: counter, Ruleset: rs.Name, RuleID: r.ID})
			for _, fam := range []struct {
				v6   bool
				name string
				set  AddrSet
			}{{false, "ipv4", r.V4}, {true, "ipv6", r.V6}} {
				// Every set exists even when empty, so any later delta is only element
				// adds and deletes.
				for _, interval := range []bool{false, true} {
					spec := AddrSetSpec{Name: AddrSetName(rs.Name, r.ID, fam.v6, interval), V6: fam.v6, Interval: interval}
					if interval {
						spec.Elems = fam.set.onlyRanges()
					} else {
						spec.Elems = fam.set.onlyAddrs()
					}
					l.AddrSets = append(l.AddrSets, spec)
					m := Stmt{NFProto: fam.name, SAddrSet: spec.Name, Counter: counter}
					switch r.Action {
					case ActionBlock:
						m.Verdict = "drop"
						cs.Rules = append(cs.Rules, m)
					case ActionAllow:
						// The table only ever drops: "allow" ends this ruleset (return)
						// instead of accepting, so it never overrides another ruleset.
						m.Verdict = "return"
						cs.Rules = append(cs.Rules, m)
					case ActionLog:
						m.LogPrefix = logPrefix(rs.Name, r.ID)
						cs.Rules = append(cs.Rules, m)
					case ActionThrottle:
						rate := r.Rate
						m.Limit, m.Verdict = &rate, "drop"
						cs.Rules = append(cs.Rules, m,
							Stmt{NFProto: fam.name, SAddrSet: spec.Name, Verdict: "return"})
					default:
						return nil, fmt.Errorf("layout: ruleset %q rule %d: unsupported action %q", rs.Name, r.ID, r.Action)
					}
				}
			}
		}
		def := CounterName(rs.Name, 0)
		l.Counters = append(l.Counters, CounterSpec{Name: def, Ruleset: rs.Name})
		v := "return"
		if rs.Default == ActionBlock {
			v = "drop"
		}
		cs.Rules = append(cs.Rules, Stmt{Counter: def, Verdict: v})
		rulesetChains = append(rulesetChains, cs)
	}
	if len(bases) > 0 {
		// The server's sets come first; only base chains refer to them.
		var sets []AddrSetSpec
		if len(v4) > 0 {
			sets = append(sets, AddrSetSpec{Name: ServerSetV4, Elems: AddrSet{addrs: addrSeq(slices.Values(v4))}})
		}
		if len(v6) > 0 {
			sets = append(sets, AddrSetSpec{Name: ServerSetV6, V6: true, Elems: AddrSet{addrs: addrSeq(slices.Values(v6))}})
		}
		l.AddrSets = append(sets, l.AddrSets...)
	}
	for _, bc := range bases {
		l.Chains = append(l.Chains, *bc)
	}
	l.Chains = append(l.Chains, rulesetChains...)
	return l, nil
}

func logPrefix(ruleset string, id int64) string {
	p := fmt.Sprintf("muninn %s r%d: ", ruleset, id)
	if len(p) > 127 {
		p = p[:127]
	}
	return p
}
