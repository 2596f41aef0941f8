// Package index holds, in each muninn serve process, every stored prefix
// with its live assertions, every geo network, every RDAP network and the
// hostnames of every address in memory, in tables made for longest-prefix
// match and containment (github.com/gaissmai/bart), and answers from them
// through the one resolver (server/resolve): a lookup runs no SQL.
//
// PostgreSQL stays the source of truth. [Index.Run] loads everything at
// start, then follows the change feed (store.ChangesSince, announced by
// NOTIFY): each change names the stored prefixes it touched (or, for
// enrichment, the RDAP networks and host prefixes), and the index re-reads
// exactly those. CatchUp may run concurrently with the follower (a writer
// calls it for read-your-writes): changes are applied under one lock and a
// snapshot's sequence never goes backwards. After a lost connection it catches up from the
// change table, and reloads in full when the changes it missed were pruned,
// so several processes on one database converge.
//
// Readers take an immutable snapshot ([Index.Snapshot]) and query it
// (lookups, search, walks for exports, facts for the compiler). Each applied
// change, and each instant at which an assertion expires, makes a new
// snapshot with the next generation; [Snap.ChangedSince] tells an
// incremental compiler which prefixes changed between two generations.
package index

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// historyLen is how many generations ChangedSince can look back.
const historyLen = 1024

// pageSize is how many changes one catch-up step reads and applies as one
// snapshot: a change lists up to 100,000 prefixes, so this bounds a step's
// memory while still coalescing a burst of small writes.
const pageSize = 64

// Index is the in-memory index of one process. Create it with New, run it
// with Run; read it through Snapshot.
type Index struct {
	st  *store.Store
	log *slog.Logger
	now func() time.Time

	cur       atomic.Pointer[Snap]
	ready     chan struct{}
	readyOnce sync.Once

	chMu    sync.Mutex
	changed chan struct{}

	// Writer state: only the goroutine in Run (or a test driving the
	// writer methods) touches it, under mu.
	mu   sync.Mutex
	strs *interner
	// loadedStrs is how many strings the last full load interned.
	loadedStrs int
	exps       *expiries
	// recs holds the current table's recs; liveFacts counts the facts of
	// the recs the current table refers to (the rest is garbage until the
	// next full load).
	recs      *arena
	liveFacts int
}

// New returns an index over st that has loaded nothing yet: its snapshot is
// empty (generation 0) until Run has loaded everything. now is the clock
// that decides which assertions are live.
func New(st *store.Store, log *slog.Logger, now func() time.Time) *Index {
	ix := &Index{st: st, log: log, now: now, ready: make(chan struct{}), changed: make(chan struct{}), strs: newInterner(),
		exps: newExpiries(), recs: &arena{}}
	at := now()
	ix.cur.Store(&Snap{at: at, atUS: micros(at), pfx: new(bart.Table[recID]), geo: new(bart.Table[geoRec]),
		rdap: new(bart.Table[*store.RDAPFacts]), hosts: new(bart.Table[[]store.Hostname]), attempts: new(bart.Table[attempts]),
		pdns: new(bart.Table[[]store.PassiveDNS])})
	return ix
}

// Snapshot returns the current snapshot. It never blocks.
func (ix *Index) Snapshot() *Snap { return ix.cur.Load() }

// Ready is closed once the first full load is in place.
func (ix *Index) Ready() <-chan struct{} { return ix.ready }

// Changed returns a channel that is closed when the next snapshot is
// published. To miss nothing, take the channel before the snapshot:
//
//	ch := ix.Changed()
//	snap := ix.Snapshot()
//	… use snap …
//	<-ch // a newer snapshot exists
func (ix *Index) Changed() <-chan struct{} {
	ix.chMu.Lock()
	defer ix.chMu.Unlock()
	return ix.changed
}

func (ix *Index) publish(s *Snap) {
	ix.cur.Store(s)
	ix.chMu.Lock()
	close(ix.changed)
	ix.changed = make(chan struct{})
	ix.chMu.Unlock()
}

// Run loads everything, reports ready, then follows the change feed and
// applies expiries until ctx ends. It retries failures with backoff and
// returns nil when ctx ends.
func (ix *Index) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, 30*time.Second)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		start := time.Now()
		err := ix.Reload(ctx)
		if err == nil {
			s := ix.Snapshot()
			ix.log.InfoContext(ctx, "Index ready.", "prefixes", s.Len(), "geo_networks", s.GeoLen(),
				"seq", s.Seq(), "duration", time.Since(start).String())
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		ix.log.ErrorContext(ctx, "Could not load the index.", "error", err)
		if !wait() {
			return nil
		}
	}
	for {
		err := ix.follow(ctx, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return nil
		}
		ix.log.ErrorContext(ctx, "The index lost the change feed; catching up after a pause.", "error", err)
		if !wait() {
			return nil
		}
	}
}

