package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Observation is one validated ingest line.
type Observation struct {
	Prefix         netip.Prefix
	Source         string // full assertion source, e.g. "ingest:cowrie"
	Tags           []string
	Classification string
	SeenAt         time.Time
	// ExpiresAt is seen_at + ttl; nil means the tag's default TTL, or never.
	ExpiresAt *time.Time
	Note      string
	// WidthLifted says an admin accepted the prefix though it is wider than
	// the default limit (allow_wide); the batch audits it as width.lift.
	WidthLifted bool
	// Derived says muninn concluded it from sightings already counted (a
	// detection's firing): it asserts like any observation but counts in
	// no sightings, first or last seen of the prefix, nor the daily counts.
	Derived bool
}

var logColumns = []string{"prefix", "source", "tags", "classification", "seen_at", "expires_at", "note", "actor", "derived"}

// MergeBatch is the most log rows one merge transaction folds in. It stays
// under the change feed's listing limit (maxListedChange), so a merge is
// recorded as the prefixes it touched and never as "reload everything".
const MergeBatch = 50_000

// mergeParallel is how many merge transactions a process runs at once: on a
// machine whose PostgreSQL has two or more cores, two merges keep them busy
// while one alone leaves one idle.
const mergeParallel = 2

// mergeLock is the advisory lock key ("muNi") every merge transaction holds
// shared; a drain takes it exclusively for a moment at its end, which waits
// for the merges in flight in every process (they may hold rows it skipped).
const mergeLock = 1836412521

// assertionGrain is how far a repeat must move a tag's last_seen (or any
// assertion's expiry, at most a tenth of its time to live) before the merge
// rewrites the row: a source seeing an address again and again costs a
// row lookup, not an update, until a minute has passed. A classification's
// or note's last_seen is always exact: it decides which value is newest,
// and a lagging one would let an older, out-of-order observation win. A
// change of value, an earlier first_seen or a lifted expiry is written at
// once; the prefix's own last_seen and sightings are always exact.
const assertionGrain = `interval '1 minute'`

// assertionStale is the SQL condition under which the assertion row old
// must be rewritten with the merged row new (assertionGrain).
func assertionStale(old, new string) string {
	return strings.NewReplacer("old.", old+".", "new.", new+".").Replace(`new.first_seen < old.first_seen
		   OR (new.last_seen >= old.last_seen AND new.value IS DISTINCT FROM old.value)
		   OR (new.last_seen > old.last_seen AND (new.kind <> 'tag' OR new.last_seen >= old.last_seen + ` + assertionGrain + `))
		   OR (old.expires_at IS NOT NULL AND (new.expires_at IS NULL
		       OR new.expires_at > old.expires_at + least(` + assertionGrain + `, (new.expires_at - new.last_seen) / 10)))`)
}

