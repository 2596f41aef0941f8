package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muninn/muninn/worker/source/feed"
)

// ErrDropGuard is returned (wrapped) by ApplyFeed when a refresh would remove
// more than the feed's MaxDropShare of its entries and was not forced.
var ErrDropGuard = errors.New("refresh would drop too many entries")

// Feed run statuses.
const (
	RunOK          = "ok"
	RunNotModified = "not_modified"
	RunFailed      = "failed"
	RunRefused     = "refused"
)

// Feed is a list refreshed on a schedule; its entries become assertions with
// source "feed:<name>".
type Feed struct {
	Name           string          `json:"name"`
	URL            string          `json:"url"`
	Format         string          `json:"format"`
	Options        json.RawMessage `json:"options,omitempty"`
	Tag            string          `json:"tag"`
	Classification string          `json:"classification"`
	// TTL, when positive, makes each assertion expire TTL after the refresh
	// that last listed it.
	TTL            time.Duration `json:"ttl"`
	Schedule       time.Duration `json:"schedule"`
	Enabled        bool          `json:"enabled"`
	MaxPrefixLenV4 int           `json:"max_prefix_len_v4"`
	MaxPrefixLenV6 int           `json:"max_prefix_len_v6"`
	// MaxDropShare is the largest share of entries one refresh may remove
	// without force; zero selects the default, 0.5.
	MaxDropShare float64 `json:"max_drop_share"`

	// Status, written by refreshes only.
	ETag         string     `json:"-"`
	LastModified string     `json:"-"`
	LastRun      *time.Time `json:"last_run,omitempty"`
	LastSuccess  *time.Time `json:"last_success,omitempty"`
	Entries      int64      `json:"entries"`
	Rejected     int64      `json:"rejected"`
	LastError    string     `json:"last_error,omitempty"`
}

// Source is the assertion source of the feed's entries.
func (f Feed) Source() string { return FeedSource(f.Name) }

// FeedSource is the assertion source of feed name's entries.
func FeedSource(name string) string { return "feed:" + name }