// follow runs one listening session: LISTEN first, then catch up, so no
// change between the two is missed; then apply what is announced and what
// expires.
func (ix *Index) follow(ctx context.Context, connected func()) error {
	l, err := ix.st.Listen(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	notes, stop := l.Notes(ctx)
	defer stop()

	if err := ix.CatchUp(ctx); err != nil {
		return err
	}
	connected()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var expire <-chan time.Time
		if next, ok := ix.nextExpiry(); ok {
			timer.Reset(max(next.Sub(ix.now()), 0))
			expire = timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case n := <-notes:
			if n.Err != nil {
				return n.Err
			}
			if seq, ok := store.ParseChangePayload(n.Payload); ok && seq > ix.Snapshot().Seq() {
				if err := ix.CatchUp(ctx); err != nil {
					return err
				}
			}
		case <-expire:
			ix.Expire()
		}
		timer.Stop()
	}
}

// Reload loads everything from the store and publishes it as a new snapshot
// that ChangedSince cannot see across.
func (ix *Index) Reload(ctx context.Context) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.reload(ctx)
}

// reload is Reload under ix.mu.
func (ix *Index) reload(ctx context.Context) error {
	at := ix.now()
	atUS := micros(at)
	strs := newInterner()
	pfx := new(bart.Table[recID])
	geo := new(bart.Table[geoRec])
	var exps []expiry
	recs := &arena{}
	seq, err := ix.st.LoadAll(ctx, at, func(p resolve.Prefix) error {
		id, r := compact(strs, recs, p)
		if next := r.nextExpiry(atUS); next != 0 {
			exps = append(exps, expiry{at: next, key: keyOf(p.Prefix)})
		}
		pfx.Insert(p.Prefix, id)
		return nil
	}, func(g store.GeoNetwork) error {
		geo.Insert(g.Network, compactGeo(strs, g))
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: load: %w", err)
	}
	// Enrichment is read after the load: any change of it recorded after
	// seq is re-read when applied, so the tables converge.
	rdap := new(bart.Table[*store.RDAPFacts])
	hosts := new(bart.Table[[]store.Hostname])
	tried := new(bart.Table[attempts])
	pdns := new(bart.Table[[]store.PassiveDNS])
	if err := ix.st.Enrichments(ctx, store.EnrichmentReader{
		RDAP: func(r store.RDAPFacts) error {
			rdap.Insert(r.Network.Masked(), &r)
			return nil
		},
		Host: func(a netip.Addr, hs []store.Hostname) error {
			hosts.Insert(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), capHostnames(hs))
			return nil
		},
		Attempts: func(a netip.Addr, as []store.EnrichAttempt) error {
			tried.Insert(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), compactAttempts(strs, as))
			return nil
		},
		PassiveDNS: func(a netip.Addr, ps []store.PassiveDNS) error {
			pdns.Insert(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), ps)
			return nil
		},
	}); err != nil {
		return fmt.Errorf("index: load enrichment: %w", err)
	}
	sched := &expiries{h: exps, pos: make(map[pfxKey]int, len(exps))}
	for i, e := range exps {
		sched.pos[e.key] = i
	}
	heap.Init(sched)
	ix.strs, ix.exps, ix.loadedStrs = strs, sched, len(strs.strs)
	ix.recs, ix.liveFacts = recs, recs.total
	ix.commit(ix.Snapshot(), seq, at, tables{pfx, geo, rdap, hosts, tried, pdns}, nil, false, true)
	ix.readyOnce.Do(func() { close(ix.ready) })
	return nil
}

// CatchUp applies every change recorded after the current snapshot's
// sequence, reloading in full when some were pruned or one asks for it.
func (ix *Index) CatchUp(ctx context.Context) error {
	for {
		seq := ix.Snapshot().Seq()
		changes, err := ix.st.ChangesSince(ctx, seq, pageSize)
		if errors.Is(err, store.ErrChangesPruned) {
			ix.log.WarnContext(ctx, "Changes the index missed were pruned; reloading.", "seq", seq)
			return ix.Reload(ctx)
		}
		if err != nil {
			return fmt.Errorf("index: catch up: %w", err)
		}
		if len(changes) == 0 {
			return nil
		}
		if err := ix.Apply(ctx, changes); err != nil {
			return err
		}
		// Interned strings and recs are never freed (old snapshots may
		// use them): when changes have doubled them (new notes, say, or
		// many changed prefixes), a full load starts afresh.
		if ix.stale() {
			ix.log.InfoContext(ctx, "Reloading the index to drop unused strings.")
			return ix.Reload(ctx)
		}
		if len(changes) < pageSize {
			return nil
		}
	}
}

