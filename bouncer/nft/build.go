//go:build linux

// Package nft enforces a bouncer.State with nftables through google/nftables (netlink;
// it never runs the nft binary). The builders in this file are pure: they turn a
// bouncer.Layout into nftables objects and queue them on a Conn; only Flush talks to
// the kernel.
package nft

import (
	"fmt"
	"iter"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/muninn/muninn/bouncer"
)

// maxElemBytes bounds the element bytes of one SetAddElements/SetDeleteElements
// message. The element list is one netlink attribute whose length is a u16:
// google/nftables v0.3.0 does not check it and loads garbage past 64 KiB, so stay
// well under.
const maxElemBytes = 32 << 10

// Registers: reg 1 is the 16-byte NFT_REG_1; concatenations use the 4-byte registers
// from NFT_REG32_00 (8) so that each field starts on its own register, as nft does.
const (
	reg1      = 1
	reg32base = 8
)

// ctDirReply is IP_CT_DIR_REPLY: the packet travels against the direction of
// the packet that created the connection.
const ctDirReply = 1

var (
	hpTypeV4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	hpTypeV6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

// built holds the named sets queued in the current transaction, for rules to refer to.
type built struct {
	table *nftables.Table
	sets  map[string]*nftables.Set
}

// addrSet returns the nftables set for a rule's address set (no elements).
func addrSet(t *nftables.Table, s bouncer.AddrSetSpec) *nftables.Set {
	kt := nftables.TypeIPAddr
	if s.V6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Name: s.Name, KeyType: kt, Interval: s.Interval}
}

// setIDMu serialises set creation across connections (see queueLayout).
var setIDMu sync.Mutex

// queueLayout queues the whole table of l on c: create-if-missing, delete, create,
// then counters, sets with their elements, chains and rules. Nothing reaches the
// kernel before c.Flush, and the kernel applies the batch atomically: the old table
// stays in force until the new one is complete.
func queueLayout(c *nftables.Conn, l *bouncer.Layout, carry map[string]*nftables.CounterObj) error {
	// google/nftables v0.3.0 numbers new sets from a package-level counter that it
	// increments without synchronisation; two firewalls in one process (the tests,
	// the end-to-end lab) would race on it.
	setIDMu.Lock()
	defer setIDMu.Unlock()
	t := &nftables.Table{Name: l.Table, Family: nftables.TableFamilyINet}
	// Adding first makes the delete valid whether or not the table exists; this is
	// what `nft -f` does with "table x; delete table x; table x {...}".
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	b := &built{table: t, sets: map[string]*nftables.Set{}}

	c.AddObj(&nftables.CounterObj{Table: t, Name: bouncer.MarkerCounter, Bytes: l.Generation})
	for _, cs := range l.Counters {
		obj := &nftables.CounterObj{Table: t, Name: cs.Name}
		// Keep counting across full re-applies: start from the old table's values.
		if old, ok := carry[cs.Name]; ok {
			obj.Packets, obj.Bytes = old.Packets, old.Bytes
		}
		c.AddObj(obj)
	}
	for _, ps := range l.PortSets {
		s := &nftables.Set{Table: t, Name: ps.Name, KeyType: nftables.TypeInetService}
		elems := make([]nftables.SetElement, len(ps.Ports))
		for i, p := range ps.Ports {
			elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
		}
		if err := c.AddSet(s, elems); err != nil {
			return fmt.Errorf("nft: add set %s: %w", ps.Name, err)
		}
		b.sets[ps.Name] = s
	}
	for _, is := range l.IfaceSets {
		s := &nftables.Set{Table: t, Name: is.Name, KeyType: nftables.TypeIFName}
		elems := make([]nftables.SetElement, len(is.Ifaces))
		for i, n := range is.Ifaces {
			elems[i] = nftables.SetElement{Key: ifname(n)}
		}
		if err := c.AddSet(s, elems); err != nil {
			return fmt.Errorf("nft: add set %s: %w", is.Name, err)
		}
		b.sets[is.Name] = s
	}
	for _, hs := range l.HPSets {
		s := hpSet(t, hs)
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nft: add set %s: %w", hs.Name, err)
		}
		b.sets[hs.Name] = s
	}
	for _, as := range l.AddrSets {
		s := addrSet(t, as)
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nft: add set %s: %w", as.Name, err)
		}
		b.sets[as.Name] = s
		if err := queueElements(c, s, as.V6, as.Len(), as.Elems.Addrs(), as.Elems.Ranges(), false); err != nil {
			return err
		}
	}
	chains := make(map[string]*nftables.Chain, len(l.Chains))
	for _, cs := range l.Chains {
		ch := &nftables.Chain{Name: cs.Name, Table: t}
		if cs.Hook != "" {
			hook := nftables.ChainHookInput
			if cs.Hook == bouncer.HookForward {
				hook = nftables.ChainHookForward
			}
			policy := nftables.ChainPolicyAccept
			prio := nftables.ChainPriority(l.Priority)
			ch.Hooknum, ch.Priority, ch.Type, ch.Policy = hook, &prio, nftables.ChainTypeFilter, &policy
		}
		chains[cs.Name] = c.AddChain(ch)
	}
	for _, cs := range l.Chains {
		for _, st := range cs.Rules {
			exprs, err := b.stmtExprs(st)
			if err != nil {
				return fmt.Errorf("nft: chain %s: %w", cs.Name, err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[cs.Name], Exprs: exprs})
		}
	}
	return nil
}

