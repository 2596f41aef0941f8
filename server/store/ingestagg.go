package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// aggregateTake is the most observations of one PendingIngest: a longer
// batch is split (a merge lists the prefixes it touched in one change, at
// most maxListedChange).
const aggregateTake = maxListedChange

// PendingIngest is a batch of observations handed to SubmitObservations:
// it is merged by this process's ingest aggregator together with whatever
// other writers submitted meanwhile (group commit), and Wait answers once
// that merge has committed or failed.
type PendingIngest struct {
	obs   []Observation
	actor string
	after *PendingIngest
	done  chan struct{}
	err   error
	since time.Time // when it was submitted
}

// Wait returns once the batch is merged (nil: durable, visible to every
// reader of the database and recorded in the change feed) or failed; it
// returns ctx's error when ctx ends first, and the merge may still commit.
func (p *PendingIngest) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("store: ingest: %w", ctx.Err())
	}
}

func (p *PendingIngest) finish(err error) {
	p.err = err
	close(p.done)
}

// refuseAfterFailure fails p, and reports true, when the batch it follows
// has failed.
func (p *PendingIngest) refuseAfterFailure() bool {
	if p.after == nil {
		return false
	}
	if err := p.after.failed(); err != nil {
		p.finish(fmt.Errorf("store: ingest: not stored, an earlier batch failed: %w", err))
		return true
	}
	return false
}

// finished reports whether p has been merged or has failed.
func (p *PendingIngest) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failed reports whether p has finished with an error (false while it waits).
func (p *PendingIngest) failed() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Ingest stores a batch of observations made through actor and returns once
// they are merged into prefixes and assertions and the change is recorded:
// when it returns nil they are durable and visible to every reader of the
// database and of the change feed. After an error the observations may still
// have been stored (ctx ended while the merge committed).
func (s *Store) Ingest(ctx context.Context, obs []Observation, actor string) error {
	if len(obs) == 0 {
		return nil
	}
	return s.SubmitObservations(obs, actor, nil).Wait(ctx)
}

// SubmitObservations hands a batch of observations made through actor to
// this process's ingest aggregator and returns at once; Wait on the result
// answers when the batch is merged. The aggregator folds repeats (the same
// prefix, source, tags, classification, note and actor on one UTC day) into
// one row with a count, first and last time, and merges everything waiting
// in one transaction, so many writers and many repeats cost few row writes.
// after, when not nil, is the batch this one follows (the previous batch of
// one upload): if it failed, this one fails too and is not stored, so "stored
// through line N" answers stay true. obs must not change until Wait returns.
func (s *Store) SubmitObservations(obs []Observation, actor string, after *PendingIngest) *PendingIngest {
	a := s.agg
	a.once.Do(func() { go s.aggregateLoop() })
	var p *PendingIngest
	for len(obs) > 0 || p == nil {
		n := min(len(obs), aggregateTake)
		p = &PendingIngest{obs: obs[:n], actor: actor, after: after, done: make(chan struct{}), since: time.Now()}
		obs, after = obs[n:], p
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			p.finish(errors.New("store: ingest: the store is closed"))
			return p
		}
		a.queue = append(a.queue, p)
		a.mu.Unlock()
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return p
}

// mergeWorkers is how many merges one process runs at once. A merge of new
// prefixes keeps one PostgreSQL backend busy inserting rows while the
// other core idles; a second merge of other writers' batches uses it.
// Merges of the same prefixes take their row locks in prefix order and
// wait for each other.
const mergeWorkers = 2

// aggregator is the state of the ingest aggregator (SubmitObservations):
// the batches waiting and the goroutines that merge them (mergeWorkers).
// A batch that follows another (after) is merged with it or once it has
// finished, never in a concurrent merge, so it fails when that one fails.
type aggregator struct {
	once   sync.Once
	mu     sync.Mutex
	queue  []*PendingIngest
	closed bool
	// running is how many merges run; insertHeavy says the last merge
	// to finish inserted mostly new rows (see mergeWaiting).
	running     int
	insertHeavy bool
	// Tests: always run merges side by side, and close concurrent when
	// two run at once.
	alwaysConcurrent bool
	concurrent       chan struct{}
	// Tests: idlePass runs when a worker found nothing to merge (before it
	// leaves), backedOff gets a value when a worker leaves a batch to the
	// running merge.
	idlePass  func()
	backedOff chan struct{}
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
}

