package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/feed"
)

// DefaultFeedMaxBytes bounds one feed body when Deps.FeedMaxBytes is zero.
const DefaultFeedMaxBytes = 256 << 20

// FeedOptions is the JSON form of a feed's parser options (feeds.options).
type FeedOptions struct {
	// MinCount drops ipsum entries on fewer lists.
	MinCount int `json:"min_count,omitempty"`
	// Column and ColumnName pick the csv column; Comma is its separator.
	Column     int    `json:"column,omitempty"`
	ColumnName string `json:"column_name,omitempty"`
	Comma      string `json:"comma,omitempty"`
	// Header skips the first csv record.
	Header bool `json:"header,omitempty"`
}

// ParserOptions turns a feed's stored definition into feed.Options and checks
// them against its format.
func ParserOptions(f store.Feed) (feed.Options, error) {
	var o FeedOptions
	if len(f.Options) > 0 {
		if err := json.Unmarshal(f.Options, &o); err != nil {
			return feed.Options{}, fmt.Errorf("worker: feed %s options: %w", f.Name, err)
		}
	}
	opts := feed.Options{MinCount: o.MinCount, Column: o.Column, ColumnName: o.ColumnName, Header: o.Header,
		MaxPrefixLen: feed.MaxPrefixLen{V4: f.MaxPrefixLenV4, V6: f.MaxPrefixLenV6}}
	if o.Comma != "" {
		r := []rune(o.Comma)
		if len(r) != 1 {
			return feed.Options{}, fmt.Errorf("worker: feed %s options: comma %q is not one character", f.Name, o.Comma)
		}
		opts.Comma = r[0]
	}
	if err := opts.Validate(f.Format); err != nil {
		return feed.Options{}, err
	}
	return opts, nil
}

// FeedRefreshArgs refreshes one feed. It is unique per feed while pending or
// running, so a burst of refresh requests costs one fetch.
type FeedRefreshArgs struct {
	Name string `json:"name" river:"unique"`
	// Force applies the update even when it trips the drop guard.
	Force bool `json:"force,omitempty"`
}

// Kind names the job.
func (FeedRefreshArgs) Kind() string { return "feed_refresh" }

// InsertOpts makes the job unique per feed until it finishes. A failed
// refresh is retried a few times; the schedule takes over after that.
func (FeedRefreshArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: uniquePending()}
}

// FeedRefreshWorker runs FeedRefreshArgs: fetch (conditional GET), parse,
// apply as one transaction.
type FeedRefreshWorker struct {
	river.WorkerDefaults[FeedRefreshArgs]
	deps Deps
}

// Timeout bounds one refresh, download included.
func (w *FeedRefreshWorker) Timeout(*river.Job[FeedRefreshArgs]) time.Duration {
	return 10 * time.Minute
}

// Work refreshes the feed. A refused update (drop guard) is recorded and not
// retried; fetch and parse failures are recorded and retried.
func (w *FeedRefreshWorker) Work(ctx context.Context, job *river.Job[FeedRefreshArgs]) error {
	run, err := RefreshFeed(ctx, w.deps, job.Args.Name, job.Args.Force)
	w.deps.Metrics.feedRun(job.Args.Name, run.Status)
	switch {
	case errors.Is(err, store.ErrDropGuard):
		w.deps.Logger.WarnContext(ctx, "Refused a feed refresh.", "feed", job.Args.Name, "error", err)
		return nil
	case errors.Is(err, store.ErrNotFound):
		w.deps.Logger.InfoContext(ctx, "Feed is gone; nothing to refresh.", "feed", job.Args.Name)
		return nil
	case err != nil:
		return err
	}
	if run.Status == store.RunOK {
		w.deps.Metrics.Observed(ObservedFeed, int(run.Entries))
	}
	w.deps.Logger.InfoContext(ctx, "Refreshed a feed.", "feed", run.Feed, "status", run.Status,
		"entries", run.Entries, "added", run.Added, "removed", run.Removed, "rejected", run.Rejected)
	return nil
}

