package render

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
)

// keepVersions is how many recent versions per ruleset stay in memory as
// delta bases (each holds only its delta from the one before).
const keepVersions = 8

// Options tune a Hub.
type Options struct {
	// Debounce is how long the hub waits after a change for more before it
	// recomputes (default 100 ms: an incremental render costs milliseconds, and
	// every millisecond here is on the path from a tag to the kernel).
	Debounce time.Duration
	// Source is where the facts come from (required: the in-memory index's
	// RenderSource).
	Source Source
	// MaxElements, when above 0, is the size limit of a render: a stored
	// render serving more elements (CIDRs over all rules) records a
	// render.size event (MUNINN_RENDER_ALERT_ELEMENTS).
	MaxElements int
}

// Hub owns the render cache. Run is its single goroutine: it listens for
// changes and recomputes debounced. The read methods are safe for
// concurrent use.
//
// Each process computes its renders from its own Source. A change of the
// facts recompiles only the spans the source reports as changed and yields
// the delta directly; a change of a ruleset, a list, the guard or (for
// rulesets with geo conditions) the geo data compiles in full. Versions agree
// across processes because they are assigned by content: the store keeps,
// per ruleset, the latest (version, hash) and SaveRender returns the stored
// version when the hash is the latest one, else stores version+1. A process
// whose facts lag may briefly store an older content as a newer version; the
// others then store the current content again as the next one, and all
// converge on one version once their facts agree. The stored row holds only
// the version, hash and time (a million-prefix body would cost more to write
// than to compute); every process serves the bytes it computed.
type Hub struct {
	store    *store.Store
	src      Source
	log      *slog.Logger
	now      func() time.Time
	debounce time.Duration
	// maxElements is Options.MaxElements.
	maxElements int
	defaults    []guard.Entry

	// recompute serialises recomputations (Run's and explicit Recompute
	// calls) and guards states.
	recompute sync.Mutex
	states    map[string]*rulesetState

	// guardCache is the guard built for the operator's entries guardKey
	// (building it from the thousands of built-in entries costs milliseconds).
	guardMu    sync.Mutex
	guardCache *guard.Guard
	guardKey   string

	// ready is closed after the first recompute: before that an absent
	// render says nothing about whether the ruleset exists.
	ready     chan struct{}
	readyOnce sync.Once

	mu     sync.RWMutex
	latest map[string]*Snapshot
	// behind names the rulesets of which another process stored a newer
	// version than the one served: the next publish asks the store even if
	// the content did not change here.
	behind  map[string]bool
	history map[string][]version // oldest first, latest included
	changed chan struct{}        // closed and replaced on every update
	// took is how long the last render of each ruleset took (RenderStats).
	took map[string]time.Duration
	// deltas caches encoded deltas to the latest render by ruleset and base
	// version: every bouncer on the same base gets the same bytes.
	deltas map[string]map[int64][]byte

	// denies caches the deny list of each latest render.
	denies denyCache
	// decs keeps the CrowdSec decision sets of recent renders as delta bases.
	decs decisionHistories
	// seqs maps the fact sequences seen to generations (Expiries).
	seqs seqGens

	// drain ends parked long polls on shutdown (drain.go).
	drain drainer
	// goodSession is how long a listening session must hold to count as a
	// good connection that resets Run's backoff; zero means healthySession.
	goodSession time.Duration
}

// healthySession: a listening session that held this long was a good
// connection, so the next loss reconnects after the shortest backoff again.
const healthySession = 10 * time.Second

// rulesetState is the compiled state of one ruleset and what it was built from.
type rulesetState struct {
	// key identifies the inputs besides the facts: text, lists, guard, geo.
	key string
	st  *state
	// pending is the change since the last published render (nil when it
	// cannot be expressed as a delta).
	pending delta
	// seq is the change-feed sequence of the facts st was computed from.
	seq int64
	// facts is the snapshot st was computed from (its stored prefixes own
	// the CrowdSec decisions of the render).
	facts FactSnapshot
}

// version is one published render kept as a delta base.
type version struct {
	header *Render // without sets
	// delta leads from the previous kept version to this one; nil when only
	// a full render can (the first, or one whose rules changed).
	delta delta
}

