//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/muninn/muninn/bouncer"
)

// DefaultTable is the table the bouncer owns (family inet).
const DefaultTable = "muninn"

// DefaultPriority runs the bouncer's base chains just before the usual filter chains
// (priority 0), so its drops happen before other tables accept.
const DefaultPriority = -10

// smallSet is the size up to which Check reads a set's elements back to compare the
// count; larger sets are only checked for existence, because reading a large interval
// set back is quadratic in the kernel.
const smallSet = 64

// Options configure a Firewall.
type Options struct {
	// Table is the name of the inet table; DefaultTable when empty.
	Table string
	// Priority of the base chains.
	Priority int32
	// NetNSFd, when not 0, is a network namespace fd to work in (tests).
	NetNSFd int
	// SockBuf is the netlink socket buffer size in bytes; 256 MiB when 0. A whole
	// transaction is one sendmsg, so the send buffer must hold it.
	SockBuf int
	// Server are the addresses of the bouncer's muninn server: the table
	// accepts them before any rule (bouncer.BuildLayout).
	Server []netip.Addr
	// Logger receives debug messages; slog.Default when nil.
	Logger *slog.Logger
}

// Firewall is the nftables implementation of bouncer.Firewall.
type Firewall struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	generation uint64
	layout     *bouncer.Layout
	setLen     map[string]int // expected element count per address set
}

var _ bouncer.Firewall = (*Firewall)(nil)

// New returns a Firewall. It does not touch the kernel.
func New(opts Options) *Firewall {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.SockBuf == 0 {
		opts.SockBuf = 256 << 20
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Firewall{opts: opts, log: log}
}

func (f *Firewall) table() *nftables.Table {
	return &nftables.Table{Name: f.opts.Table, Family: nftables.TableFamilyINet}
}

// conn opens a netlink connection with buffers sized for large transactions.
func (f *Firewall) conn() (*nftables.Conn, error) {
	size := f.opts.SockBuf
	opts := []nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(func(c *netlink.Conn) error {
			// As root, SO_*BUFFORCE lifts the net.core.{w,r}mem_max caps; without
			// CAP_NET_ADMIN it fails and the capped SetWriteBuffer below still applies.
			if rc, err := c.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
				})
			}
			if cur, err := sockBuf(c, unix.SO_SNDBUF); err != nil || cur < size {
				if err := c.SetWriteBuffer(size); err != nil {
					return fmt.Errorf("set write buffer: %w", err)
				}
			}
			if cur, err := sockBuf(c, unix.SO_RCVBUF); err != nil || cur < size {
				if err := c.SetReadBuffer(size); err != nil {
					return fmt.Errorf("set read buffer: %w", err)
				}
			}
			return nil
		}),
	}
	if f.opts.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(f.opts.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nft: open netlink: %w", err)
	}
	return c, nil
}

func sockBuf(c *netlink.Conn, opt int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) }); err != nil {
		return 0, err
	}
	return v, serr
}

// Apply replaces the table with st in one transaction.
func (f *Firewall) Apply(ctx context.Context, st *bouncer.State) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// A fresh generation per apply: a table restored from an old dump, or rebuilt by
	// someone else, carries another marker.
	gen := uint64(time.Now().UnixNano())
	if gen <= f.generation {
		gen = f.generation + 1
	}
	l, err := bouncer.BuildLayout(f.opts.Table, f.opts.Priority, gen, st, f.opts.Server)
	if err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	carry := f.readCounters(c)
	if err := queueLayout(c, l, carry); err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	start := time.Now()
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: apply: flush: %w", err)
	}
	f.generation, f.layout = gen, l
	f.setLen = make(map[string]int, len(l.AddrSets))
	for _, s := range l.AddrSets {
		f.setLen[s.Name] = s.Len()
	}
	f.log.Debug("Applied the full table.", "table", l.Table, "generation", gen, "elements", st.ElementCount(), "flush", time.Since(start))
	return nil
}

// readCounters returns the table's named counters, or nil when there is no table.
func (f *Firewall) readCounters(c *nftables.Conn) map[string]*nftables.CounterObj {
	objs, err := c.GetObjects(f.table())
	if err != nil {
		return nil
	}
	out := map[string]*nftables.CounterObj{}
	for _, o := range objs {
		if co := counterOf(o); co != nil {
			out[co.Name] = co
		}
	}
	return out
}

