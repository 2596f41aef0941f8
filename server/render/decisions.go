package render

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go4.org/netipx"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
)

// Decision is one ban of a render as the CrowdSec-compatible API serves it:
// a CIDR and the block rule (1-based id) that decides it.
type Decision struct {
	Prefix netip.Prefix
	Rule   int
}

// DecisionSet is the decisions of one render version: one per blocked stored
// prefix, never merged with a neighbour. A stored prefix P is blocked when
// some address of its own (in P, in no more specific stored prefix) is in a
// block rule's served set; its decisions are the served CIDRs of the block
// rules inside P (P itself when a served CIDR contains P), so the guard and
// allow rules split it and the pieces are the decisions. Blocked addresses
// in no stored prefix (geo or cidr conditions) become the served CIDRs of
// that region. The union of the decisions is the union of the block rules'
// served sets, and adding or removing one stored prefix's ban changes only
// that prefix's decisions (and those of a containing prefix whose own
// addresses it covers).
type DecisionSet struct {
	Ruleset string
	Version int64
	// Rules holds the text of each rule by id-1 (the decision's scenario).
	Rules []string
	// List is sorted by address, then bits, without duplicates.
	List []Decision
	// lasting holds the addresses the ruleset blocks without any stored
	// prefix (see Lasting); nil when unknown.
	lasting *netipx.IPSet
}

// Contains reports whether d is in the set.
func (s *DecisionSet) Contains(d Decision) bool {
	i, ok := slices.BinarySearchFunc(s.List, d.Prefix, func(x Decision, p netip.Prefix) int { return comparePrefix(x.Prefix, p) })
	return ok && s.List[i].Rule == d.Rule
}

// Lookup returns the decision on exactly p.
func (s *DecisionSet) Lookup(p netip.Prefix) (Decision, bool) {
	i, ok := slices.BinarySearchFunc(s.List, p, func(x Decision, p netip.Prefix) int { return comparePrefix(x.Prefix, p) })
	if !ok {
		return Decision{}, false
	}
	return s.List[i], true
}

// prefixLister is implemented by fact snapshots that can list their existing
// stored prefixes without resolving their views (the index does).
type prefixLister interface {
	StoredPrefixes() []netip.Prefix
}

