package bouncer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go4.org/netipx"
)

// WriteScript writes l as an nft script (`nft -f`) that builds the same table as
// bouncer/nft: it creates the table if missing, deletes it, and declares it again, so
// `nft -f` applies it as one transaction.
func WriteScript(w io.Writer, l *Layout) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	t := quote(l.Table)
	fmt.Fprintf(bw, "table inet %s\ndelete table inet %s\ntable inet %s {\n", t, t, t)
	fmt.Fprintf(bw, "\tcounter %s { packets 0 bytes %d }\n", MarkerCounter, l.Generation)
	for _, c := range l.Counters {
		fmt.Fprintf(bw, "\tcounter %s { }\n", quote(c.Name))
	}
	for _, s := range l.PortSets {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = strconv.Itoa(int(p))
		}
		fmt.Fprintf(bw, "\tset %s { type inet_service; elements = { %s } }\n", quote(s.Name), strings.Join(ports, ", "))
	}
	for _, s := range l.IfaceSets {
		names := make([]string, len(s.Ifaces))
		for i, n := range s.Ifaces {
			names[i] = strconv.Quote(n)
		}
		fmt.Fprintf(bw, "\tset %s { type ifname; elements = { %s } }\n", quote(s.Name), strings.Join(names, ", "))
	}
	for _, s := range l.HPSets {
		typ := "ipv4_addr"
		if s.V6 {
			typ = "ipv6_addr"
		}
		fmt.Fprintf(bw, "\tset %s { type %s . inet_proto . inet_service; flags dynamic,timeout; timeout %ds; size 65535; }\n", quote(s.Name), typ, int(HoneypotTimeout.Seconds()))
	}
	for _, s := range l.AddrSets {
		writeAddrSet(bw, s)
	}
	for _, c := range l.Chains {
		fmt.Fprintf(bw, "\tchain %s {\n", quote(c.Name))
		if c.Hook != "" {
			fmt.Fprintf(bw, "\t\ttype filter hook %s priority %d; policy accept;\n", c.Hook, l.Priority)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(bw, "\t\t%s\n", stmtString(r))
		}
		bw.WriteString("\t}\n")
	}
	bw.WriteString("}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("script: write: %w", err)
	}
	return nil
}

func writeAddrSet(bw *bufio.Writer, s AddrSetSpec) {
	typ := "ipv4_addr"
	if s.V6 {
		typ = "ipv6_addr"
	}
	flags := ""
	if s.Interval {
		flags = " flags interval;"
	}
	fmt.Fprintf(bw, "\tset %s { type %s;%s", quote(s.Name), typ, flags)
	if s.Len() > 0 {
		bw.WriteString(" elements = {")
		writeElements(bw, s.Elems.Addrs(), s.Elems.Ranges())
		bw.WriteString(" }")
	}
	bw.WriteString(" }\n")
}

func writeElements(bw *bufio.Writer, hash iter.Seq[netip.Addr], ranges iter.Seq[netipx.IPRange]) {
	first := true
	sep := func() {
		if !first {
			bw.WriteString(",")
		}
		first = false
		bw.WriteString(" ")
	}
	var buf []byte
	for a := range hash {
		sep()
		buf = a.AppendTo(buf[:0])
		bw.Write(buf)
	}
	for r := range ranges {
		sep()
		buf = r.From().AppendTo(buf[:0])
		if r.From() != r.To() {
			buf = append(buf, '-')
			buf = r.To().AppendTo(buf)
		}
		bw.Write(buf)
	}
}