// FeedRun is one refresh attempt.
type FeedRun struct {
	ID         int64     `json:"id"`
	Feed       string    `json:"feed"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Status     string    `json:"status"`
	Forced     bool      `json:"forced"`
	Lines      int64     `json:"lines"`
	Entries    int64     `json:"entries"`
	Added      int64     `json:"added"`
	Removed    int64     `json:"removed"`
	Rejected   int64     `json:"rejected"`
	Duplicates int64     `json:"duplicates"`
	Error      string    `json:"error"`
	// RejectedLines are the first MaxRejectedLines lines the parser refused,
	// in input order (stored as jsonb in feed_runs.rejected_lines).
	RejectedLines []RejectedLine `json:"rejected_lines"`
}

// MaxRejectedLines is how many rejected lines a run keeps; all are counted
// in Rejected.
const MaxRejectedLines = 100

// RejectedLine is one feed line that produced no entry: its 1-based line
// number (record number for csv, 0 when the whole body was refused), its
// text (truncated by the caller) and why.
type RejectedLine struct {
	Line   int64  `json:"line"`
	Text   string `json:"text"`
	Reason string `json:"reason"`
}

// rejectedJSON is the jsonb value of lines: never NULL, at most
// MaxRejectedLines of them.
func rejectedJSON(lines []RejectedLine) []byte {
	if len(lines) > MaxRejectedLines {
		lines = lines[:MaxRejectedLines]
	}
	if lines == nil {
		lines = []RejectedLine{}
	}
	b, _ := json.Marshal(lines) // strings and ints always marshal
	return b
}

const feedColumns = `name, url, format, options, tag, classification,
	coalesce(extract(epoch FROM ttl), 0)::float8, extract(epoch FROM schedule)::float8, enabled,
	max_prefix_len_v4, max_prefix_len_v6, max_drop_share, etag, last_modified,
	last_run, last_success, entries, rejected, last_error`

func scanFeed(r pgx.CollectableRow) (Feed, error) {
	var f Feed
	var ttl, sched float64
	var opts []byte
	err := r.Scan(&f.Name, &f.URL, &f.Format, &opts, &f.Tag, &f.Classification, &ttl, &sched, &f.Enabled,
		&f.MaxPrefixLenV4, &f.MaxPrefixLenV6, &f.MaxDropShare, &f.ETag, &f.LastModified,
		&f.LastRun, &f.LastSuccess, &f.Entries, &f.Rejected, &f.LastError)
	f.Options = opts
	f.TTL = time.Duration(ttl * float64(time.Second))
	f.Schedule = time.Duration(sched * float64(time.Second))
	return f, err
}

// Feeds lists every feed by name.
func (s *Store) Feeds(ctx context.Context) ([]Feed, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+feedColumns+` FROM feeds ORDER BY name`)
	fs, err := pgx.CollectRows(rows, scanFeed)
	if err != nil {
		return nil, mapErr("list feeds", err)
	}
	return fs, nil
}

// FeedByName returns one feed or ErrNotFound.
func (s *Store) FeedByName(ctx context.Context, name string) (Feed, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+feedColumns+` FROM feeds WHERE name = $1`, name)
	f, err := pgx.CollectExactlyOneRow(rows, scanFeed)
	if err != nil {
		return Feed{}, mapErr("get feed", err)
	}
	return f, nil
}

// PutFeed creates or replaces a feed's definition (its status is kept) and
// reports whether it was created. Changing the URL or format forgets the
// conditional-GET validators so the next refresh fetches in full.
func (s *Store) PutFeed(ctx context.Context, f Feed, actor string) (created bool, err error) {
	if f.MaxDropShare == 0 {
		f.MaxDropShare = 0.5
	}
	if f.Schedule <= 0 {
		f.Schedule = time.Hour
	}
	if len(f.Options) == 0 {
		f.Options = json.RawMessage(`{}`)
	}
	err = s.inTx(ctx, "put feed", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+feedColumns+` FROM feeds WHERE name = $1 FOR UPDATE`, f.Name)
		old, err := pgx.CollectExactlyOneRow(rows, scanFeed)
		var before any
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			created = true
		case err != nil:
			return err
		default:
			before = auditedFeed(&old)
		}
		_, err = tx.Exec(ctx, `INSERT INTO feeds (name, url, format, options, tag, classification, ttl, schedule,
			  enabled, max_prefix_len_v4, max_prefix_len_v6, max_drop_share)
			VALUES ($1, $2, $3, $4, $5, $6, $7, make_interval(secs => $8), $9, $10, $11, $12)
			ON CONFLICT (name) DO UPDATE SET url = excluded.url, format = excluded.format, options = excluded.options,
			  tag = excluded.tag, classification = excluded.classification, ttl = excluded.ttl,
			  schedule = excluded.schedule, enabled = excluded.enabled,
			  max_prefix_len_v4 = excluded.max_prefix_len_v4, max_prefix_len_v6 = excluded.max_prefix_len_v6,
			  max_drop_share = excluded.max_drop_share, updated_at = now(),
			  etag = CASE WHEN feeds.url = excluded.url AND feeds.format = excluded.format AND feeds.options = excluded.options
			              THEN feeds.etag ELSE '' END,
			  last_modified = CASE WHEN feeds.url = excluded.url AND feeds.format = excluded.format AND feeds.options = excluded.options
			              THEN feeds.last_modified ELSE '' END`,
			f.Name, f.URL, f.Format, []byte(f.Options), f.Tag, f.Classification, ttlInterval(f.TTL), f.Schedule.Seconds(),
			f.Enabled, f.MaxPrefixLenV4, f.MaxPrefixLenV6, f.MaxDropShare)
		if err != nil {
			return err
		}
		if f.Tag != "" {
			if err := ensureTags(ctx, tx, []string{f.Tag}); err != nil {
				return err
			}
		}
		return audit(ctx, tx, actor, "feed.put", "feed/"+f.Name, before, auditedFeed(&f))
	})
	return created, err
}

// DeleteFeed removes a feed, its history and every assertion it made, and
// records the change.
func (s *Store) DeleteFeed(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete feed", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `DELETE FROM feeds WHERE name = $1 RETURNING `+feedColumns, name)
		old, err := pgx.CollectExactlyOneRow(rows, scanFeed)
		if err != nil {
			return mapErr("delete feed", err)
		}
		var ids []int64
		if err := tx.QueryRow(ctx, `WITH d AS (DELETE FROM assertions WHERE source = $1 AND source LIKE 'feed:%' RETURNING prefix_id)
			SELECT coalesce(array_agg(DISTINCT prefix_id), '{}') FROM d`, FeedSource(name)).Scan(&ids); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "feed.delete", "feed/"+name, auditedFeed(&old), nil); err != nil {
			return err
		}
		return recordFeedChange(ctx, tx, ids)
	})
}

// DueFeeds names the enabled feeds whose schedule has come round at now.
func (s *Store) DueFeeds(ctx context.Context, now time.Time) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT name FROM feeds
		WHERE enabled AND (last_run IS NULL OR last_run + schedule <= $1) ORDER BY name`, now)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, mapErr("due feeds", err)
	}
	return names, nil
}