// NewHub returns a hub over st rendering from opts.Source (it panics
// without one); call Run to start it.
func NewHub(st *store.Store, log *slog.Logger, now func() time.Time, opts Options) *Hub {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Source == nil {
		panic("render: NewHub needs a Source")
	}
	return &Hub{store: st, src: opts.Source, log: log, now: now, debounce: opts.Debounce, maxElements: opts.MaxElements, defaults: guard.Default(),
		states: map[string]*rulesetState{}, behind: map[string]bool{}, latest: map[string]*Snapshot{}, history: map[string][]version{},
		took: map[string]time.Duration{}, changed: make(chan struct{}), ready: make(chan struct{}), deltas: map[string]map[int64][]byte{},
		decs: decisionHistories{kick: make(chan struct{}, 1)}}
}

// WaitReady blocks until the hub has loaded the stored renders (or ctx ends,
// returning false).
func (h *Hub) WaitReady(ctx context.Context) bool {
	select {
	case <-h.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// Guard returns the effective never-block guard: the built-in entries plus the
// operator's.
func (h *Hub) Guard(ctx context.Context) (*guard.Guard, error) {
	g, _, err := h.guard(ctx)
	return g, err
}

// guard returns the guard and a key that changes with the operator's entries.
func (h *Hub) guard(ctx context.Context) (*guard.Guard, string, error) {
	ops, err := h.store.GuardEntries(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("render: guard: %w", err)
	}
	var key strings.Builder
	for _, e := range ops {
		fmt.Fprintf(&key, "%s %q\n", e.Prefix, e.Reason)
	}
	h.guardMu.Lock()
	defer h.guardMu.Unlock()
	if h.guardCache != nil && h.guardKey == key.String() {
		return h.guardCache, h.guardKey, nil
	}
	entries := append([]guard.Entry(nil), h.defaults...)
	for _, e := range ops {
		entries = append(entries, guard.Entry{Prefix: e.Prefix, Reason: "operator: " + e.Reason})
	}
	h.guardCache, h.guardKey = guard.New(entries), key.String()
	return h.guardCache, h.guardKey, nil
}

// DefaultGuard returns the built-in never-block entries.
func (h *Hub) DefaultGuard() []guard.Entry { return h.defaults }

// ListSelectors loads the named lists as parsed selectors.
func ListSelectors(ctx context.Context, st *store.Store) (map[string][]policy.Cond, error) {
	ls, err := st.Lists(ctx)
	if err != nil {
		return nil, fmt.Errorf("render: lists: %w", err)
	}
	return parseLists(ls)
}

// parseLists parses the selectors of stored lists.
func parseLists(ls []store.List) (map[string][]policy.Cond, error) {
	out := make(map[string][]policy.Cond, len(ls))
	for _, l := range ls {
		conds, err := policy.ParseSelector(l.Selector)
		if err != nil {
			return nil, fmt.Errorf("render: list %s: %w", l.Name, err)
		}
		out[l.Name] = conds
	}
	return out, nil
}

// NeedsGeo reports whether conditions (following named lists) use geo facts:
// country, continent, asn or org.
func NeedsGeo(conds []policy.Cond, lists map[string][]policy.Cond) bool {
	seen := map[string]bool{}
	var walk func([]policy.Cond) bool
	walk = func(cs []policy.Cond) bool {
		for _, c := range cs {
			switch c.Kind {
			case policy.KindCountry, policy.KindContinent, policy.KindASN, policy.KindOrg:
				return true
			case policy.KindList:
				for _, name := range c.Values {
					if !seen[name] {
						seen[name] = true
						if walk(lists[name]) {
							return true
						}
					}
				}
			}
		}
		return false
	}
	return walk(conds)
}

// Recompute renders every ruleset now, stores the versions of the renders
// whose content changed and updates the cache. A ruleset that fails to
// compile keeps its previous render; the error is logged and returned with
// the others.
func (h *Hub) Recompute(ctx context.Context) error {
	h.recompute.Lock()
	defer h.recompute.Unlock()
	start := time.Now()
	defer func() { h.log.DebugContext(ctx, "Recomputed the renders.", "duration", time.Since(start).String()) }()
	rss, err := h.store.Rulesets(ctx)
	if err != nil {
		return fmt.Errorf("render: recompute: %w", err)
	}
	ls, err := h.store.Lists(ctx)
	if err != nil {
		return fmt.Errorf("render: recompute: %w", err)
	}
	lists, err := parseLists(ls)
	if err != nil {
		return err
	}
	var listsKey strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&listsKey, "%s %q\n", l.Name, l.Selector)
	}
	g, guardKey, err := h.guard(ctx)
	if err != nil {
		return err
	}
	parsed := make(map[string]*policy.Ruleset, len(rss))
	geo := map[string]bool{}
	anyGeo := false
	for _, stored := range rss {
		rs, err := policy.Parse(stored.Text)
		if err != nil {
			h.log.ErrorContext(ctx, "A stored ruleset does not parse.", "ruleset", stored.Name, "error", err)
			continue
		}
		parsed[stored.Name] = rs
		for _, r := range rs.Rules {
			geo[stored.Name] = geo[stored.Name] || NeedsGeo(r.Conds, lists)
		}
		anyGeo = anyGeo || geo[stored.Name]
	}
	snap, err := h.src.Snapshot(ctx, anyGeo)
	if err != nil {
		return fmt.Errorf("render: recompute: %w", err)
	}
	h.seqs.note(snap)
	now := h.now()
	var errs []error
	names := map[string]bool{}
	for _, stored := range rss {
		names[stored.Name] = true
		rs, ok := parsed[stored.Name]
		if !ok {
			continue
		}
		key := fmt.Sprintf("%s\x00%s\x00%s\x00%t", stored.Text, listsKey.String(), guardKey, geo[stored.Name])
		began := time.Now()
		if err := h.renderOne(ctx, stored.Name, rs, key, lists, g, geo[stored.Name], snap, now); err != nil {
			h.log.ErrorContext(ctx, "Could not render a ruleset.", "ruleset", stored.Name, "error", err)
			errs = append(errs, err)
			continue
		}
		h.mu.Lock()
		h.took[stored.Name] = time.Since(began)
		h.mu.Unlock()
	}
	for name := range h.states {
		if !names[name] {
			delete(h.states, name)
		}
	}
	h.mu.Lock()
	gone := false
	for name := range h.latest {
		if !names[name] {
			delete(h.latest, name)
			delete(h.history, name)
			delete(h.deltas, name)
			delete(h.took, name)
			gone = true
		}
	}
	if gone {
		h.broadcastLocked()
	}
	h.mu.Unlock()
	return errors.Join(errs...)
}