// RefreshFeed fetches, parses and applies feed name once and returns the run
// it recorded. Failures are recorded as failed runs before they are returned.
func RefreshFeed(ctx context.Context, d Deps, name string, force bool) (store.FeedRun, error) {
	now := d.now()
	f, err := d.Store.FeedByName(ctx, name)
	if err != nil {
		return store.FeedRun{}, fmt.Errorf("worker: refresh feed %s: %w", name, err)
	}
	fail := func(err error) (store.FeedRun, error) {
		err = fmt.Errorf("worker: refresh feed %s: %w", name, err)
		run := store.FeedRun{Feed: name, StartedAt: now, FinishedAt: d.now(), Status: store.RunFailed, Forced: force, Error: err.Error()}
		if _, rerr := d.Store.RecordFeedRun(context.WithoutCancel(ctx), run); rerr != nil {
			return run, errors.Join(err, rerr)
		}
		return run, err
	}
	opts, err := ParserOptions(f)
	if err != nil {
		return fail(err)
	}
	maxBytes := d.FeedMaxBytes
	if maxBytes == 0 {
		maxBytes = DefaultFeedMaxBytes
	}
	fetcher := d.Fetcher
	if fetcher == nil {
		fetcher = feed.NewFetcher(feed.FetchPolicy{})
	}
	body, etag, lastMod, notModified, err := fetcher.Fetch(ctx, f.URL, f.ETag, f.LastModified, maxBytes)
	if err != nil {
		return fail(err)
	}
	if notModified {
		run := store.FeedRun{Feed: name, StartedAt: now, FinishedAt: d.now(), Status: store.RunNotModified, Forced: force, Entries: f.Entries}
		run, err = d.Store.RecordFeedRun(ctx, run)
		if err != nil {
			return run, fmt.Errorf("worker: refresh feed %s: %w", name, err)
		}
		return run, nil
	}
	res, err := feed.Parse(f.Format, opts, body)
	_ = body.Close() // read to the end or failed; nothing left to report
	if err != nil {
		return fail(err)
	}
	run, err := d.Store.ApplyFeed(ctx, name, store.FeedUpdate{Prefixes: res.Prefixes, ETag: etag, LastModified: lastMod,
		Force: force, StartedAt: now, Now: d.now(), Lines: int64(res.Lines), Rejected: int64(res.RejectedCount),
		Duplicates: int64(res.Duplicates)})
	if err != nil && !errors.Is(err, store.ErrDropGuard) && !errors.Is(err, store.ErrNotFound) {
		return fail(err)
	}
	return run, err
}

// FeedScheduleArgs enqueues a refresh of every enabled feed that is due.
type FeedScheduleArgs struct{}

// Kind names the job.
func (FeedScheduleArgs) Kind() string { return "feed_schedule" }

// FeedScheduleWorker runs FeedScheduleArgs.
type FeedScheduleWorker struct {
	river.WorkerDefaults[FeedScheduleArgs]
	deps Deps
}

// Work enqueues the due feeds; uniqueness drops those already queued.
func (w *FeedScheduleWorker) Work(ctx context.Context, _ *river.Job[FeedScheduleArgs]) error {
	due, err := w.deps.Store.DueFeeds(ctx, w.deps.now())
	if err != nil {
		return fmt.Errorf("worker: feed schedule: %w", err)
	}
	if len(due) == 0 {
		return nil
	}
	client, err := river.ClientFromContextSafely[pgxTx](ctx)
	if err != nil {
		return fmt.Errorf("worker: feed schedule: %w", err)
	}
	params := make([]river.InsertManyParams, len(due))
	for i, name := range due {
		params[i] = river.InsertManyParams{Args: FeedRefreshArgs{Name: name}}
	}
	if _, err := client.InsertMany(ctx, params); err != nil {
		return fmt.Errorf("worker: feed schedule: enqueue: %w", err)
	}
	w.deps.Logger.DebugContext(ctx, "Enqueued due feeds.", "feeds", due)
	return nil
}