// FeedRuns returns a feed's newest runs first, at most limit.
func (s *Store) FeedRuns(ctx context.Context, name string, limit int) ([]FeedRun, error) {
	if _, err := s.FeedByName(ctx, name); err != nil {
		return nil, err
	}
	rows, _ := s.pool.Query(ctx, `SELECT id, feed, started_at, finished_at, status, forced, lines, entries,
		added, removed, rejected, duplicates, error, rejected_lines FROM feed_runs WHERE feed = $1 ORDER BY id DESC LIMIT $2`, name, limit)
	runs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[FeedRun])
	if err != nil {
		return nil, mapErr("feed runs", err)
	}
	return runs, nil
}

// RecordFeedRun stores a run that changed no assertions (not modified,
// failed, refused) and the feed's status that follows from it.
func (s *Store) RecordFeedRun(ctx context.Context, run FeedRun) (FeedRun, error) {
	err := s.inTx(ctx, "record feed run", func(tx pgx.Tx) error {
		var err error
		run, err = recordRun(ctx, tx, run)
		if err != nil {
			return err
		}
		lastErr := run.Error
		_, err = tx.Exec(ctx, `UPDATE feeds SET last_run = $2, last_error = $3,
			last_success = CASE WHEN $4 THEN $2 ELSE last_success END WHERE name = $1`,
			run.Feed, run.FinishedAt, lastErr, run.Status == RunNotModified)
		return err
	})
	return run, err
}