// maxChangedSpans is how many spans that change a set a render splices
// before it compiles in full instead: each splice copies the set (a few
// milliseconds at 500,000 elements), so 50,000 changed spans took minutes
// where a full compile takes about a second. Spans that change nothing
// (unrelated ingest) cost only their own compile and are not counted.
const maxChangedSpans = 128

// renderOne brings the state of one ruleset up to snap (incrementally when
// only facts changed and the source can say where) and publishes the render
// if its content changed.
func (h *Hub) renderOne(ctx context.Context, name string, rs *policy.Ruleset, key string, lists map[string][]policy.Cond, g *guard.Guard, withGeo bool, snap FactSnapshot, now time.Time) error {
	prev := h.states[name]
	if prev != nil && prev.key == key {
		spans, geoChanged, ok := snap.ChangedSince(prev.st.gen)
		incremental := ok && !(geoChanged && withGeo)
		h.log.DebugContext(ctx, "Rendering a ruleset.", "ruleset", name, "incremental", incremental,
			"spans", len(spans), "from_gen", prev.st.gen, "to_gen", snap.Gen())
		if incremental {
			d, done, err := prev.st.updateUpTo(snap, spans, maxChangedSpans)
			if err != nil {
				delete(h.states, name) // the state is half updated: compile in full next time
				return err
			}
			prev.pending = compose(prev.pending, d)
			if done {
				prev.seq, prev.facts = snap.Seq(), snap
				return h.publish(ctx, name, prev, now)
			}
			// Too many spans change a set: compile in full; the delta
			// continues from the partly updated state.
			h.log.DebugContext(ctx, "Compiling a ruleset in full: many spans changed.", "ruleset", name, "spans", len(spans))
		}
	}
	st, err := newState(rs, lists, g, withGeo, snap.Facts(withGeo), snap.Gen())
	if err != nil {
		return err
	}
	next := &rulesetState{key: key, st: st, seq: snap.Seq(), facts: snap}
	if prev != nil && prev.pending != nil && sameRules(prev.st.rs, rs) {
		next.pending = compose(prev.pending, diffStates(prev.st, st))
	}
	h.states[name] = next
	return h.publish(ctx, name, next, now)
}