// A merge folds a batch of observations (claimed from the log, or handed to
// the ingest aggregator) into rows in Go (foldObservations: one per prefix,
// per assertion and per day and source), copies them into temporary tables
// and upserts them with set-based statements; every statement orders by
// prefix so it takes row locks in the same order as the other writers
// (feeds, overrides) and does not deadlock with them.
const (
	// Concurrent merges claim disjoint rows (SKIP LOCKED).
	mergeClaim = `DELETE FROM ingest_log WHERE ctid = ANY (ARRAY(SELECT ctid FROM ingest_log LIMIT $1 FOR UPDATE SKIP LOCKED))
		RETURNING prefix, source, tags, classification, seen_at, expires_at, note, actor, derived`
	mergePrefixesTemp = `CREATE TEMP TABLE IF NOT EXISTS merge_prefixes (
		prefix cidr NOT NULL, first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL, n bigint NOT NULL) ON COMMIT DELETE ROWS`
	// expires_at is the expiry the observations named (NULL: none did);
	// default_from, for a tag, the newest observation that named none: it
	// expires after the tag's default TTL, or never without one.
	mergeAssertionsTemp = `CREATE TEMP TABLE IF NOT EXISTS merge_assertions (
		prefix cidr NOT NULL, kind text NOT NULL, source text NOT NULL, value text NOT NULL,
		first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL, expires_at timestamptz, default_from timestamptz,
		actor text NOT NULL) ON COMMIT DELETE ROWS`
	// The ids of the batch's prefixes go to a temporary table, so the later
	// statements hash-join the batch instead of probing prefixes' index.
	// inserted says this transaction created the prefix: nobody else
	// can have an assertion on it yet.
	mergeIDsTemp  = `CREATE TEMP TABLE IF NOT EXISTS ingest_ids (prefix cidr NOT NULL, id bigint NOT NULL, inserted bool NOT NULL) ON COMMIT DELETE ROWS`
	mergeTagNames = `INSERT INTO tags (name) SELECT t FROM unnest($1::text[]) t ORDER BY t ON CONFLICT DO NOTHING`
	mergePrefixes = `WITH up AS (
		INSERT INTO prefixes (prefix, first_seen, last_seen, sightings)
		SELECT prefix, first_seen, last_seen, n FROM merge_prefixes ORDER BY prefix
		ON CONFLICT (prefix) DO UPDATE SET
		  first_seen = CASE WHEN excluded.sightings > 0 THEN least(prefixes.first_seen, excluded.first_seen) ELSE prefixes.first_seen END,
		  last_seen = CASE WHEN excluded.sightings > 0 THEN greatest(prefixes.last_seen, excluded.last_seen) ELSE prefixes.last_seen END,
		  sightings = prefixes.sightings + excluded.sightings,
		  updated_at = now()
		RETURNING prefix, id, xmax = 0),
		ids AS (INSERT INTO ingest_ids SELECT * FROM up RETURNING inserted)
		SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ids`
	mergeSightings = `INSERT INTO sighting_counts (day, source, sightings)
		SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[]) ORDER BY 1, 2
		ON CONFLICT (day, source) DO UPDATE SET sightings = sighting_counts.sightings + excluded.sightings`
)

// mergeAssertionRows are the batch's assertion rows with their prefix's id
// and their expiry, of the prefixes the merge created (inserted) or of
// those that existed before.
func mergeAssertionRows(inserted bool) string {
	not := "NOT "
	if inserted {
		not = ""
	}
	return `SELECT i.id, a.source, a.kind, a.value, a.first_seen, a.last_seen,
		         CASE WHEN a.default_from IS NULL THEN a.expires_at
		              WHEN tg.default_ttl IS NULL THEN NULL
		              ELSE greatest(a.expires_at, a.default_from + tg.default_ttl) END AS expires_at,
		         a.actor
		  FROM merge_assertions a JOIN ingest_ids i ON i.prefix = a.prefix AND ` + not + `i.inserted
		  LEFT JOIN tags tg ON a.kind = 'tag' AND tg.name = a.value`
}

// The assertions of a prefix the merge created are new rows (the batch
// holds one per key): a plain insert, without the existence probe and
// the conflict check. For a new address with a tag and a classification
// that was a third of the merge.
var mergeNewAssertions = `INSERT INTO assertions (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
		` + mergeAssertionRows(true) + ` ORDER BY 1, 3, 2, 4`

// The other prefixes' assertions merge in one statement against the one key
// (prefix_id, kind, source, value_key). For a classification or a note
// the newer observation decides the value. A NULL expiry means never;
// re-asserting keeps the later of the two expiries. Repeats that would
// only move last_seen or the expiry a little are skipped (assertionGrain).
var mergeAssertions = `INSERT INTO assertions (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
		SELECT * FROM (
		  ` + mergeAssertionRows(false) + `) c (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
		WHERE NOT EXISTS (SELECT 1 FROM assertions x
		  WHERE x.prefix_id = c.prefix_id AND x.kind = c.kind AND x.source = c.source
		    AND x.value_key = CASE WHEN c.kind IN ('classification', 'note') THEN '' ELSE c.value END
		    AND NOT (` + assertionStale("x", "c") + `))
		ORDER BY 1, 3, 2, 4
		ON CONFLICT (prefix_id, kind, source, value_key) DO UPDATE SET
		  value = CASE WHEN excluded.last_seen >= assertions.last_seen THEN excluded.value ELSE assertions.value END,
		  first_seen = least(assertions.first_seen, excluded.first_seen),
		  last_seen = greatest(assertions.last_seen, excluded.last_seen),
		  expires_at = CASE WHEN assertions.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL
		                    ELSE greatest(assertions.expires_at, excluded.expires_at) END
		WHERE ` + assertionStale("assertions", "excluded")

