package index

import (
	"container/heap"
	"net/netip"
)

// pfxKey is a prefix without pointers (a netip.Addr holds one for its
// zone), so that the expiry schedule is not scanned by the garbage
// collector.
type pfxKey struct {
	addr [16]byte
	bits uint8
	is4  bool
}

func keyOf(p netip.Prefix) pfxKey {
	return pfxKey{addr: p.Addr().As16(), bits: uint8(p.Bits()), is4: p.Addr().Is4()}
}

func (k pfxKey) prefix() netip.Prefix {
	a := netip.AddrFrom16(k.addr)
	if k.is4 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// expiry is the next expiry of one stored prefix's assertions.
type expiry struct {
	at  int64 // Unix microseconds
	key pfxKey
}

// expiries schedules, per stored prefix, the next expiry of its
// assertions: a heap ordered by time, the earliest first, with each
// prefix's position in it so that a change can replace a prefix's entry.
type expiries struct {
	h   []expiry
	pos map[pfxKey]int
}

func newExpiries() *expiries { return &expiries{pos: map[pfxKey]int{}} }

func (e *expiries) Len() int           { return len(e.h) }
func (e *expiries) Less(i, j int) bool { return e.h[i].at < e.h[j].at }
func (e *expiries) Swap(i, j int) {
	e.h[i], e.h[j] = e.h[j], e.h[i]
	e.pos[e.h[i].key], e.pos[e.h[j].key] = i, j
}
func (e *expiries) Push(x any) {
	x1 := x.(expiry)
	e.pos[x1.key] = len(e.h)
	e.h = append(e.h, x1)
}
func (e *expiries) Pop() any {
	x := e.h[len(e.h)-1]
	e.h = e.h[:len(e.h)-1]
	delete(e.pos, x.key)
	return x
}

// set schedules p's next expiry at (Unix microseconds), replacing any
// entry of p; at 0 removes p's entry.
func (e *expiries) set(p netip.Prefix, at int64) {
	k := keyOf(p)
	i, ok := e.pos[k]
	switch {
	case ok && at == 0:
		heap.Remove(e, i)
	case ok:
		e.h[i].at = at
		heap.Fix(e, i)
	case at != 0:
		heap.Push(e, expiry{at: at, key: k})
	}
}

// next is the earliest scheduled expiry, 0 when none.
func (e *expiries) next() int64 {
	if len(e.h) == 0 {
		return 0
	}
	return e.h[0].at
}

// popDue removes and returns the prefix of the earliest entry when it is
// due at at.
func (e *expiries) popDue(at int64) (netip.Prefix, bool) {
	if len(e.h) == 0 || e.h[0].at > at {
		return netip.Prefix{}, false
	}
	return heap.Pop(e).(expiry).key.prefix(), true
}