// publish stores and installs the render of rst when its content differs
// from the one served.
func (h *Hub) publish(ctx context.Context, name string, rst *rulesetState, now time.Time) error {
	r, err := rst.st.render()
	if err != nil {
		return err
	}
	h.mu.Lock()
	cur, behind := h.latest[name], h.behind[name]
	delete(h.behind, name)
	h.mu.Unlock()
	if cur != nil && cur.Render.Hash == r.Hash && !behind {
		rst.pending = delta{}
		return nil
	}
	var prev *Render
	if cur != nil {
		prev = cur.Render
	}
	saved, err := h.store.SaveRender(ctx, name, r.Hash, rst.seq, now, func(version int64, at time.Time) ([]byte, error) {
		b, err := json.Marshal(struct {
			Ruleset     string    `json:"ruleset"`
			Version     int64     `json:"version"`
			Hash        string    `json:"hash"`
			GeneratedAt time.Time `json:"generated_at"`
		}{name, version, r.Hash, at})
		if err != nil {
			return nil, fmt.Errorf("render: encode %s: %w", name, err)
		}
		return b, nil
	}, renderEvents(name, prev, r, h.maxElements, now)...)
	if err != nil {
		return fmt.Errorf("render: %s: %w", name, err)
	}
	if saved.Hash != r.Hash {
		// Another process stored a render of newer facts than this
		// process's index has: serve nothing older; the index catching up
		// announces a change and the next recompute publishes (the pending
		// delta keeps accumulating until then).
		h.mu.Lock()
		h.behind[name] = true
		h.mu.Unlock()
		return nil
	}
	r.Version, r.GeneratedAt = saved.Version, saved.GeneratedAt
	d := rst.pending
	switch {
	case cur == nil:
		d = nil
	case cur.Render.Hash == r.Hash:
		d = delta{} // the same content under the newer version
	}
	snap := newSnapshot(r)
	snap.dec.facts = rst.facts
	snap.dec.rs, snap.dec.withGeo = rst.st.rs, rst.st.withGeo
	h.install(snap, d)
	rst.pending = delta{}
	return nil
}

// sameRules reports whether two rulesets render to the same rule list and
// settings, so that a delta between their renders is meaningful.
func sameRules(a, b *policy.Ruleset) bool {
	return policy.Format(a) == policy.Format(b)
}

// diffStates returns the delta from a's served sets to b's.
func diffStates(a, b *state) delta {
	d := make(delta, len(a.rules))
	for i := range a.rules {
		for fam := range 2 {
			x, y := a.rules[i][fam].served, b.rules[i][fam].served
			var sd setDelta
			k, l := 0, 0
			for k < len(x) || l < len(y) {
				switch c := cmpPrefix(x, y, k, l); {
				case c == 0:
					k++
					l++
				case c < 0:
					sd.del = append(sd.del, x[k])
					k++
				default:
					sd.add = append(sd.add, y[l])
					l++
				}
			}
			d[i][fam] = sd
		}
	}
	return d
}

// compose returns the delta of applying a then b. A nil delta stands for
// "not expressible", which a composition keeps; an empty non-nil delta is
// no change.
func compose(a, b delta) delta {
	if a == nil || b == nil {
		return nil
	}
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make(delta, len(a))
	for i := range a {
		for fam := range 2 {
			net := map[netip.Prefix]int8{}
			for _, sd := range []setDelta{a[i][fam], b[i][fam]} {
				for _, p := range sd.add {
					net[p]++
				}
				for _, p := range sd.del {
					net[p]--
				}
			}
			var sd setDelta
			for p, n := range net {
				switch {
				case n > 0:
					sd.add = append(sd.add, p)
				case n < 0:
					sd.del = append(sd.del, p)
				}
			}
			slices.SortFunc(sd.add, comparePrefix)
			slices.SortFunc(sd.del, comparePrefix)
			out[i][fam] = sd
		}
	}
	return out
}

// install makes s the latest render of its ruleset; d leads from the
// previous latest to it (nil when only a full render can).
func (h *Hub) install(s *Snapshot, d delta) {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := s.Render.Ruleset
	if cur := h.latest[name]; cur != nil && cur.Render.Version >= s.Render.Version {
		return
	}
	h.latest[name] = s
	delete(h.deltas, name)
	head := *s.Render
	head.Rules, head.GuardRemoved = nil, nil
	hist := append(h.history[name], version{header: &head, delta: d})
	if len(hist) > keepVersions {
		hist = append([]version(nil), hist[len(hist)-keepVersions:]...)
	}
	h.history[name] = hist
	h.broadcastLocked()
	h.kickDecisions()
}