// AppendObservations durably appends a batch of observations made through
// actor to the observation log, with one COPY (in one transaction with the
// audit of lifted widths when there are any). When it returns nil the batch
// survives a crash of this process or of PostgreSQL; it becomes visible after
// the next merge (Flush, or a merger within a second).
func (s *Store) AppendObservations(ctx context.Context, obs []Observation, actor string) error {
	return s.appendObservations(ctx, obs, actor, nil)
}

// IngestWithEvents is Ingest whose observations and events are stored in
// one transaction: the events exist exactly when the sightings do (a
// honeypot hit and its event). The events are announced on EventsChannel;
// the call returns once the observations are merged, like Ingest.
func (s *Store) IngestWithEvents(ctx context.Context, obs []Observation, actor string, evs []Event) error {
	if len(obs) == 0 && len(evs) == 0 {
		return nil
	}
	if err := s.appendObservations(ctx, obs, actor, evs); err != nil {
		return err
	}
	return s.Flush(ctx)
}

// appendObservations is AppendObservations that also stores evs in the
// transaction of the observations.
func (s *Store) appendObservations(ctx context.Context, obs []Observation, actor string, evs []Event) error {
	if len(obs) == 0 && len(evs) == 0 {
		return nil
	}
	src := logRows(obs, actor)
	var lifted []netip.Prefix
	for _, o := range obs {
		if o.WidthLifted && !slices.Contains(lifted, o.Prefix) {
			lifted = append(lifted, o.Prefix)
		}
	}
	var err error
	if len(lifted) == 0 && len(evs) == 0 {
		_, err = s.pool.CopyFrom(ctx, pgx.Identifier{"ingest_log"}, logColumns, src)
	} else {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if len(obs) > 0 {
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ingest_log"}, logColumns, src); err != nil {
					return err
				}
			}
			if len(lifted) > 0 {
				if err := auditLift(ctx, tx, actor, "ingest", lifted); err != nil {
					return err
				}
			}
			return appendEvents(ctx, tx, evs)
		})
	}
	if err != nil {
		return mapErr("append observations", err)
	}
	s.merge.appended.Add(int64(len(obs)))
	s.merge.pendingSince.CompareAndSwap(0, time.Now().UnixNano())
	return nil
}

// MergeSoon starts a merge of the observation log in the background, unless
// one is already due, and returns at once: what was appended before the call
// is merged by it or by the merge running now. An acknowledgement that does
// not wait for Flush calls it after AppendObservations.
func (s *Store) MergeSoon() {
	m := s.merge
	m.once.Do(func() { go s.mergeLoop() })
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// MergeLag is how long the oldest observation this process appended and no
// merge has folded in yet has waited (0 when there is none): the longest an
// acknowledged observation has been invisible so far. It counts from the end
// of the append; appends by other processes are not seen.
func (s *Store) MergeLag() time.Duration {
	m := s.merge
	oldest := m.drainingSince.Load()
	if p := m.pendingSince.Load(); p != 0 && (oldest == 0 || p < oldest) {
		oldest = p
	}
	if oldest == 0 {
		return 0
	}
	return time.Duration(max(time.Now().UnixNano()-oldest, 0))
}

// logRows is obs made through actor as rows of the observation log.
func logRows(obs []Observation, actor string) pgx.CopyFromSource {
	return pgx.CopyFromSlice(len(obs), func(i int) ([]any, error) {
		o := &obs[i]
		tags := o.Tags
		if tags == nil {
			tags = []string{}
		}
		return []any{o.Prefix, o.Source, tags, o.Classification, o.SeenAt, o.ExpiresAt, o.Note, actor, o.Derived}, nil
	})
}

// ingestTx appends obs (made through actor, none with a lifted width) to
// the observation log inside tx, for a write that stores observations
// together with something else (a detection's tag and its event): they are
// durable exactly when the rest of tx is. The caller calls Flush after the
// commit when it needs them visible at once; otherwise the merger folds them
// in within a second.
func ingestTx(ctx context.Context, tx pgx.Tx, obs []Observation, actor string) error {
	if len(obs) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ingest_log"}, logColumns, logRows(obs, actor)); err != nil {
		return fmt.Errorf("append observations: %w", err)
	}
	return nil
}