func recordRun(ctx context.Context, tx pgx.Tx, r FeedRun) (FeedRun, error) {
	err := tx.QueryRow(ctx, `INSERT INTO feed_runs (feed, started_at, finished_at, status, forced, lines, entries,
		  added, removed, rejected, duplicates, error, rejected_lines)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
		r.Feed, r.StartedAt, r.FinishedAt, r.Status, r.Forced, r.Lines, r.Entries, r.Added, r.Removed,
		r.Rejected, r.Duplicates, r.Error, rejectedJSON(r.RejectedLines)).Scan(&r.ID)
	if err != nil {
		return r, fmt.Errorf("insert run: %w", err)
	}
	// A failed or refused (drop/width guard) run is an event, stored with it.
	kind := ""
	switch r.Status {
	case RunFailed:
		kind = EventFeedFailed
	case RunRefused:
		kind = EventFeedHeld
	}
	if kind != "" {
		if err := appendEvents(ctx, tx, []Event{{At: r.FinishedAt, Kind: kind, SubjectType: "feed", Subject: r.Feed,
			Details: map[string]any{"error": r.Error, "run": r.ID, "forced": r.Forced}}}); err != nil {
			return r, err
		}
	}
	return r, nil
}

// FeedUpdate is one parsed refresh to apply.
type FeedUpdate struct {
	// Prefixes are the canonical prefixes the feed lists now.
	Prefixes []netip.Prefix
	// ETag and LastModified are the new conditional-GET validators.
	ETag, LastModified string
	// Force applies the update even when it trips the drop guard.
	Force bool
	// StartedAt is when the refresh began; Now is the time the assertions get.
	StartedAt, Now time.Time
	// Lines, Rejected and Duplicates are the parser's counts, kept in the run.
	Lines, Rejected, Duplicates int64
	// RejectedLines are the first rejected lines, kept in the run.
	RejectedLines []RejectedLine
}

// The new prefix set is COPYed into a temp table and merged with set-based
// statements in one transaction, so a crash leaves the old or the new state.
// Inserts order by prefix, like ingest, so concurrent writers take index
// locks in the same order; the assertions touched all carry this feed's
// source, which no other writer changes (the feed row lock serialises
// refreshes of one feed).
const (
	feedTemp = `CREATE TEMP TABLE feed_batch (prefix cidr NOT NULL) ON COMMIT DROP`
	// Temp tables are never analysed by autovacuum; without statistics the
	// planner picks nested loops over 100k rows.
	feedAnalyze = `ANALYZE feed_batch`
	// Every statement on the feed's own assertions says source LIKE 'feed:%'
	// so the planner can use the partial index of feed assertions (migration
	// 0018) instead of scanning every assertion.
	feedCounts = `SELECT
		  (SELECT count(DISTINCT prefix_id) FROM assertions WHERE source = $1 AND source LIKE 'feed:%'),
		  (SELECT count(*) FROM (SELECT DISTINCT prefix FROM feed_batch) b JOIN prefixes p ON p.prefix = b.prefix
		    WHERE EXISTS (SELECT 1 FROM assertions a WHERE a.prefix_id = p.id AND a.source = $1)),
		  (SELECT count(DISTINCT prefix) FROM feed_batch)`
	// Only prefixes not stored yet are inserted: an anti-join is cheaper than
	// a speculative insertion per row when most already exist (a refresh).
	feedPrefixes = `INSERT INTO prefixes (prefix, first_seen, last_seen)
		SELECT DISTINCT b.prefix, $1::timestamptz, $1::timestamptz FROM feed_batch b
		WHERE NOT EXISTS (SELECT 1 FROM prefixes p WHERE p.prefix = b.prefix) ORDER BY 1
		ON CONFLICT (prefix) DO NOTHING`
	// Removes what the feed no longer lists, and what it said under a tag it
	// has since been reconfigured away from (or a classification it dropped).
	// It returns the ids of the prefixes it removed something from, for the
	// change feed and the ghost clean-up.
	feedRemove = `WITH d AS (DELETE FROM assertions a WHERE a.source = $1 AND a.source LIKE 'feed:%' AND (
		  NOT EXISTS (SELECT 1 FROM feed_batch b JOIN prefixes p ON p.prefix = b.prefix WHERE p.id = a.prefix_id)
		  OR (a.kind = 'tag' AND a.value <> $2)
		  OR (a.kind = 'classification' AND $3 = '')
		  OR a.kind NOT IN ('tag', 'classification')) RETURNING a.prefix_id)
		SELECT coalesce(array_agg(DISTINCT prefix_id), '{}') FROM d`
	// Every assertion left is still listed. A refresh writes only those
	// whose stored state must change, so it costs in proportion to its diff,
	// not to the feed's size: a classification the feed was reconfigured to,
	// an expiry that no longer matches the feed's TTL (one was set or
	// removed), and, for a feed with a TTL, an expiry that has run down to
	// less than half the TTL (extended to refresh time + TTL: expiry moves in
	// steps of at most half the TTL, never before the feed stops listing the
	// prefix). last_seen is when the row was last written; that the feed
	// still lists it as of its last refresh is the feed's last_success.
	// $5 is refresh time + TTL/2 (NULL without a TTL).
	feedBump = `WITH u AS (UPDATE assertions SET last_seen = $2, expires_at = $3,
		  value = CASE WHEN kind = 'classification' THEN $4 ELSE value END
		WHERE source = $1 AND source LIKE 'feed:%' AND (
		  (kind = 'classification' AND value <> $4)
		  OR ($3::timestamptz IS NULL AND expires_at IS NOT NULL)
		  OR ($3::timestamptz IS NOT NULL AND (expires_at IS NULL OR expires_at < $5::timestamptz)))
		RETURNING prefix_id)
		SELECT coalesce(array_agg(DISTINCT prefix_id), '{}') FROM u`
	// Then add what is new: one row per listed prefix and kind it lacks.
	feedAdd = `WITH i AS (INSERT INTO assertions (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
		SELECT p.id, $1::text, k.kind, k.value, $4::timestamptz, $4::timestamptz, $5::timestamptz, $1::text
		FROM (SELECT DISTINCT prefix FROM feed_batch) b JOIN prefixes p ON p.prefix = b.prefix
		CROSS JOIN (VALUES ('tag', $2::text), ('classification', $3::text)) k(kind, value)
		WHERE k.value <> ''
		  AND NOT EXISTS (SELECT 1 FROM assertions a WHERE a.prefix_id = p.id AND a.source = $1 AND a.kind = k.kind)
		ORDER BY p.id, k.kind
		ON CONFLICT DO NOTHING
		RETURNING prefix_id)
		SELECT coalesce(array_agg(DISTINCT prefix_id), '{}') FROM i`
	feedStatus = `UPDATE feeds SET last_run = $2, last_success = $2, entries = $3, rejected = $4, last_error = '',
		  etag = $5, last_modified = $6 WHERE name = $1`
)

// ApplyFeed replaces feed name's assertions with u.Prefixes in one
// transaction: new prefixes are added, unlisted ones removed, and of the
// unchanged ones only those whose stored state must change are written (see
// feedBump), so a refresh costs in proportion to its diff and records only
// the prefixes it changed. Applying the same update twice changes nothing,
// so a retried job is harmless. When the update would remove more than the feed's
// MaxDropShare of its entries and is not forced, nothing changes, a refused
// run is recorded and the error wraps ErrDropGuard.
func (s *Store) ApplyFeed(ctx context.Context, name string, u FeedUpdate) (FeedRun, error) {
	run := FeedRun{Feed: name, StartedAt: u.StartedAt, Forced: u.Force, Lines: u.Lines,
		Rejected: u.Rejected, Duplicates: u.Duplicates, RejectedLines: u.RejectedLines, Status: RunOK}
	var refused error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := unbounded(ctx, tx); err != nil {
			return err
		}
		// The row lock serialises refreshes of one feed across processes.
		rows, _ := tx.Query(ctx, `SELECT `+feedColumns+` FROM feeds WHERE name = $1 FOR UPDATE`, name)
		f, err := pgx.CollectExactlyOneRow(rows, scanFeed)
		if err != nil {
			return mapErr("apply feed", err)
		}
		// The anti-joins and sorts over 100k+ rows spill to disk at the
		// default 4MB; this transaction is one per feed at a time.
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return fmt.Errorf("work_mem: %w", err)
		}
		if _, err := tx.Exec(ctx, feedTemp); err != nil {
			return fmt.Errorf("create batch table: %w", err)
		}
		src := pgx.CopyFromSlice(len(u.Prefixes), func(i int) ([]any, error) { return []any{u.Prefixes[i]}, nil })
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"feed_batch"}, []string{"prefix"}, src); err != nil {
			return fmt.Errorf("copy batch: %w", err)
		}
		if _, err := tx.Exec(ctx, feedAnalyze); err != nil {
			return fmt.Errorf("analyze batch: %w", err)
		}
		// Each step's duration goes to the debug log.
		took := []any{"feed", name, "entries", len(u.Prefixes)}
		t0 := time.Now()
		lap := func(step string) {
			took = append(took, step+"_ms", time.Since(t0).Milliseconds())
			t0 = time.Now()
		}
		var existing, kept int64
		if err := tx.QueryRow(ctx, feedCounts, f.Source()).Scan(&existing, &kept, &run.Entries); err != nil {
			return fmt.Errorf("count entries: %w", err)
		}
		run.Added, run.Removed = run.Entries-kept, existing-kept
		lap("count")
		if !u.Force && existing > 0 && float64(run.Removed) > f.MaxDropShare*float64(existing) {
			refused = fmt.Errorf("store: apply feed %s: %w: %d of %d entries (%.0f%%, limit %.0f%%); refresh with force to apply",
				name, ErrDropGuard, run.Removed, existing, 100*float64(run.Removed)/float64(existing), 100*f.MaxDropShare)
			return refused
		}
		var expires, halfway *time.Time
		if f.TTL > 0 {
			e, h := u.Now.Add(f.TTL), u.Now.Add(f.TTL/2)
			expires, halfway = &e, &h
		}
		if _, err := tx.Exec(ctx, feedPrefixes, u.Now); err != nil {
			return fmt.Errorf("merge prefixes: %w", err)
		}
		lap("prefixes")
		var removedFrom []int64
		if err := tx.QueryRow(ctx, feedRemove, f.Source(), f.Tag, f.Classification).Scan(&removedFrom); err != nil {
			return fmt.Errorf("merge removals: %w", err)
		}
		lap("remove")
		var bumped, added []int64
		if err := tx.QueryRow(ctx, feedBump, f.Source(), u.Now, expires, f.Classification, halfway).Scan(&bumped); err != nil {
			return fmt.Errorf("merge bump: %w", err)
		}
		lap("bump")
		if err := tx.QueryRow(ctx, feedAdd, f.Source(), f.Tag, f.Classification, u.Now, expires).Scan(&added); err != nil {
			return fmt.Errorf("merge additions: %w", err)
		}
		lap("add")
		defer func() { s.log.DebugContext(ctx, "Applied a feed.", took...) }()
		if f.Tag != "" {
			if err := ensureTags(ctx, tx, []string{f.Tag}); err != nil {
				return fmt.Errorf("tag name: %w", err)
			}
		}
		run.FinishedAt = u.Now
		if run.FinishedAt.Before(run.StartedAt) {
			run.FinishedAt = run.StartedAt
		}
		if _, err := tx.Exec(ctx, feedStatus, name, run.FinishedAt, run.Entries, run.Rejected, u.ETag, u.LastModified); err != nil {
			return fmt.Errorf("feed status: %w", err)
		}
		if run, err = recordRun(ctx, tx, run); err != nil {
			return err
		}
		err = recordFeedChange(ctx, tx, slices.Concat(removedFrom, bumped, added))
		lap("change")
		return err
	})
	if refused != nil {
		run.Status, run.Error, run.FinishedAt = RunRefused, refused.Error(), u.Now
		if _, err := s.RecordFeedRun(ctx, run); err != nil {
			return run, errors.Join(refused, err)
		}
		return run, refused
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return run, err
		}
		return run, mapErr("apply feed "+name, err)
	}
	return run, nil
}

// recordFeedChange records as changed the prefixes (ids) the feed removed,
// added or rewrote assertions of; more than the change feed lists (see
// migration 0006) is recorded as a change of everything without building the
// array. A prefix left with nothing stored about it is a ghost that every
// output ignores (resolve.Prefix.Exists) until Prune deletes it: deleting it
// here would lock prefixes a second time, out of the order concurrent ingest
// takes them in, and deadlock with it.
func recordFeedChange(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if len(ids) > maxListedChange {
		return recordChange(ctx, tx, ChangeAll, nil)
	}
	var changed []netip.Prefix
	if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(prefix), '{}') FROM prefixes WHERE id IN (SELECT unnest($1::bigint[]))`,
		ids).Scan(&changed); err != nil {
		return fmt.Errorf("changed prefixes: %w", err)
	}
	return recordChange(ctx, tx, ChangePrefixes, changed)
}

// auditedFeed is f as the audit log keeps it: its URL redacted (the log is
// read by every admin, and shown in the UI).
func auditedFeed(f *Feed) Feed {
	c := *f
	c.URL = feed.RedactURL(c.URL)
	return c
}