func (h *Hub) broadcastLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// RenderStat is what the hub serves of one ruleset, for metrics.
type RenderStat struct {
	Ruleset string
	// Version is the version served.
	Version int64
	// Took is how long this process's last render of the ruleset took
	// (compile, incremental or full, and store); 0 before the first.
	Took time.Duration
}

// RenderStats returns, per ruleset served, its version and how long its last
// render took, in ruleset order.
func (h *Hub) RenderStats() []RenderStat {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]RenderStat, 0, len(h.latest))
	for name, snap := range h.latest {
		out = append(out, RenderStat{Ruleset: name, Version: snap.Render.Version, Took: h.took[name]})
	}
	slices.SortFunc(out, func(a, b RenderStat) int { return strings.Compare(a.Ruleset, b.Ruleset) })
	return out
}

// Latest returns the cached render of a ruleset, or nil when there is none yet.
func (h *Hub) Latest(name string) *Snapshot {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.latest[name]
}

// Changed returns a channel closed at the next update of any render.
func (h *Hub) Changed() <-chan struct{} {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.changed
}

// Base returns the header (version, hash, time; no sets) of the render of
// name at version, or nil when it is no longer kept.
func (h *Hub) Base(name string, version int64) *Render {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, v := range h.history[name] {
		if v.header.Version == version {
			return v.header
		}
	}
	return nil
}

// DeltaSince returns the encoded delta from version base to the latest
// render of name, or false when base is no longer in memory or more than set
// contents changed (then only the full render will do).
func (h *Hub) DeltaSince(name string, base int64) ([]byte, bool, error) {
	h.mu.RLock()
	cur := h.latest[name]
	b, cached := h.deltas[name][base]
	hist := h.history[name]
	h.mu.RUnlock()
	if cur == nil || base >= cur.Render.Version {
		return nil, false, nil
	}
	if cached {
		return b, b != nil, nil
	}
	i := slices.IndexFunc(hist, func(v version) bool { return v.header.Version == base })
	if i < 0 {
		return nil, false, nil
	}
	d := delta{}
	for _, v := range hist[i+1:] {
		d = compose(d, v.delta)
	}
	if d != nil {
		var err error
		if b, err = json.Marshal(deltaRender(cur.Render, base, d)); err != nil {
			return nil, false, fmt.Errorf("render: encode delta of %s: %w", name, err)
		}
	}
	h.mu.Lock()
	// Cache only if the latest render is still the one the delta leads to.
	if h.latest[name] == cur {
		if h.deltas[name] == nil {
			h.deltas[name] = map[int64][]byte{}
		}
		h.deltas[name][base] = b // nil records "does not fit"
	}
	h.mu.Unlock()
	return b, d != nil, nil
}

// deltaRender is cur as a delta from version base.
func deltaRender(cur *Render, base int64, d delta) *Render {
	out := *cur
	out.Delta, out.BaseVersion = true, base
	out.Rules = make([]Rule, len(cur.Rules))
	for i, r := range cur.Rules {
		out.Rules[i] = Rule{ID: r.ID, Action: r.Action, Rate: r.Rate, Text: r.Text}
		if len(d) == 0 {
			continue
		}
		out.Rules[i].AddV4, out.Rules[i].DelV4 = strs(d[i][0].add), strs(d[i][0].del)
		out.Rules[i].AddV6, out.Rules[i].DelV6 = strs(d[i][1].add), strs(d[i][1].del)
	}
	return &out
}

// Wait returns the render of name once its version is above since, or nil
// when ctx ends or the hub drains (Drain) first.
func (h *Hub) Wait(ctx context.Context, name string, since int64) *Snapshot {
	for {
		h.mu.RLock()
		s, ch := h.latest[name], h.changed
		h.mu.RUnlock()
		if s != nil && s.Render.Version > since {
			return s
		}
		if !h.Await(ctx, ch) {
			return nil
		}
	}
}