// merger runs this process's merges on one goroutine, started on first use:
// Flush calls that arrive while a merge runs are answered together by the
// next one (group commit), so many writers share few large merges.
type merger struct {
	once    sync.Once
	mu      sync.Mutex
	waiting []chan error
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	appended, merged, merges, nanos, maxNanos atomic.Int64
	// waits counts batches the ingest aggregator committed; waitNanos and
	// maxWait their summed and longest time from submission to commit.
	waits, waitNanos, maxWait atomic.Int64
	// pendingSince is when (Unix ns) the oldest append that no drain has
	// started since was acknowledged, 0 when none; drainingSince the same
	// for the drain in flight (its oldest append), 0 when none runs.
	pendingSince, drainingSince atomic.Int64
}

func newMerger() *merger {
	return &merger{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// counted records a merge of n observations that took d.
func (m *merger) counted(n int64, d time.Duration) {
	m.merged.Add(n)
	m.merges.Add(1)
	m.nanos.Add(d.Nanoseconds())
	storeMax(&m.maxNanos, d.Nanoseconds())
}

// storeMax raises v to x when x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for old := v.Load(); x > old && !v.CompareAndSwap(old, x); old = v.Load() {
	}
}

// MergeStats are this process's observation-log counters since Open.
type MergeStats struct {
	// Appended and Merged count observations appended by this process and
	// merged by it (from any process's appends).
	Appended, Merged int64
	// Merges counts merge transactions that folded at least one row; Total
	// and Max are their summed and longest durations.
	Merges     int64
	Total, Max time.Duration
	// Batches counts the batches the ingest aggregator committed
	// (SubmitObservations, Ingest); BatchWait and MaxBatchWait are their mean
	// and longest time from submission to the commit that made them visible.
	Batches                 int64
	BatchWait, MaxBatchWait time.Duration
}

// MergeStats reports this process's observation-log counters.
func (s *Store) MergeStats() MergeStats {
	m := s.merge
	return MergeStats{Appended: m.appended.Load(), Merged: m.merged.Load(), Merges: m.merges.Load(),
		Total: time.Duration(m.nanos.Load()), Max: time.Duration(m.maxNanos.Load()),
		Batches: m.waits.Load(), BatchWait: time.Duration(m.waitNanos.Load() / max(m.waits.Load(), 1)), MaxBatchWait: time.Duration(m.maxWait.Load())}
}

// Flush merges every observation appended to the log before the call (by
// any process) and records the change; it returns once they are merged.
// Concurrent calls share merges.
func (s *Store) Flush(ctx context.Context) error {
	m := s.merge
	m.once.Do(func() { go s.mergeLoop() })
	ch := make(chan error, 1)
	m.mu.Lock()
	m.waiting = append(m.waiting, ch)
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-ch:
		return err
	case <-m.stop:
		return errors.New("store: flush: the store is closed")
	case <-ctx.Done():
		return fmt.Errorf("store: flush: %w", ctx.Err())
	}
}

// RunMerger merges the log every interval until ctx ends: it folds in what
// processes that died after appending left behind. muninn serve and worker
// run it; a process that only appends through Ingest does not need it.
func (s *Store) RunMerger(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("Merging the observation log failed; retrying.", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) mergeLoop() {
	m := s.merge
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-m.stop:
			return
		case <-m.kick:
		}
		m.mu.Lock()
		ws := m.waiting
		m.waiting = nil
		m.mu.Unlock()
		// Every append acknowledged before this point is merged by this
		// drain (it waits for the rows committed before it starts).
		since := m.pendingSince.Swap(0)
		m.drainingSince.Store(since)
		err := s.drain(ctx)
		m.drainingSince.Store(0)
		if err != nil && since != 0 {
			// Not merged: the lag keeps counting from the oldest append.
			for {
				p := m.pendingSince.Load()
				if (p != 0 && p <= since) || m.pendingSince.CompareAndSwap(p, since) {
					break
				}
			}
		}
		for _, w := range ws {
			w <- err
		}
	}
}