func counterOf(o nftables.Obj) *nftables.CounterObj {
	switch v := o.(type) {
	case *nftables.CounterObj:
		return v
	case *nftables.NamedObj:
		if ce, ok := v.Obj.(*expr.Counter); ok && v.Type == nftables.ObjTypeCounter {
			return &nftables.CounterObj{Table: v.Table, Name: v.Name, Bytes: ce.Bytes, Packets: ce.Packets}
		}
	}
	return nil
}

// ApplyDelta adds and deletes set elements in one transaction: deletes first, so an
// element replaced by a wider or narrower one never overlaps inside the batch.
func (f *Firewall) ApplyDelta(ctx context.Context, _ *bouncer.State, deltas []bouncer.RulesetDelta) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: apply delta: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.layout == nil {
		return fmt.Errorf("nft: apply delta: %w: no table applied yet", bouncer.ErrDrift)
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := f.table()
	lens := map[string]int{}
	for _, rd := range deltas {
		for _, r := range rd.Rules {
			for _, fam := range []struct {
				v6 bool
				d  bouncer.SetDelta
			}{{false, r.V4}, {true, r.V6}} {
				hs := addrSet(t, bouncer.AddrSetSpec{Name: bouncer.AddrSetName(rd.Ruleset, r.ID, fam.v6, false), V6: fam.v6})
				is := addrSet(t, bouncer.AddrSetSpec{Name: bouncer.AddrSetName(rd.Ruleset, r.ID, fam.v6, true), V6: fam.v6, Interval: true})
				for _, s := range []*nftables.Set{hs, is} {
					if _, ok := f.setLen[s.Name]; !ok {
						return fmt.Errorf("nft: apply delta: set %s: %w: not in the applied table", s.Name, bouncer.ErrDeltaMismatch)
					}
				}
				if err := queueElements(c, hs, fam.v6, len(fam.d.DelHash), slices.Values(fam.d.DelHash), nil, true); err != nil {
					return fmt.Errorf("nft: apply delta: %w", err)
				}
				if err := queueElements(c, is, fam.v6, len(fam.d.DelRanges), nil, slices.Values(fam.d.DelRanges), true); err != nil {
					return fmt.Errorf("nft: apply delta: %w", err)
				}
				if err := queueElements(c, hs, fam.v6, len(fam.d.AddHash), slices.Values(fam.d.AddHash), nil, false); err != nil {
					return fmt.Errorf("nft: apply delta: %w", err)
				}
				if err := queueElements(c, is, fam.v6, len(fam.d.AddRanges), nil, slices.Values(fam.d.AddRanges), false); err != nil {
					return fmt.Errorf("nft: apply delta: %w", err)
				}
				lens[hs.Name] += len(fam.d.AddHash) - len(fam.d.DelHash)
				lens[is.Name] += len(fam.d.AddRanges) - len(fam.d.DelRanges)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: apply delta: flush: %w", err)
	}
	for name, d := range lens {
		f.setLen[name] += d
	}
	return nil
}

// Check compares the kernel with the last apply without reading large sets: table
// existence, the generation marker, the chains and their rule counts, the set names,
// and the element counts of small sets.
func (f *Firewall) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: check: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.layout == nil {
		return nil
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := f.table()
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("nft: check: table %s: %w: missing", t.Name, bouncer.ErrDrift)
		}
		return fmt.Errorf("nft: check: list table: %w", err)
	}
	marker, err := c.GetObject(&nftables.CounterObj{Table: t, Name: bouncer.MarkerCounter})
	if err != nil {
		return fmt.Errorf("nft: check: marker: %w: %v", bouncer.ErrDrift, err)
	}
	if co := counterOf(marker); co == nil || co.Bytes != f.generation {
		return fmt.Errorf("nft: check: marker: %w: generation differs", bouncer.ErrDrift)
	}
	chains, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return fmt.Errorf("nft: check: list chains: %w", err)
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == t.Name {
			have[ch.Name] = ch
		}
	}
	for _, cs := range f.layout.Chains {
		ch, ok := have[cs.Name]
		if !ok {
			return fmt.Errorf("nft: check: chain %s: %w: missing", cs.Name, bouncer.ErrDrift)
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return fmt.Errorf("nft: check: rules of %s: %w", cs.Name, err)
		}
		if len(rules) != len(cs.Rules) {
			return fmt.Errorf("nft: check: chain %s: %w: %d rules, want %d", cs.Name, bouncer.ErrDrift, len(rules), len(cs.Rules))
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return fmt.Errorf("nft: check: list sets: %w", err)
	}
	haveSets := map[string]*nftables.Set{}
	for _, s := range sets {
		haveSets[s.Name] = s
	}
	for _, as := range f.layout.AddrSets {
		s, ok := haveSets[as.Name]
		if !ok {
			return fmt.Errorf("nft: check: set %s: %w: missing", as.Name, bouncer.ErrDrift)
		}
		want := f.setLen[as.Name]
		if want > smallSet {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("nft: check: elements of %s: %w", as.Name, err)
		}
		n := 0
		for _, e := range elems {
			if !e.IntervalEnd {
				n++
			}
		}
		if n != want {
			return fmt.Errorf("nft: check: set %s: %w: %d elements, want %d", as.Name, bouncer.ErrDrift, n, want)
		}
	}
	return nil
}

