package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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
		return failRun(ctx, d, store.FeedRun{Feed: name, StartedAt: now, Forced: force}, err)
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
	rejected := rejectedLines(res.Rejected)
	if len(res.Prefixes) == 0 && res.RejectedCount > 0 {
		// Applying would empty the feed for a body that is plainly not
		// what it should be (wrong format, truncated, an error page).
		return failRun(ctx, d, store.FeedRun{Feed: name, StartedAt: now, Forced: force, Lines: int64(res.Lines),
			Rejected: int64(res.RejectedCount), Duplicates: int64(res.Duplicates), RejectedLines: rejected},
			noLineAccepted(res.RejectedCount, rejected))
	}
	run, err := d.Store.ApplyFeed(ctx, name, store.FeedUpdate{Prefixes: res.Prefixes, ETag: etag, LastModified: lastMod,
		Force: force, StartedAt: now, Now: d.now(), Lines: int64(res.Lines), Rejected: int64(res.RejectedCount),
		Duplicates: int64(res.Duplicates), RejectedLines: rejected})
	if err != nil && !errors.Is(err, store.ErrDropGuard) && !errors.Is(err, store.ErrNotFound) {
		return fail(err)
	}
	return run, err
}

// failRun records run as failed with err (prefixed with the operation) and
// returns them.
func failRun(ctx context.Context, d Deps, run store.FeedRun, err error) (store.FeedRun, error) {
	err = fmt.Errorf("worker: refresh feed %s: %w", run.Feed, err)
	run.Status, run.FinishedAt, run.Error = store.RunFailed, d.now(), err.Error()
	if _, rerr := d.Store.RecordFeedRun(context.WithoutCancel(ctx), run); rerr != nil {
		return run, errors.Join(err, rerr)
	}
	return run, err
}

// ErrNoLineAccepted marks a refresh whose body had rejected lines and no
// accepted one; nothing was applied.
var ErrNoLineAccepted = errors.New("no line accepted")

// noLineAccepted is the error of a run that rejected every line: the count
// and the first three reasons, e.g. `no line accepted: 7 rejected; line 1:
// "x" is not an address or prefix; line 2: ...`.
func noLineAccepted(count int, first []store.RejectedLine) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rejected", count)
	for i, r := range first {
		if i == 3 {
			b.WriteString("; ...")
			break
		}
		fmt.Fprintf(&b, "; line %d: %s", r.Line, r.Reason)
	}
	return fmt.Errorf("%w: %s", ErrNoLineAccepted, b.String())
}

// maxRejectedText bounds the text kept of one rejected line, in bytes.
const maxRejectedText = 200

// rejectedLines converts the parser's rejected lines for storage: text cut
// to maxRejectedText bytes on a character boundary (marked with "…"),
// invalid UTF-8 and NUL (which jsonb refuses) replaced by U+FFFD.
func rejectedLines(in []feed.Rejected) []store.RejectedLine {
	out := make([]store.RejectedLine, 0, min(len(in), store.MaxRejectedLines))
	for _, r := range in[:min(len(in), store.MaxRejectedLines)] {
		out = append(out, store.RejectedLine{Line: int64(r.Line), Text: cleanText(r.Text, maxRejectedText), Reason: cleanText(r.Reason, 4*maxRejectedText)})
	}
	return out
}

func cleanText(s string, limit int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
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