// drain runs mergeParallel merges at a time until a round finds the log
// emptier than full batches, then waits for the merges in flight anywhere
// (the merge lock, exclusively): every row committed before drain started
// has then been merged, by this process or by another that claimed it.
func (s *Store) drain(ctx context.Context) error {
	for {
		var (
			wg    sync.WaitGroup
			ns    [mergeParallel]int64
			errs  [mergeParallel]error
			total int64
		)
		for i := range mergeParallel {
			wg.Add(1)
			go func() { defer wg.Done(); ns[i], errs[i] = s.mergeOnce(ctx) }()
		}
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			return err
		}
		for _, n := range ns {
			total += n
		}
		if total < mergeParallel*MergeBatch {
			break
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return mapErr("merge barrier", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1), pg_advisory_unlock($1)`, mergeLock); err != nil {
		conn.Conn().PgConn().Close(context.WithoutCancel(ctx)) // never back to the pool holding the lock
		return mapErr("merge barrier", err)
	}
	return nil
}

// mergeOnce runs one merge transaction, retrying one that lost a deadlock,
// and returns how many log rows it merged.
func (s *Store) mergeOnce(ctx context.Context) (int64, error) {
	var (
		n   int64
		err error
	)
	for attempt := 0; attempt < 3; attempt++ {
		start := time.Now()
		n, err = s.mergeTx(ctx)
		if err == nil && n > 0 {
			s.merge.counted(n, time.Since(start))
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	if err != nil {
		return 0, mapErr("merge observations", err)
	}
	return n, nil
}

func (s *Store) mergeTx(ctx context.Context) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n = 0
		if err := beginMerge(ctx, tx); err != nil {
			return err
		}
		// Held shared to commit: a drain's barrier waits for it.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, mergeLock); err != nil {
			return fmt.Errorf("merge lock: %w", err)
		}
		t0 := time.Now()
		rows, err := tx.Query(ctx, mergeClaim, MergeBatch)
		if err != nil {
			return fmt.Errorf("claim log rows: %w", err)
		}
		var groups []obsGroup
		for rows.Next() {
			var (
				o     Observation
				actor string
			)
			if err := rows.Scan(&o.Prefix, &o.Source, &o.Tags, &o.Classification, &o.SeenAt, &o.ExpiresAt, &o.Note, &actor, &o.Derived); err != nil {
				rows.Close()
				return fmt.Errorf("claim log rows: %w", err)
			}
			if k := len(groups) - 1; k >= 0 && groups[k].actor == actor {
				groups[k].obs = append(groups[k].obs, o)
			} else {
				groups = append(groups, obsGroup{actor, []Observation{o}})
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claim log rows: %w", err)
		}
		if n == 0 {
			return nil
		}
		return s.foldBatch(ctx, tx, foldObservations(groups), "rows", n, "claim_ms", time.Since(t0).Milliseconds())
	})
	return n, err
}

// beginMerge prepares tx for a merge: no statement timeout, room for the
// sorts, and the temporary tables.
func beginMerge(ctx context.Context, tx pgx.Tx) error {
	if err := unbounded(ctx, tx); err != nil {
		return err
	}
	// The sorts and hashes over 100k rows spill to disk at the default
	// 4MB; one merge runs at a time.
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
		return fmt.Errorf("work_mem: %w", err)
	}
	for _, q := range []string{mergePrefixesTemp, mergeAssertionsTemp, mergeIDsTemp} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("create batch table: %w", err)
		}
	}
	return nil
}

// close stops the merge goroutine, if it started, and waits for it.
func (m *merger) close() {
	started := true
	m.once.Do(func() { started = false })
	select {
	case <-m.stop:
		return
	default:
		close(m.stop)
	}
	if started {
		<-m.done
	}
}