// Apply applies recorded changes, in sequence order, as one new snapshot: it
// re-reads the prefixes they name (the geo networks when they changed, the
// RDAP networks and hostnames they name). A change of everything reloads in
// full. Changes the snapshot already includes (a concurrent CatchUp applied
// them) are skipped, so the snapshot's sequence never goes backwards.
func (ix *Index) Apply(ctx context.Context, changes []store.Change) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.apply(ctx, changes)
}

// apply is Apply under ix.mu.
func (ix *Index) apply(ctx context.Context, changes []store.Change) error {
	prev := ix.Snapshot()
	changes = slices.DeleteFunc(slices.Clone(changes), func(c store.Change) bool { return c.Seq <= prev.seq })
	if len(changes) == 0 {
		return nil
	}
	var (
		spans, enrich []netip.Prefix
		geo           bool
	)
	for _, c := range changes {
		switch c.Scope {
		case store.ChangeAll:
			return ix.reload(ctx)
		case store.ChangeGeo:
			geo = true
		case store.ChangeEnrich:
			enrich = append(enrich, c.Prefixes...)
		default:
			spans = append(spans, c.Prefixes...)
		}
	}
	spans = sortPrefixes(spans)
	start := time.Now()
	defer func() {
		ix.log.DebugContext(ctx, "Applied changes to the index.", "changes", len(changes), "prefixes", len(spans), "duration", time.Since(start).String())
	}()
	at := ix.now()
	atUS := micros(at)
	type freshRec struct {
		id recID
		r  rec
	}
	fresh := map[netip.Prefix]freshRec{}
	err := ix.st.LoadPrefixes(ctx, at, spans, func(p resolve.Prefix) error {
		id, r := compact(ix.strs, ix.recs, p)
		fresh[p.Prefix] = freshRec{id, r}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: apply changes: %w", err)
	}
	geoTable := prev.geo
	if geo {
		geoTable = new(bart.Table[geoRec])
		if err := ix.st.GeoNetworks(ctx, func(g store.GeoNetwork) error {
			geoTable.Insert(g.Network, compactGeo(ix.strs, g))
			return nil
		}); err != nil {
			return fmt.Errorf("index: apply geo change: %w", err)
		}
	}
	et, err := ix.applyEnrich(ctx, prev, sortPrefixes(enrich))
	if err != nil {
		return err
	}
	// Persistent updates share every untouched node with the previous
	// table; a big batch, or one touching a good part of a small table (a
	// sensor fleet's repeated addresses), is cheaper on one private copy.
	pfx := prev.pfx
	inPlace := len(spans) > 20_000 || len(spans) > pfx.Size()/8
	if inPlace {
		pfx = pfx.Clone()
	}
	for _, p := range spans {
		if old, ok := pfx.Get(p); ok {
			ix.liveFacts -= len(recAt(ix.recs.chunks, old))
		}
		f, ok := fresh[p]
		switch {
		case ok && inPlace:
			pfx.Insert(p, f.id)
		case ok:
			pfx = pfx.InsertPersist(p, f.id)
		case inPlace:
			pfx.Delete(p)
		default:
			pfx = pfx.DeletePersist(p)
		}
		var next int64
		if ok {
			ix.liveFacts += len(f.r)
			next = f.r.nextExpiry(atUS)
		}
		ix.exps.set(p, next)
	}
	et.pfx, et.geo = pfx, geoTable
	ix.commit(prev, changes[len(changes)-1].Seq, at, et, spans, geo, false)
	return nil
}

// maxHostnames is how many names of one address the index keeps (the
// newest).
const maxHostnames = 100

func capHostnames(hs []store.Hostname) []store.Hostname {
	if len(hs) > maxHostnames {
		hs = hs[:maxHostnames:maxHostnames]
	}
	return hs
}

// applyEnrich re-reads the RDAP networks, hostnames, lookup attempts and
// passive DNS names of enrichment changes (sorted prefixes) into persistent
// copies of prev's tables; it returns prev's tables with those replaced.
func (ix *Index) applyEnrich(ctx context.Context, prev *Snap, ps []netip.Prefix) (tables, error) {
	t := tables{prev.pfx, prev.geo, prev.rdap, prev.hosts, prev.attempts, prev.pdns}
	if len(ps) == 0 {
		return t, nil
	}
	gotRDAP := map[netip.Prefix]bool{}
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()) }
	err := ix.st.EnrichmentOf(ctx, ps, store.EnrichmentReader{
		RDAP: func(r store.RDAPFacts) error {
			p := r.Network.Masked()
			gotRDAP[p] = true
			t.rdap = t.rdap.InsertPersist(p, &r)
			return nil
		},
		Host: func(a netip.Addr, hs []store.Hostname) error {
			if len(hs) == 0 {
				t.hosts = t.hosts.DeletePersist(host(a))
			} else {
				t.hosts = t.hosts.InsertPersist(host(a), capHostnames(hs))
			}
			return nil
		},
		Attempts: func(a netip.Addr, as []store.EnrichAttempt) error {
			if len(as) == 0 {
				t.attempts = t.attempts.DeletePersist(host(a))
			} else {
				t.attempts = t.attempts.InsertPersist(host(a), compactAttempts(ix.strs, as))
			}
			return nil
		},
		PassiveDNS: func(a netip.Addr, ps []store.PassiveDNS) error {
			if len(ps) == 0 {
				t.pdns = t.pdns.DeletePersist(host(a))
			} else {
				t.pdns = t.pdns.InsertPersist(host(a), ps)
			}
			return nil
		},
	})
	if err != nil {
		return tables{}, fmt.Errorf("index: apply enrichment change: %w", err)
	}
	for _, p := range ps {
		if !gotRDAP[p] {
			t.rdap = t.rdap.DeletePersist(p)
		}
	}
	return t, nil
}