func stmtString(s Stmt) string {
	var parts []string
	if s.NFProto != "" {
		parts = append(parts, "meta nfproto "+s.NFProto)
	}
	if s.L4Proto != "" {
		parts = append(parts, "meta l4proto "+s.L4Proto)
	}
	if s.DPortSet != "" {
		parts = append(parts, "th dport @"+quote(s.DPortSet))
	}
	if s.IIFSet != "" {
		parts = append(parts, "iifname @"+quote(s.IIFSet))
	}
	saddr := "ip saddr"
	if s.NFProto == "ipv6" {
		saddr = "ip6 saddr"
	}
	if s.SAddrSet != "" {
		parts = append(parts, saddr+" @"+quote(s.SAddrSet))
	}
	if s.Honeypot != "" {
		parts = append(parts, "update @"+quote(s.Honeypot)+" { "+saddr+" . meta l4proto . th dport }")
	}
	if s.NeighborDiscovery {
		parts = append(parts, "icmpv6 type 133-136")
	}
	if s.CtReply {
		parts = append(parts, "ct state established,related ct direction reply")
	}
	if s.Counter != "" {
		parts = append(parts, "counter name "+quote(s.Counter))
	}
	if s.Limit != nil {
		parts = append(parts, "limit rate over "+s.Limit.String())
	}
	if s.LogPrefix != "" {
		parts = append(parts, "log prefix "+strconv.Quote(s.LogPrefix))
	}
	switch s.Verdict {
	case "jump":
		parts = append(parts, "jump "+quote(s.Jump))
	case "":
	default:
		parts = append(parts, s.Verdict)
	}
	return strings.Join(parts, " ")
}

// quote quotes an nft identifier that the nft parser would not take bare.
func quote(name string) string {
	if strings.ContainsAny(name, "-") {
		return strconv.Quote(name)
	}
	return name
}

// DryRun is a Firewall that prints the nft script it would apply instead of touching
// the kernel.
type DryRun struct {
	mu       sync.Mutex
	w        io.Writer
	table    string
	priority int32
	server   []netip.Addr
}

// NewDryRun returns a DryRun writing scripts for table (family inet) to w;
// server are the addresses of the muninn server, accepted before any rule.
func NewDryRun(w io.Writer, table string, priority int32, server []netip.Addr) *DryRun {
	return &DryRun{w: w, table: table, priority: priority, server: server}
}

// Apply prints the full table script.
func (d *DryRun) Apply(_ context.Context, st *State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, err := BuildLayout(d.table, d.priority, 0, st, d.server)
	if err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	return WriteScript(d.w, l)
}

// ApplyDelta prints the element changes as add/delete element commands.
func (d *DryRun) ApplyDelta(_ context.Context, _ *State, deltas []RulesetDelta) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bw := bufio.NewWriter(d.w)
	for _, rd := range deltas {
		for _, r := range rd.Rules {
			for _, fam := range []struct {
				v6 bool
				d  SetDelta
			}{{false, r.V4}, {true, r.V6}} {
				for _, interval := range []bool{false, true} {
					name := quote(AddrSetName(rd.Ruleset, r.ID, fam.v6, interval))
					del, add := fam.d.DelHash, fam.d.AddHash
					delR, addR := []netipx.IPRange(nil), []netipx.IPRange(nil)
					if interval {
						del, add, delR, addR = nil, nil, fam.d.DelRanges, fam.d.AddRanges
					}
					if len(del)+len(delR) > 0 {
						fmt.Fprintf(bw, "delete element inet %s %s {", quote(d.table), name)
						writeElements(bw, slices.Values(del), slices.Values(delR))
						bw.WriteString(" }\n")
					}
					if len(add)+len(addR) > 0 {
						fmt.Fprintf(bw, "add element inet %s %s {", quote(d.table), name)
						writeElements(bw, slices.Values(add), slices.Values(addR))
						bw.WriteString(" }\n")
					}
				}
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dry run: write: %w", err)
	}
	return nil
}

// Check never reports drift: a dry run has nothing in the kernel.
func (d *DryRun) Check(context.Context) error { return nil }

// Remove prints the command that deletes the table.
func (d *DryRun) Remove(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := fmt.Fprintf(d.w, "delete table inet %s\n", quote(d.table)); err != nil {
		return fmt.Errorf("dry run: write: %w", err)
	}
	return nil
}

// Counters returns nothing: a dry run counts no packets.
func (d *DryRun) Counters(context.Context) ([]RuleCounter, error) { return nil, nil }

// HoneypotSources returns nothing: a dry run sees no packets.
func (d *DryRun) HoneypotSources(context.Context) ([]HoneypotHit, error) { return nil, nil }
