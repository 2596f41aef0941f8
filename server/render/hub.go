package render

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
)

// keepVersions is how many recent renders per ruleset stay in memory as delta bases.
const keepVersions = 4

// Options tune a Hub.
type Options struct {
	// Debounce is how long the hub waits after a change for more before it
	// recomputes (default 250 ms).
	Debounce time.Duration
}

// Hub owns the render cache. Run is its single goroutine: it listens for
// changes, recomputes debounced and picks up renders other processes stored.
// The read methods are safe for concurrent use.
type Hub struct {
	store    *store.Store
	log      *slog.Logger
	now      func() time.Time
	debounce time.Duration
	defaults []guard.Entry

	// recompute serialises recomputations (Run's and explicit Recompute calls).
	recompute sync.Mutex

	// ready is closed once Run has loaded the stored renders: before that an
	// absent render says nothing about whether the ruleset exists.
	ready     chan struct{}
	readyOnce sync.Once

	mu      sync.RWMutex
	latest  map[string]*Snapshot
	history map[string][]*Render // oldest first, latest included
	changed chan struct{}        // closed and replaced on every update
	// deltas caches encoded deltas to the latest render by ruleset and base
	// version: every bouncer on the same base gets the same bytes.
	deltas map[string]map[int64][]byte
}

// NewHub returns a hub over st; call Run to start it.
func NewHub(st *store.Store, log *slog.Logger, now func() time.Time, opts Options) *Hub {
	if opts.Debounce <= 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	return &Hub{store: st, log: log, now: now, debounce: opts.Debounce, defaults: guard.Default(),
		latest: map[string]*Snapshot{}, history: map[string][]*Render{}, changed: make(chan struct{}), ready: make(chan struct{}),
		deltas: map[string]map[int64][]byte{}}
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
	ops, err := h.store.GuardEntries(ctx)
	if err != nil {
		return nil, fmt.Errorf("render: guard: %w", err)
	}
	entries := append([]guard.Entry(nil), h.defaults...)
	for _, e := range ops {
		entries = append(entries, guard.Entry{Prefix: e.Prefix, Reason: "operator: " + e.Reason})
	}
	return guard.New(entries), nil
}

// DefaultGuard returns the built-in never-block entries.
func (h *Hub) DefaultGuard() []guard.Entry { return h.defaults }

// ListSelectors loads the named lists as parsed selectors.
func ListSelectors(ctx context.Context, st *store.Store) (map[string][]policy.Cond, error) {
	ls, err := st.Lists(ctx)
	if err != nil {
		return nil, fmt.Errorf("render: lists: %w", err)
	}
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

// Recompute renders every ruleset now, stores the renders whose content
// changed and updates the cache. A ruleset that fails to compile keeps its
// previous render; the error is logged and returned with the others.
func (h *Hub) Recompute(ctx context.Context) error {
	h.recompute.Lock()
	defer h.recompute.Unlock()
	rss, err := h.store.Rulesets(ctx)
	if err != nil {
		return fmt.Errorf("render: recompute: %w", err)
	}
	lists, err := ListSelectors(ctx, h.store)
	if err != nil {
		return err
	}
	g, err := h.Guard(ctx)
	if err != nil {
		return err
	}
	parsed := make(map[string]*policy.Ruleset, len(rss))
	geo := false
	for _, stored := range rss {
		rs, err := policy.Parse(stored.Text)
		if err != nil {
			h.log.ErrorContext(ctx, "A stored ruleset does not parse.", "ruleset", stored.Name, "error", err)
			continue
		}
		parsed[stored.Name] = rs
		for _, r := range rs.Rules {
			geo = geo || NeedsGeo(r.Conds, lists)
		}
	}
	now := h.now()
	load := h.store.FactsWithoutGeo
	if geo {
		load = h.store.Facts
	}
	facts, err := load(ctx, now)
	if err != nil {
		return fmt.Errorf("render: recompute: %w", err)
	}
	facts.Lists = lists
	var errs []error
	names := map[string]bool{}
	for _, stored := range rss {
		names[stored.Name] = true
		rs, ok := parsed[stored.Name]
		if !ok {
			continue
		}
		if err := h.renderOne(ctx, stored.Name, rs, facts, g, now); err != nil {
			h.log.ErrorContext(ctx, "Could not render a ruleset.", "ruleset", stored.Name, "error", err)
			errs = append(errs, err)
		}
	}
	h.mu.Lock()
	gone := false
	for name := range h.latest {
		if !names[name] {
			delete(h.latest, name)
			delete(h.history, name)
			delete(h.deltas, name)
			gone = true
		}
	}
	if gone {
		h.broadcastLocked()
	}
	h.mu.Unlock()
	return errors.Join(errs...)
}

func (h *Hub) renderOne(ctx context.Context, name string, rs *policy.Ruleset, facts *policy.Facts, g *guard.Guard, now time.Time) error {
	r, err := Build(rs, facts, g)
	if err != nil {
		return err
	}
	h.mu.RLock()
	cur := h.latest[name]
	h.mu.RUnlock()
	if cur != nil && cur.Render.Hash == r.Hash {
		return nil
	}
	var wrote bool
	saved, err := h.store.SaveRender(ctx, name, r.Hash, now, func(version int64, at time.Time) ([]byte, error) {
		r.Version, r.GeneratedAt, wrote = version, at, true
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("render: encode %s: %w", name, err)
		}
		return b, nil
	})
	if err != nil {
		return fmt.Errorf("render: %s: %w", name, err)
	}
	if !wrote {
		// Another process stored this content first; serve its bytes and version.
		return h.adopt(saved)
	}
	snap, err := newSnapshot(r, saved.Body)
	if err != nil {
		return err
	}
	h.install(snap)
	return nil
}