func newAggregator() *aggregator {
	return &aggregator{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// next removes the oldest waiting batch that may join the merge of group
// (folded into f): its predecessor has finished or is in group, and it fits
// (the merge's change lists at most maxListedChange prefixes; an empty f
// takes any). It returns nil when none may.
func (a *aggregator) next(f *folder, group []*PendingIngest) *PendingIngest {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, p := range a.queue {
		if p.after != nil && !p.after.finished() && !slices.Contains(group, p.after) {
			continue // its predecessor is in another merge
		}
		if f.fb.obs > 0 && len(f.fb.prefixes)+len(p.obs) > maxListedChange {
			return nil
		}
		a.queue = slices.Delete(a.queue, i, i+1)
		return p
	}
	return nil
}

// kickOthers wakes an idle merge worker when batches wait.
func (a *aggregator) kickOthers() {
	a.mu.Lock()
	waiting := len(a.queue) > 0
	a.mu.Unlock()
	if waiting {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

func (a *aggregator) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.mu.Unlock()
	started := true
	a.once.Do(func() { started = false })
	close(a.stop)
	if started {
		<-a.done
	}
}

func (s *Store) aggregateLoop() {
	a := s.agg
	defer close(a.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for range mergeWorkers {
		wg.Go(func() {
			for {
				select {
				case <-a.stop:
					return
				case <-a.kick:
				}
				for s.mergeWaiting(ctx) {
				}
			}
		})
	}
	wg.Wait()
	a.mu.Lock()
	q := a.queue
	a.queue = nil
	a.mu.Unlock()
	for _, p := range q {
		p.finish(errors.New("store: ingest: the store is closed"))
	}
}

// mergeWaiting folds the waiting batches (as many as one change may list)
// and merges them in one transaction, retrying one that lost a deadlock,
// and answers each. It reports whether it took any.
func (s *Store) mergeWaiting(ctx context.Context) bool {
	a := s.agg
	// A second merge runs beside one only while the merges insert new
	// rows: then each keeps a PostgreSQL backend busy. Merges of
	// prefixes that exist mostly update the same rows, and one larger
	// merge writes each of them once instead of twice (with 4 writers
	// repeating 20,000 addresses, two at once took 206k obs/s, one 308k).
	a.mu.Lock()
	if a.running > 0 && !a.insertHeavy && !a.alwaysConcurrent {
		backedOff := a.backedOff
		a.mu.Unlock()
		if backedOff != nil {
			backedOff <- struct{}{}
		}
		return false // the running merge's worker takes what waits next
	}
	a.running++
	a.mu.Unlock()
	// Leaving, say so to a worker when batches wait: a worker that backed
	// off above while this merge ran (a batch queued as this merge found
	// the queue empty) relies on it, or the batch would wait for the next
	// submission, which one-at-a-time writers never send.
	defer func() {
		a.mu.Lock()
		a.running--
		a.mu.Unlock()
		a.kickOthers()
	}()
	f := newFolder()
	var live, group []*PendingIngest
	for p := a.next(f, group); p != nil; p = a.next(f, group) {
		group = append(group, p)
		if p.refuseAfterFailure() {
			continue
		}
		f.add(obsGroup{p.actor, p.obs})
		live = append(live, p)
	}
	if len(live) == 0 {
		if len(group) == 0 && a.idlePass != nil {
			a.idlePass()
		}
		return len(group) > 0
	}
	a.mu.Lock()
	if a.running > 1 && a.concurrent != nil {
		close(a.concurrent)
		a.concurrent = nil
	}
	a.mu.Unlock()
	// What this merge left (it was full, or batches follow ones in
	// another merge) may go to an idle worker now; and when this merge
	// finishes, the batches that follow its own may go.
	a.kickOthers()
	fb := f.batch()
	err := s.mergeFolded(ctx, fb)
	if err == nil {
		a.mu.Lock()
		a.insertHeavy = fb.newAssertions*2 > int64(len(fb.assertions))
		a.mu.Unlock()
	}
	var pgErr *pgconn.PgError
	if err != nil && len(live) > 1 && errors.As(err, &pgErr) {
		// The database refused the rows (not lost the connection): merge
		// each batch alone, so one writer's bad batch fails only its own
		// (and the batches that follow it).
		for _, p := range live {
			if p.refuseAfterFailure() {
				continue
			}
			p.finish(mapErr("ingest", s.mergeFolded(ctx, foldObservations([]obsGroup{{p.actor, p.obs}}))))
		}
		return true
	}
	err = mapErr("ingest", err)
	m := s.merge
	for _, p := range live {
		if err == nil {
			d := time.Since(p.since).Nanoseconds()
			m.waits.Add(1)
			m.waitNanos.Add(d)
			storeMax(&m.maxWait, d)
		}
		p.finish(err)
	}
	return true
}

// mergeFolded merges fb in one transaction, retrying one that lost a
// deadlock or a serialization conflict (up to three attempts).
func (s *Store) mergeFolded(ctx context.Context, fb *foldedBatch) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		start := time.Now()
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := beginMerge(ctx, tx); err != nil {
				return err
			}
			return s.foldBatch(ctx, tx, fb, "observations", fb.obs, "prefixes", len(fb.prefixes), "assertions", len(fb.assertions))
		})
		if err == nil {
			s.merge.counted(int64(fb.obs), time.Since(start))
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	return err
}

// obsGroup is observations made through one actor.
type obsGroup struct {
	actor string
	obs   []Observation
}

// foldedBatch is a batch of observations folded into the rows a merge
// writes: one per prefix, one per assertion (prefix, kind, source and, for
// a tag, its name) and one count per UTC day and source.
type foldedBatch struct {
	prefixes   []prefixRow
	assertions []assertionRow
	sightings  map[sightingKey]*int64
	tags       []string
	lifted     map[string][]netip.Prefix
	obs        int
	// newAssertions is how many of assertions the last merge attempt
	// inserted for prefixes it created.
	newAssertions int64
}

type prefixRow struct {
	prefix      netip.Prefix
	first, last time.Time
	n           int64
	asserts     []int32 // its rows in assertions
}

type assertionKey struct {
	prefix             netip.Prefix
	kind, source, name string // name: the tag's; "" for a classification or note
}

// assertionRow is a row of merge_assertions: it spans its observations
// (first to last seen; the actor of the first to arrive). A tag keeps the
// latest explicit expiry and the newest observation without one in
// defaultFrom; a classification or a note the newest observation's value
// and the latest expiry, none when one of them named none.
type assertionRow struct {
	key                   assertionKey
	value, actor          string
	first, last           time.Time
	expires, defaultFrom  time.Time
	hasExpiry, hasDefault bool
}

type sightingKey struct {
	day    int64 // UTC days since 1970
	source string
}

// folder folds observations into the rows of one merge (foldedBatch).
type folder struct {
	fb       *foldedBatch
	prefixAt map[netip.Prefix]int
	tagSeen  map[string]bool
}

func newFolder() *folder {
	return &folder{fb: &foldedBatch{sightings: map[sightingKey]*int64{}, lifted: map[string][]netip.Prefix{}},
		prefixAt: map[netip.Prefix]int{}, tagSeen: map[string]bool{}}
}

// foldObservations folds groups of observations into the rows of one merge.
func foldObservations(groups []obsGroup) *foldedBatch {
	f := newFolder()
	for _, g := range groups {
		f.add(g)
	}
	return f.batch()
}

// batch is what was folded so far.
func (f *folder) batch() *foldedBatch {
	slices.Sort(f.fb.tags)
	return f.fb
}

// add folds in the observations of g.
func (f *folder) add(g obsGroup) {
	fb, prefixAt, tagSeen := f.fb, f.prefixAt, f.tagSeen
	fb.obs += len(g.obs)
	// assertion finds or adds the row of (kind, source, name) of the
	// prefix row pj: a prefix has few, so a scan beats a map.
	assertion := func(pj int, kind, source, name string, seen time.Time) (*assertionRow, bool) {
		pr := &fb.prefixes[pj]
		for _, j := range pr.asserts {
			r := &fb.assertions[j]
			if r.key.kind == kind && r.key.name == name && r.key.source == source {
				return r, false
			}
		}
		pr.asserts = append(pr.asserts, int32(len(fb.assertions)))
		fb.assertions = append(fb.assertions, assertionRow{key: assertionKey{pr.prefix, kind, source, name}, first: seen, last: seen})
		return &fb.assertions[len(fb.assertions)-1], true
	}
	// newest folds an observation of a classification or a note: the
	// newest decides the value (a tie goes to the later one), the row spans
	// first to last seen, and its expiry is the latest unless one of them
	// named none (never) — what merging them one at a time gives.
	newest := func(pj int, kind, value, actor string, o *Observation) {
		r, fresh := assertion(pj, kind, o.Source, "", o.SeenAt)
		if fresh {
			r.value, r.actor, r.hasExpiry = value, actor, o.ExpiresAt != nil
			if r.hasExpiry {
				r.expires = *o.ExpiresAt
			}
			return
		}
		if o.SeenAt.Before(r.first) {
			r.first = o.SeenAt
		}
		if !o.SeenAt.Before(r.last) {
			r.last, r.value = o.SeenAt, value
		}
		if o.ExpiresAt == nil {
			r.hasExpiry = false
		} else if r.hasExpiry && o.ExpiresAt.After(r.expires) {
			r.expires = *o.ExpiresAt
		}
	}
	var (
		lastSighting sightingKey
		lastCount    *int64
	)
	for i := range g.obs {
		o := &g.obs[i]
		pj, ok := prefixAt[o.Prefix]
		switch {
		case !ok:
			pj = len(fb.prefixes)
			prefixAt[o.Prefix] = pj
			n := int64(1)
			if o.Derived {
				n = 0 // the prefix exists for the assertion; its times count only if it is new
			}
			fb.prefixes = append(fb.prefixes, prefixRow{prefix: o.Prefix, first: o.SeenAt, last: o.SeenAt, n: n})
		case o.Derived:
		default:
			r := &fb.prefixes[pj]
			if r.n == 0 { // only derived observations so far
				r.first, r.last = o.SeenAt, o.SeenAt
			}
			r.n++
			if o.SeenAt.Before(r.first) {
				r.first = o.SeenAt
			}
			if o.SeenAt.After(r.last) {
				r.last = o.SeenAt
			}
		}
		if sk := (sightingKey{utcDay(o.SeenAt), o.Source}); o.Derived {
			// Not a sighting: nothing for the daily counts.
		} else if lastCount != nil && sk == lastSighting {
			*lastCount++
		} else {
			c := fb.sightings[sk]
			if c == nil {
				c = new(int64)
				fb.sightings[sk] = c
			}
			*c++
			lastSighting, lastCount = sk, c
		}
		if o.WidthLifted && !slices.Contains(fb.lifted[g.actor], o.Prefix) {
			fb.lifted[g.actor] = append(fb.lifted[g.actor], o.Prefix)
		}
		for _, t := range o.Tags {
			if !tagSeen[t] {
				tagSeen[t] = true
				fb.tags = append(fb.tags, t)
			}
			r, fresh := assertion(pj, "tag", o.Source, t, o.SeenAt)
			if fresh {
				r.value, r.actor = t, g.actor
			} else {
				if o.SeenAt.Before(r.first) {
					r.first = o.SeenAt
				}
				if o.SeenAt.After(r.last) {
					r.last = o.SeenAt
				}
			}
			switch {
			case o.ExpiresAt != nil:
				if !r.hasExpiry || o.ExpiresAt.After(r.expires) {
					r.expires, r.hasExpiry = *o.ExpiresAt, true
				}
			case !r.hasDefault || o.SeenAt.After(r.defaultFrom):
				r.defaultFrom, r.hasDefault = o.SeenAt, true
			}
		}
		if o.Classification != "" {
			newest(pj, "classification", o.Classification, g.actor, o)
		}
		if o.Note != "" {
			newest(pj, "note", o.Note, g.actor, o)
		}
	}
}

var (
	mergePrefixColumns    = []string{"prefix", "first_seen", "last_seen", "n"}
	mergeAssertionColumns = []string{"prefix", "kind", "source", "value", "first_seen", "last_seen", "expires_at", "default_from", "actor"}
)

// foldBatch writes fb in tx: tag names, prefixes, assertions, the daily
// sighting counts and the audit of lifted widths, and records the prefixes
// it touched as one change. took are key/value pairs for the debug log line.
func (s *Store) foldBatch(ctx context.Context, tx pgx.Tx, fb *foldedBatch, took ...any) error {
	step := func(name string, fn func() error) error {
		t0 := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("merge %s: %w", name, err)
		}
		took = append(took, name+"_ms", time.Since(t0).Milliseconds())
		return nil
	}
	exec := func(q string, args ...any) func() error {
		return func() error { _, err := tx.Exec(ctx, q, args...); return err }
	}
	days := make([]time.Time, 0, len(fb.sightings))
	sources := make([]string, 0, len(fb.sightings))
	counts := make([]int64, 0, len(fb.sightings))
	for k, n := range fb.sightings {
		days = append(days, time.Unix(k.day*86400, 0).UTC())
		sources = append(sources, k.source)
		counts = append(counts, *n)
	}
	err := step("copy", func() error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"merge_prefixes"}, mergePrefixColumns, pgx.CopyFromSlice(len(fb.prefixes), func(i int) ([]any, error) {
			r := &fb.prefixes[i]
			return []any{r.prefix, r.first, r.last, r.n}, nil
		}))
		if err != nil {
			return err
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"merge_assertions"}, mergeAssertionColumns, pgx.CopyFromSlice(len(fb.assertions), func(i int) ([]any, error) {
			r := &fb.assertions[i]
			var expires, defaultFrom any
			if r.hasExpiry {
				expires = r.expires
			}
			if r.hasDefault {
				defaultFrom = r.defaultFrom
			}
			return []any{r.key.prefix, r.key.kind, r.key.source, r.value, r.first, r.last, expires, defaultFrom, r.actor}, nil
		}))
		return err
	})
	if err != nil {
		return err
	}
	if len(fb.tags) > 0 {
		if err := step("tag names", exec(mergeTagNames, fb.tags)); err != nil {
			return err
		}
	}
	// How many of the batch's prefixes the merge created and how many
	// existed: each kind of assertion statement runs only when it has rows.
	var created, existed int64
	for _, st := range []struct {
		name string
		fn   func() error
	}{
		{"prefixes", func() error {
			return tx.QueryRow(ctx, mergePrefixes).Scan(&created, &existed)
		}},
		{"new assertions", func() error {
			if created == 0 {
				fb.newAssertions = 0
				return nil
			}
			tag, err := tx.Exec(ctx, mergeNewAssertions)
			fb.newAssertions = tag.RowsAffected()
			return err
		}},
		{"assertions", func() error {
			if existed == 0 {
				return nil
			}
			_, err := tx.Exec(ctx, mergeAssertions)
			return err
		}},
		{"sightings", exec(mergeSightings, days, sources, counts)},
	} {
		if err := step(st.name, st.fn); err != nil {
			return err
		}
	}
	for actor, ps := range fb.lifted {
		if err := auditLift(ctx, tx, actor, "ingest", ps); err != nil {
			return err
		}
	}
	t0 := time.Now()
	err = recordChangeOf(ctx, tx, `SELECT array_agg(prefix) FROM ingest_ids`)
	s.log.DebugContext(ctx, "Merged observations.", append(took, "change_ms", time.Since(t0).Milliseconds())...)
	return err
}

// utcDay is the UTC calendar day of t as days since 1970-01-01.
func utcDay(t time.Time) int64 {
	u := t.Unix()
	d := u / 86400
	if u%86400 < 0 {
		d--
	}
	return d
}