// Expire publishes a new snapshot at the current time when an assertion has
// expired since the current one; the prefixes it expired on are its
// changes. Run calls it when the next expiry comes.
func (ix *Index) Expire() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	at := ix.now()
	if next := ix.exps.next(); next == 0 || next > micros(at) {
		return
	}
	prev := ix.Snapshot()
	ix.commit(prev, prev.seq, at, tables{prev.pfx, prev.geo, prev.rdap, prev.hosts, prev.attempts, prev.pdns}, nil, false, false)
}

// stale reports whether a full load would free much memory: changes have
// doubled the interned strings, or made most of the arena's recs garbage.
func (ix *Index) stale() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.strs.strs) > 2*ix.loadedStrs+100_000 || ix.recs.total > 2*ix.liveFacts+staleFacts
}

// staleFacts is how many facts of garbage (40 bytes each) the arena may
// hold beyond the live ones before a full load drops them.
const staleFacts = 1 << 21

func (ix *Index) nextExpiry() (time.Time, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	next := ix.exps.next()
	return fromMicros(next), next != 0
}

// commit publishes the next snapshot. Every assertion that expired by at
// joins the changes (its prefix's next expiry is scheduled), so a snapshot's
// history accounts for every view that differs from the previous one.
// tables are the tables of one snapshot.
type tables struct {
	pfx      *bart.Table[recID]
	geo      *bart.Table[geoRec]
	rdap     *bart.Table[*store.RDAPFacts]
	hosts    *bart.Table[[]store.Hostname]
	attempts *bart.Table[attempts]
	pdns     *bart.Table[[]store.PassiveDNS]
}

func (ix *Index) commit(prev *Snap, seq int64, at time.Time, t tables, spans []netip.Prefix, geoChanged, full bool) {
	pfx := t.pfx
	atUS := micros(at)
	for {
		p, ok := ix.exps.popDue(atUS)
		if !ok {
			break
		}
		spans = append(spans, p)
		if id, ok := pfx.Get(p); ok {
			ix.exps.set(p, recAt(ix.recs.chunks, id).nextExpiry(atUS))
		}
	}
	s := &Snap{gen: prev.gen + 1, seq: seq, at: at, atUS: atUS, pfx: pfx, geo: t.geo, rdap: t.rdap, hosts: t.hosts, attempts: t.attempts, pdns: t.pdns, recs: ix.recs.chunks, strs: ix.strs.strs, histFloor: prev.histFloor}
	h := histEntry{gen: s.gen, spans: sortPrefixes(spans), geo: geoChanged, full: full}
	s.hist = append(prev.hist, h)
	if len(s.hist) > 2*historyLen {
		s.hist = append([]histEntry(nil), s.hist[len(s.hist)-historyLen:]...)
	}
	if len(s.hist) > 0 {
		s.histFloor = max(s.histFloor, s.hist[0].gen-1)
	}
	ix.publish(s)
}