// Remove deletes the table if it exists.
func (f *Firewall) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: remove: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := f.table()
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: remove: flush: %w", err)
	}
	f.layout, f.setLen = nil, nil
	return nil
}

// Counters reads the rule counters (one small dump of named objects).
func (f *Firewall) Counters(ctx context.Context) ([]bouncer.RuleCounter, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: counters: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.layout == nil {
		return nil, nil
	}
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	objs, err := c.GetObjects(f.table())
	if err != nil {
		return nil, fmt.Errorf("nft: counters: %w", err)
	}
	byName := map[string]*nftables.CounterObj{}
	for _, o := range objs {
		if co := counterOf(o); co != nil {
			byName[co.Name] = co
		}
	}
	out := make([]bouncer.RuleCounter, 0, len(f.layout.Counters))
	for _, cs := range f.layout.Counters {
		if co, ok := byName[cs.Name]; ok {
			out = append(out, bouncer.RuleCounter{Ruleset: cs.Ruleset, RuleID: cs.RuleID, Packets: co.Packets, Bytes: co.Bytes})
		}
	}
	return out, nil
}

// HoneypotSources reads the dynamic honeypot sets (small: one element per source,
// expiring after bouncer.HoneypotTimeout).
func (f *Firewall) HoneypotSources(ctx context.Context) ([]bouncer.HoneypotHit, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: honeypot sources: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.layout == nil || len(f.layout.HPSets) == 0 {
		return nil, nil
	}
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	now := time.Now()
	var out []bouncer.HoneypotHit
	for _, hs := range f.layout.HPSets {
		elems, err := c.GetSetElements(hpSet(f.table(), hs))
		if err != nil {
			return nil, fmt.Errorf("nft: honeypot sources: set %s: %w", hs.Name, err)
		}
		alen := 4
		if hs.V6 {
			alen = 16
		}
		for _, e := range elems {
			if len(e.Key) < alen+8 {
				continue
			}
			addr, _ := netip.AddrFromSlice(e.Key[:alen])
			proto := "tcp"
			if e.Key[alen] == unix.IPPROTO_UDP {
				proto = "udp"
			}
			port := uint16(e.Key[alen+4])<<8 | uint16(e.Key[alen+5])
			// The dynset refreshes the timeout on every packet: the time since the
			// last packet is timeout minus what is left.
			seen := now
			if e.Expires > 0 && e.Expires <= bouncer.HoneypotTimeout {
				seen = now.Add(-(bouncer.HoneypotTimeout - e.Expires))
			}
			out = append(out, bouncer.HoneypotHit{IP: addr.String(), Ruleset: hs.Ruleset, Port: port, Protocol: proto, SeenAt: seen.UTC().Truncate(time.Second)})
		}
	}
	return out, nil
}