func hpSet(t *nftables.Table, hs bouncer.HoneypotSetSpec) *nftables.Set {
	kt := hpTypeV4
	if hs.V6 {
		kt = hpTypeV6
	}
	return &nftables.Set{
		Table: t, Name: hs.Name, KeyType: kt, Concatenation: true,
		Dynamic: true, HasTimeout: true, Timeout: bouncer.HoneypotTimeout, Size: 65535,
	}
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// queueElements queues adds (or deletes) of hash addresses and ranges in chunks that
// stay under maxElemBytes. An interval element is a [start, end+1) pair; the end
// element carries the IntervalEnd flag, and a range reaching the last address has no
// end element. Either sequence may be nil; n is the number of addresses plus ranges
// they yield (it sizes the batches).
func queueElements(c *nftables.Conn, s *nftables.Set, v6 bool, n int, hash iter.Seq[netip.Addr], ranges iter.Seq[netipx.IPRange], del bool) error {
	keyLen := 4
	if v6 {
		keyLen = 16
	}
	// nested element + flags attribute + nested key + data attribute + key
	per := 4 + 8 + 4 + 4 + keyLen
	chunk := maxElemBytes / per
	elems := make([]nftables.SetElement, 0, min(chunk, 2*n))
	send := func() error {
		if len(elems) == 0 {
			return nil
		}
		var err error
		if del {
			err = c.SetDeleteElements(s, elems)
		} else {
			err = c.SetAddElements(s, elems)
		}
		if err != nil {
			return fmt.Errorf("nft: set %s: queue elements: %w", s.Name, err)
		}
		elems = make([]nftables.SetElement, 0, cap(elems))
		return nil
	}
	if hash == nil {
		hash = func(func(netip.Addr) bool) {}
	}
	if ranges == nil {
		ranges = func(func(netipx.IPRange) bool) {}
	}
	for a := range hash {
		elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
		if len(elems) >= chunk {
			if err := send(); err != nil {
				return err
			}
		}
	}
	for r := range ranges {
		elems = append(elems, nftables.SetElement{Key: r.From().AsSlice()})
		if end := r.To().Next(); end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
		if len(elems) >= chunk-1 {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

func cmpEq(data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: data}
}

// stmtExprs is the expression list of one rule.
func (b *built) stmtExprs(st bouncer.Stmt) ([]expr.Any, error) {
	var ex []expr.Any
	v6 := st.NFProto == "ipv6"
	switch st.NFProto {
	case "ipv4":
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1}, cmpEq([]byte{unix.NFPROTO_IPV4}))
	case "ipv6":
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1}, cmpEq([]byte{unix.NFPROTO_IPV6}))
	}
	switch st.L4Proto {
	case "tcp":
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, cmpEq([]byte{unix.IPPROTO_TCP}))
	case "udp":
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, cmpEq([]byte{unix.IPPROTO_UDP}))
	}
	lookup := func(name string) (expr.Any, error) {
		s, ok := b.sets[name]
		if !ok {
			return nil, fmt.Errorf("rule refers to unknown set %s", name)
		}
		return &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID}, nil
	}
	if st.DPortSet != "" {
		l, err := lookup(st.DPortSet)
		if err != nil {
			return nil, err
		}
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, l)
	}
	if st.IIFSet != "" {
		l, err := lookup(st.IIFSet)
		if err != nil {
			return nil, err
		}
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1}, l)
	}
	saddrOff, saddrLen := uint32(12), uint32(4)
	if v6 {
		saddrOff, saddrLen = 8, 16
	}
	if st.SAddrSet != "" {
		l, err := lookup(st.SAddrSet)
		if err != nil {
			return nil, err
		}
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff, Len: saddrLen}, l)
	}
	if st.Honeypot != "" {
		s, ok := b.sets[st.Honeypot]
		if !ok {
			return nil, fmt.Errorf("rule refers to unknown set %s", st.Honeypot)
		}
		// saddr . l4proto . dport in consecutive 4-byte registers.
		protoReg := reg32base + saddrLen/4
		ex = append(ex,
			&expr.Payload{DestRegister: reg32base, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff, Len: saddrLen},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
			&expr.Payload{DestRegister: protoReg + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Dynset{SrcRegKey: reg32base, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: bouncer.HoneypotTimeout},
		)
	}
	if st.NeighborDiscovery {
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, cmpEq([]byte{unix.IPPROTO_ICMPV6}),
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{133}, ToData: []byte{136}},
		)
	}
	if st.CtReply {
		ex = append(ex,
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Ct{Register: reg1, Key: expr.CtKeyDIRECTION},
			cmpEq([]byte{ctDirReply}),
		)
	}
	if st.Counter != "" {
		ex = append(ex, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: st.Counter})
	}
	if st.Limit != nil {
		unit := expr.LimitTime(st.Limit.Per.Seconds())
		ex = append(ex, &expr.Limit{Type: expr.LimitTypePkts, Rate: st.Limit.Count, Unit: unit, Over: true, Burst: 5})
	}
	if st.LogPrefix != "" {
		ex = append(ex, &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(st.LogPrefix)})
	}
	switch st.Verdict {
	case "drop":
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictDrop})
	case "accept":
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictAccept})
	case "return":
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictReturn})
	case "jump":
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictJump, Chain: st.Jump})
	case "":
	default:
		return nil, fmt.Errorf("unsupported verdict %q", st.Verdict)
	}
	return ex, nil
}