// Run recomputes, then listens for changes until ctx ends: a change to the
// facts (announced by the source or the store), rulesets, lists or guard, or
// a newer render stored by another process, recomputes after the debounce. A
// lost listening connection is reopened with backoff, followed by a
// recompute. The hub is ready after its first recompute (or its first
// failure to listen).
func (h *Hub) Run(ctx context.Context) error {
	// The CrowdSec decisions of new renders are computed off the render
	// path, by one goroutine that ends with Run.
	decCtx, stopDecisions := context.WithCancel(ctx)
	decDone := make(chan struct{})
	go func() { defer close(decDone); h.runDecisions(decCtx) }()
	defer func() { stopDecisions(); <-decDone }()
	backoff := time.Second
	good := h.goodSession
	if good <= 0 {
		good = healthySession
	}
	for ctx.Err() == nil {
		start := time.Now()
		err := h.listen(ctx)
		h.readyOnce.Do(func() { close(h.ready) })
		if ctx.Err() != nil {
			break
		}
		// After a good connection the backoff starts over: a blip hours
		// after the last one must not leave renders 30 s stale.
		if time.Since(start) >= good {
			backoff = time.Second
		}
		h.log.WarnContext(ctx, "Lost the change listener; reconnecting.", "error", err, "backoff", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return nil
}

// listen runs one listening session: LISTEN first, then recompute, so no
// change between the two is missed.
func (h *Hub) listen(ctx context.Context) error {
	l, err := h.store.Listen(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	notes, stop := l.Notes(ctx)
	defer stop()

	// Fact changes, expiries included, come from the source (the index
	// announces an assertion's expiry when it happens); the store's
	// notifications bring rulesets, lists, the guard and other processes'
	// renders.
	recompute := func() {
		if err := h.Recompute(ctx); err != nil && ctx.Err() == nil {
			h.log.ErrorContext(ctx, "Recompute failed.", "error", err)
		}
		h.readyOnce.Do(func() { close(h.ready) })
	}
	srcChanged := h.src.Changed()
	recompute()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return ctx.Err()
		case n := <-notes:
			if n.Err != nil {
				return n.Err
			}
			if strings.HasPrefix(n.Payload, store.ChangePayloadPrefix) {
				continue // a fact change: the source announces it once applied
			}
			if rest, ok := strings.CutPrefix(n.Payload, store.RenderPrefix); ok {
				// A render this process stored (or has already) needs no reload.
				name, v, _ := strings.Cut(rest, ":")
				if version, err := strconv.ParseInt(v, 10, 64); err == nil {
					if cur := h.Latest(name); cur != nil && cur.Render.Version >= version {
						continue
					}
				}
				// Another process stored a newer version: recompute, and
				// take its version if the content is ours.
				h.mu.Lock()
				h.behind[name] = true
				h.mu.Unlock()
			}
			if fire == nil {
				timer = time.NewTimer(h.debounce)
				fire = timer.C
			}
		case <-srcChanged:
			srcChanged = h.src.Changed()
			if fire == nil {
				timer = time.NewTimer(h.debounce)
				fire = timer.C
			}
		case <-fire:
			fire, timer = nil, nil
			recompute()
		}
	}
}

// renderEvents are the events a new render r of ruleset name causes after
// prev (nil: none known): a guard.removed event per prefix the guard newly
// cut out of a block rule, and a render.size event when r serves more than
// maxElements elements and prev did not.
func renderEvents(name string, prev, r *Render, maxElements int, now time.Time) []store.Event {
	var evs []store.Event
	seen := map[guard.Removed]bool{}
	if prev != nil {
		for _, g := range prev.GuardRemoved {
			seen[g] = true
		}
	}
	for _, g := range r.GuardRemoved {
		if seen[g] {
			continue
		}
		evs = append(evs, store.Event{At: now, Kind: store.EventGuardRemoved, SubjectType: "prefix", Subject: g.Prefix.String(),
			Details: map[string]any{"ruleset": name, "rule": g.Rule, "reason": g.Reason}})
	}
	if maxElements > 0 {
		n := renderElements(r)
		if n > maxElements && (prev == nil || renderElements(prev) <= maxElements) {
			evs = append(evs, store.Event{At: now, Kind: store.EventRenderSize, SubjectType: "ruleset", Subject: name,
				Details: map[string]any{"elements": n, "limit": maxElements}})
		}
	}
	return evs
}

// renderElements counts the CIDRs a full render serves over all its rules.
func renderElements(r *Render) int {
	n := 0
	for _, rl := range r.Rules {
		n += len(rl.V4) + len(rl.V6)
	}
	return n
}