// adopt installs a render read from the database if it is newer than the cached one.
func (h *Hub) adopt(saved store.StoredRender) error {
	h.mu.RLock()
	cur := h.latest[saved.Ruleset]
	h.mu.RUnlock()
	if cur != nil && cur.Render.Version >= saved.Version {
		return nil
	}
	var r Render
	if err := json.Unmarshal(saved.Body, &r); err != nil {
		return fmt.Errorf("render: decode stored %s v%d: %w", saved.Ruleset, saved.Version, err)
	}
	snap, err := newSnapshot(&r, saved.Body)
	if err != nil {
		return err
	}
	h.install(snap)
	return nil
}

func (h *Hub) install(s *Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := s.Render.Ruleset
	if cur := h.latest[name]; cur != nil && cur.Render.Version >= s.Render.Version {
		return
	}
	h.latest[name] = s
	delete(h.deltas, name)
	hist := append(h.history[name], s.Render)
	if len(hist) > keepVersions {
		hist = append([]*Render(nil), hist[len(hist)-keepVersions:]...)
	}
	h.history[name] = hist
	h.broadcastLocked()
}

func (h *Hub) broadcastLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// reload adopts the newest stored render of one ruleset (written by any process).
func (h *Hub) reload(ctx context.Context, name string) error {
	saved, err := h.store.LatestRender(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("render: reload %s: %w", name, err)
	}
	return h.adopt(saved)
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

// Base returns the in-memory render of name at version, or nil when it is
// no longer kept.
func (h *Hub) Base(name string, version int64) *Render {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, r := range h.history[name] {
		if r.Version == version {
			return r
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
	b, ok := h.deltas[name][base]
	h.mu.RUnlock()
	if cur == nil || base >= cur.Render.Version {
		return nil, false, nil
	}
	if ok {
		return b, b != nil, nil
	}
	from := h.Base(name, base)
	if from == nil {
		return nil, false, nil
	}
	d, fits := Delta(from, cur.Render)
	if fits {
		var err error
		if b, err = json.Marshal(d); err != nil {
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
	return b, fits, nil
}

// Wait returns the render of name once its version is above since, or nil
// when ctx ends first.
func (h *Hub) Wait(ctx context.Context, name string, since int64) *Snapshot {
	for {
		h.mu.RLock()
		s, ch := h.latest[name], h.changed
		h.mu.RUnlock()
		if s != nil && s.Render.Version > since {
			return s
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

// Run loads the stored renders, recomputes, then listens for changes until
// ctx ends: a change to the facts, rulesets, lists or guard recomputes after
// the debounce; a render stored by another process is reloaded. A lost
// listening connection is reopened with backoff, followed by a recompute.
func (h *Hub) Run(ctx context.Context) error {
	if rss, err := h.store.Rulesets(ctx); err == nil {
		for _, rs := range rss {
			if err := h.reload(ctx, rs.Name); err != nil {
				h.log.WarnContext(ctx, "Could not load a stored render.", "ruleset", rs.Name, "error", err)
			}
		}
	}
	h.readyOnce.Do(func() { close(h.ready) })
	backoff := time.Second
	for ctx.Err() == nil {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			break
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type note struct {
		payload string
		err     error
	}
	notes := make(chan note)
	done := make(chan struct{})
	// The reader is owned by this session: cancel stops it and done is waited on.
	go func() {
		defer close(done)
		for {
			p, err := l.Wait(ctx)
			select {
			case notes <- note{p, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()

	// Expiring assertions announce nothing, so the hub also recomputes when
	// the next one expires.
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	recompute := func() {
		if err := h.Recompute(ctx); err != nil && ctx.Err() == nil {
			h.log.ErrorContext(ctx, "Recompute failed.", "error", err)
		}
		wait := time.Hour
		if next, err := h.store.NextExpiry(ctx, h.now()); err != nil {
			if ctx.Err() == nil {
				h.log.ErrorContext(ctx, "Could not read the next expiry.", "error", err)
			}
		} else if next != nil {
			wait = min(wait, max(next.Sub(h.now())+time.Second, h.debounce))
		}
		expiry.Reset(wait)
	}
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
		case <-expiry.C:
			recompute()
		case n := <-notes:
			if n.err != nil {
				return n.err
			}
			if rest, ok := strings.CutPrefix(n.payload, store.RenderPrefix); ok {
				// A render this process stored (or has already) needs no reload.
				name, v, _ := strings.Cut(rest, ":")
				if version, err := strconv.ParseInt(v, 10, 64); err == nil {
					if cur := h.Latest(name); cur != nil && cur.Render.Version >= version {
						continue
					}
				}
				if err := h.reload(ctx, name); err != nil {
					h.log.ErrorContext(ctx, "Could not reload a render.", "ruleset", name, "error", err)
				}
				continue
			}
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