// storedPrefixes lists the existing stored prefixes of f in address order.
func storedPrefixes(f FactSnapshot) []netip.Prefix {
	if f == nil {
		return nil
	}
	if l, ok := f.(prefixLister); ok {
		return l.StoredPrefixes()
	}
	es := f.Facts(false).Entries
	out := make([]netip.Prefix, 0, len(es))
	for _, e := range es {
		out = append(out, e.Prefix)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// decisionCache is what a Snapshot keeps for its decisions.
type decisionCache struct {
	facts FactSnapshot
	// rs and withGeo are what the render was compiled with (for
	// DecisionSet.Lasting).
	rs      *policy.Ruleset
	withGeo bool
	once    sync.Once
	set     *DecisionSet
}

// Decisions returns the decisions of the render (computed on first use from
// the render's served sets and the stored prefixes of the facts it was built
// from, then kept).
func (s *Snapshot) Decisions() *DecisionSet {
	s.dec.once.Do(func() {
		s.dec.set = decisionsOf(s.Render, storedPrefixes(s.dec.facts))
		s.dec.set.lasting = lastingSet(s.dec.rs, s.dec.withGeo)
		// The set is all that is needed from now on.
		s.dec.facts, s.dec.rs = nil, nil
	})
	return s.dec.set
}

// decisionsOf computes the decision set of r with owners the stored prefixes
// (sorted by address then bits; nested or disjoint).
func decisionsOf(r *Render, owners []netip.Prefix) *DecisionSet {
	out := &DecisionSet{Ruleset: r.Ruleset, Version: r.Version, Rules: make([]string, len(r.Rules))}
	var blocked [2][]Decision
	for i, rule := range r.Rules {
		out.Rules[i] = rule.Text
		if rule.Action != string(policy.ActionBlock) {
			continue
		}
		for fam, strs := range [2][]string{rule.V4, rule.V6} {
			// Each rule's set is in address order: merge it in.
			run := make([]Decision, 0, len(strs))
			for _, v := range strs {
				p, err := netip.ParsePrefix(v)
				if err != nil {
					continue // a render holds only prefixes it formatted itself
				}
				run = append(run, Decision{Prefix: p, Rule: rule.ID})
			}
			blocked[fam] = mergeDecisions(blocked[fam], run)
		}
	}
	var own [2][]netip.Prefix
	// Owners are in address order, IPv4 first.
	split, _ := slices.BinarySearchFunc(owners, true, func(p netip.Prefix, _ bool) int {
		if p.Addr().Is4() {
			return -1
		}
		return 1
	})
	own[0], own[1] = owners[:split], owners[split:]
	for _, p := range own[1] {
		if p.Addr().Is4() {
			own = [2][]netip.Prefix{} // not in order after all: split one by one
			break
		}
	}
	for _, p := range owners {
		if len(own[0])+len(own[1]) == len(owners) {
			break
		}
		fam := 0
		if p.Addr().Is6() {
			fam = 1
		}
		own[fam] = append(own[fam], p)
	}
	out.List = make([]Decision, 0, len(blocked[0])+len(blocked[1])+len(owners)/8)
	for fam := range 2 {
		// Block rules partition the addresses: their CIDRs are disjoint.
		out.List = familyDecisions(out.List, blocked[fam], own[fam])
	}
	if !slices.IsSortedFunc(out.List, func(a, b Decision) int { return comparePrefix(a.Prefix, b.Prefix) }) {
		slices.SortStableFunc(out.List, func(a, b Decision) int { return comparePrefix(a.Prefix, b.Prefix) })
	}
	out.List = slices.CompactFunc(out.List, func(a, b Decision) bool { return a.Prefix == b.Prefix })
	return out
}

// mergeDecisions merges two lists in address order.
func mergeDecisions(a, b []Decision) []Decision {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]Decision, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if comparePrefix(a[i].Prefix, b[j].Prefix) <= 0 {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// familyDecisions appends to out the decisions of one address family: blocked
// holds the served CIDRs of the block rules (sorted, disjoint), owners the
// stored prefixes (sorted, nested or disjoint). What it appends is unsorted
// and may hold duplicates.
func familyDecisions(out []Decision, blocked []Decision, owners []netip.Prefix) []Decision {
	// stack holds the owners containing the current position, least
	// specific first; next is the first owner not yet pushed.
	var stack []netip.Prefix
	next := 0
	marked := map[netip.Prefix]bool{}
	for _, b := range blocked {
		for next < len(owners) && comparePrefix(owners[next], b.Prefix) < 0 && !b.Prefix.Contains(owners[next].Addr()) {
			stack = pushOwner(stack, owners[next])
			next++
		}
		for len(stack) > 0 && !stack[len(stack)-1].Contains(b.Prefix.Addr()) {
			stack = stack[:len(stack)-1]
		}
		// Owners that contain b strictly sort before it and were pushed
		// unless they share its address (then they come first at that
		// address): push those too.
		for next < len(owners) && owners[next].Addr() == b.Prefix.Addr() && owners[next].Bits() < b.Prefix.Bits() {
			stack = pushOwner(stack, owners[next])
			next++
		}
		last := netipx.PrefixLastIP(b.Prefix)
		j := next
		for j < len(owners) && !last.Less(owners[j].Addr()) {
			j++
		}
		inside := owners[next:j]
		// Every owner inside b with addresses of its own is blocked: it is
		// its own decision (b contains it).
		gap := coverWalk(inside, b.Prefix, func(q netip.Prefix) { out = append(out, Decision{Prefix: q, Rule: b.Rule}) })
		if gap {
			if len(stack) > 0 {
				marked[stack[len(stack)-1]] = true
			} else {
				out = append(out, residue(b, inside)...)
			}
		}
	}
	// A blocked owner that contains served CIDRs: those inside it are its
	// decisions.
	for p := range marked {
		lo, _ := slices.BinarySearchFunc(blocked, p.Addr(), func(d Decision, a netip.Addr) int { return d.Prefix.Addr().Compare(a) })
		last := netipx.PrefixLastIP(p)
		for k := lo; k < len(blocked) && !last.Less(blocked[k].Prefix.Addr()); k++ {
			out = append(out, blocked[k])
		}
	}
	return out
}

func pushOwner(stack []netip.Prefix, p netip.Prefix) []netip.Prefix {
	for len(stack) > 0 && !stack[len(stack)-1].Contains(p.Addr()) {
		stack = stack[:len(stack)-1]
	}
	return append(stack, p)
}

// coverWalk walks owners (sorted, nested or disjoint, all inside root), calls
// own for each that has addresses of its own (not covered by the owners
// inside it) and reports whether root has addresses of its own.
func coverWalk(owners []netip.Prefix, root netip.Prefix, own func(netip.Prefix)) bool {
	var walk func(i int, parent netip.Prefix) (int, bool)
	walk = func(i int, parent netip.Prefix) (int, bool) {
		expected := parent.Addr()
		gap := false
		for i < len(owners) && parent.Contains(owners[i].Addr()) && owners[i].Bits() >= parent.Bits() {
			child := owners[i]
			if child == parent { // the root itself among the owners
				i++
				continue
			}
			if child.Addr() != expected {
				gap = true
			}
			expected = netipx.PrefixLastIP(child).Next()
			var childGap bool
			i, childGap = walk(i+1, child)
			if childGap {
				own(child)
			}
		}
		if expected != netipx.PrefixLastIP(parent).Next() {
			gap = true
		}
		return i, gap
	}
	start := 0
	rootIsOwner := len(owners) > 0 && owners[0] == root
	if rootIsOwner {
		start = 1
	}
	_, gap := walk(start, root)
	if gap && rootIsOwner {
		own(root)
		return false // the root's own addresses are its decision
	}
	return gap
}

// residue returns the CIDRs of b outside every owner in inside.
func residue(b Decision, inside []netip.Prefix) []Decision {
	if len(inside) == 0 {
		return []Decision{b}
	}
	var sb netipx.IPSetBuilder
	sb.AddPrefix(b.Prefix)
	for _, q := range inside {
		sb.RemovePrefix(q)
	}
	set, _ := sb.IPSet() // only fails on invalid prefixes
	var out []Decision
	for _, p := range set.Prefixes() {
		out = append(out, Decision{Prefix: p, Rule: b.Rule})
	}
	return out
}

// keepDecisionSteps is how many changes of each ruleset's decision set stay
// in memory as bases of CrowdSec delta pulls (each holds only its changes).
const keepDecisionSteps = 256

// decStep is the change of a ruleset's decision set that led to version.
type decStep struct {
	version  int64
	add, del []Decision
}

// decHistory is what a hub remembers of one ruleset's decision sets.
type decHistory struct {
	latest *DecisionSet
	// first is the oldest version steps lead from.
	first int64
	steps []decStep
}

// decisionHistories is the hub's per-ruleset decision history.
type decisionHistories struct {
	mu sync.Mutex
	m  map[string]*decHistory
	// wanted names the rulesets a CrowdSec bouncer asked for: the hub then
	// computes the decisions of each of their renders as it installs them,
	// so that its history (and the stored steps) miss no version a bouncer
	// may hold.
	wanted map[string]bool
	// kick wakes the decision worker.
	kick chan struct{}
}

// advance brings the decision history of name up to its latest render and
// returns the current set (nil when there is no render). A new step is stored
// for other processes; a failure to store it is logged (this process still
// answers from memory).
func (h *Hub) advance(ctx context.Context, name string) *DecisionSet {
	snap := h.Latest(name)
	if snap == nil {
		return nil
	}
	cur := snap.Decisions() // outside the lock: it may take a while once
	h.decs.mu.Lock()
	if h.decs.m == nil {
		h.decs.m = map[string]*decHistory{}
	}
	hist := h.decs.m[name]
	var step *decStep
	var base int64
	switch {
	case hist == nil:
		h.decs.m[name] = &decHistory{latest: cur, first: cur.Version}
	case hist.latest.Version < cur.Version:
		a, d := diffDecisions(hist.latest.List, cur.List)
		base = hist.latest.Version
		hist.steps = append(hist.steps, decStep{version: cur.Version, add: a, del: d})
		step = &decStep{version: cur.Version, add: a, del: d}
		if n := len(hist.steps); n > keepDecisionSteps {
			hist.first = hist.steps[n-keepDecisionSteps-1].version
			hist.steps = slices.Clone(hist.steps[n-keepDecisionSteps:])
		}
		hist.latest = cur
	case hist.latest.Version > cur.Version:
		cur = hist.latest
	}
	h.decs.mu.Unlock()
	var saves []store.CrowdSecStep
	if step != nil {
		saves = append(saves, store.CrowdSecStep{Ruleset: name, Base: base, Version: step.version,
			Added: encodeDecisions(step.add), Deleted: encodeDecisions(step.del)})
	}
	if hist == nil || step != nil {
		// The version's mark: another process that finds no step from it
		// yet waits for this one to store its next step.
		saves = append(saves, store.CrowdSecStep{Ruleset: name, Base: cur.Version, Version: cur.Version, Added: []byte{}, Deleted: []byte{}})
	}
	for _, st := range saves {
		if err := h.store.SaveCrowdSecStep(ctx, st); err != nil && ctx.Err() == nil {
			h.log.WarnContext(ctx, "Could not store a CrowdSec decision step.", "ruleset", name, "error", err)
		}
	}
	return cur
}

// ErrDecisionsPending says a bouncer's cursor names a version another process
// computed moments ago and has not yet linked to a newer one: the caller
// should answer that nothing changed and let the bouncer ask again.
var ErrDecisionsPending = errors.New("render: the decisions of that version are not linked yet")

// pendingFor is how long a marked version without a step from it is waited
// for before a bouncer on it gets every decision again.
const pendingFor = 30 * time.Second

// Decisions returns the decisions of the latest render of name, or nil when
// there is none.
func (h *Hub) Decisions(ctx context.Context, name string) *DecisionSet {
	return h.advance(ctx, name)
}

// DecisionsSince returns the decisions of the latest render of name (nil when
// there is none) and what changed since version base (0: nothing sent yet):
// add holds the decisions not in base's set, del those no longer in it. A
// base this process does not hold in memory (computed by another process or
// before a restart) is looked up in the stored steps. ok is false when base
// cannot be reached either way: the caller must then treat every current
// decision as new.
func (h *Hub) DecisionsSince(ctx context.Context, name string, base int64) (cur *DecisionSet, add, del []Decision, ok bool, err error) {
	h.decs.mu.Lock()
	if h.decs.wanted == nil {
		h.decs.wanted = map[string]bool{}
	}
	h.decs.wanted[name] = true
	h.decs.mu.Unlock()
	cur = h.advance(ctx, name)
	if cur == nil {
		return nil, nil, nil, base == 0, nil
	}
	switch {
	case base == 0:
		return cur, cur.List, nil, true, nil
	case base == cur.Version:
		return cur, nil, nil, true, nil
	case base > cur.Version:
		return cur, nil, nil, false, nil
	}
	net := map[Decision]int{}
	h.decs.mu.Lock()
	hist := h.decs.m[name]
	inMemory := hist != nil && hist.latest.Version >= cur.Version && base >= hist.first
	i := 0
	if inMemory && base != hist.first {
		i = slices.IndexFunc(hist.steps, func(s decStep) bool { return s.version == base })
		inMemory = i >= 0
		i++
	}
	if inMemory {
		for _, s := range hist.steps[i:] {
			if s.version > cur.Version {
				break
			}
			for _, x := range s.add {
				net[x]++
			}
			for _, x := range s.del {
				net[x]--
			}
		}
	}
	h.decs.mu.Unlock()
	if !inMemory {
		found, err := h.storedSteps(ctx, name, base, cur.Version, net)
		if err != nil || !found {
			return cur, nil, nil, false, err
		}
	}
	for x, n := range net {
		switch {
		case n > 0:
			add = append(add, x)
		case n < 0:
			del = append(del, x)
		}
	}
	byPrefix := func(a, b Decision) int { return comparePrefix(a.Prefix, b.Prefix) }
	slices.SortFunc(add, byPrefix)
	slices.SortFunc(del, byPrefix)
	return cur, add, del, true, nil
}

// storedSteps composes into net a chain of stored steps from version from to
// version to; false when there is none.
func (h *Hub) storedSteps(ctx context.Context, name string, from, to int64, net map[Decision]int) (bool, error) {
	steps, err := h.store.CrowdSecSteps(ctx, name, from, to)
	if err != nil {
		return false, fmt.Errorf("render: decision steps of %s: %w", name, err)
	}
	byBase := map[int64][]int{}
	var marked time.Time
	for i, s := range steps {
		if s.Base == s.Version {
			if s.Base == from {
				marked = s.CreatedAt
			}
			continue
		}
		byBase[s.Base] = append(byBase[s.Base], i)
	}
	// A depth-first search for a path from -> to, longest jumps first.
	dead := map[int64]bool{}
	var path []int
	var walk func(v int64) bool
	walk = func(v int64) bool {
		if v == to {
			return true
		}
		if dead[v] {
			return false
		}
		next := byBase[v]
		for k := len(next) - 1; k >= 0; k-- {
			path = append(path, next[k])
			if walk(steps[next[k]].Version) {
				return true
			}
			path = path[:len(path)-1]
		}
		dead[v] = true
		return false
	}
	if !walk(from) {
		if !marked.IsZero() && h.now().Sub(marked) < pendingFor {
			return false, ErrDecisionsPending
		}
		return false, nil
	}
	for _, i := range path {
		add, err := decodeDecisions(steps[i].Added)
		if err != nil {
			return false, fmt.Errorf("render: decision steps of %s: %w", name, err)
		}
		del, err := decodeDecisions(steps[i].Deleted)
		if err != nil {
			return false, fmt.Errorf("render: decision steps of %s: %w", name, err)
		}
		for _, x := range add {
			net[x]++
		}
		for _, x := range del {
			net[x]--
		}
	}
	return true, nil
}

// runDecisions keeps the decision histories of the wanted rulesets current:
// after every install it computes the new renders' decisions, so no version
// a bouncer may hold is missing from the history (renders that follow each
// other faster than a computation are skipped: no bouncer was served them).
func (h *Hub) runDecisions(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.decs.kick:
		}
		h.decs.mu.Lock()
		names := make([]string, 0, len(h.decs.wanted))
		for name := range h.decs.wanted {
			names = append(names, name)
		}
		h.decs.mu.Unlock()
		start := time.Now()
		for _, name := range names {
			h.advance(ctx, name)
		}
		// A full computation is O(decisions) (about half a second at a
		// million): leave the cores to renders and answers between two,
		// skipping the renders that come meanwhile (a pull computes the
		// latest one itself when it finds it missing).
		t := time.NewTimer(max(time.Second, 2*time.Since(start)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// kickDecisions wakes runDecisions without blocking.
func (h *Hub) kickDecisions() {
	select {
	case h.decs.kick <- struct{}{}:
	default:
	}
}

// encodeDecisions encodes decisions as, per decision, the address length (4
// or 16), the prefix length, the address and the rule id (2 bytes).
func encodeDecisions(ds []Decision) []byte {
	out := make([]byte, 0, len(ds)*8)
	for _, d := range ds {
		a := d.Prefix.Addr().AsSlice()
		out = append(out, byte(len(a)), byte(d.Prefix.Bits()))
		out = append(out, a...)
		out = binary.BigEndian.AppendUint16(out, uint16(d.Rule))
	}
	return out
}

// decodeDecisions reverses encodeDecisions.
func decodeDecisions(b []byte) ([]Decision, error) {
	var out []Decision
	for len(b) > 0 {
		if len(b) < 2 || (b[0] != 4 && b[0] != 16) || len(b) < 4+int(b[0]) {
			return nil, errors.New("decode decisions: truncated or malformed")
		}
		n := int(b[0])
		a, _ := netip.AddrFromSlice(b[2 : 2+n])
		p := netip.PrefixFrom(a, int(b[1]))
		if !p.IsValid() {
			return nil, errors.New("decode decisions: bad prefix length")
		}
		out = append(out, Decision{Prefix: p, Rule: int(binary.BigEndian.Uint16(b[2+n:]))})
		b = b[4+n:]
	}
	return out, nil
}

// diffDecisions returns what is in to but not in from and the reverse; both
// lists are sorted by prefix, and a prefix whose rule changed is in both.
func diffDecisions(from, to []Decision) (add, del []Decision) {
	i, j := 0, 0
	for i < len(from) || j < len(to) {
		var c int
		switch {
		case i == len(from):
			c = 1
		case j == len(to):
			c = -1
		default:
			c = comparePrefix(from[i].Prefix, to[j].Prefix)
		}
		switch {
		case c < 0:
			del = append(del, from[i])
			i++
		case c > 0:
			add = append(add, to[j])
			j++
		default:
			if from[i].Rule != to[j].Rule {
				del, add = append(del, from[i]), append(add, to[j])
			}
			i++
			j++
		}
	}
	return add, del
}
