// Package worker holds muninn's River jobs and workers. Register adds them to a
// River client; `muninn serve` runs them in-process by default and `muninn
// worker` runs them alone to scale out.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/feed"
	"github.com/muninn/muninn/worker/source/geo"
	"github.com/muninn/muninn/worker/source/rdap"
	"github.com/muninn/muninn/worker/source/rdns"
)

// pgxTx is the transaction type of muninn's River client.
type pgxTx = pgx.Tx

// QueueEnrich runs the rate-limited outside lookups (RDAP/whois, PTR) apart
// from the default queue, so a slow registry never delays a feed refresh.
const QueueEnrich = "enrich"

// Deps is what the workers need.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	Now    func() time.Time
	// SightingRetention and ExpiredRetention drive the prune job; zero (a
	// Deps built without them) keeps everything rather than pruning all.
	SightingRetention time.Duration
	ExpiredRetention  time.Duration
	// MaxWorkers bounds the default queue's concurrency.
	MaxWorkers int
	// EnrichWorkers bounds the enrich queue's concurrency (default 4).
	EnrichWorkers int

	// Fetcher fetches feeds; nil means one with the default policy (no
	// special-purpose destinations, no file:// feeds).
	Fetcher *feed.Fetcher
	// FeedMaxBytes bounds one feed body; 0 means DefaultFeedMaxBytes.
	FeedMaxBytes int64
	// FeedSchedulePeriod is how often due feeds are looked for (default 1m).
	FeedSchedulePeriod time.Duration

	// Geo, when set, is loaded into geo_networks at start and whenever its
	// files change, appear or go away (checked every GeoCheckPeriod, default
	// 1m: a check is a directory read and a few stats).
	Geo            *geo.Watcher
	GeoCheckPeriod time.Duration

	// RDAP and RDNS, when set, enrich stored host prefixes: a scan every
	// EnrichScanPeriod (default 1m) enqueues up to EnrichBatch (default 500)
	// lookups of each kind; failures are retried after EnrichRetry (24h).
	RDAP             *rdap.Client
	RDNS             *rdns.Resolver
	EnrichScanPeriod time.Duration
	EnrichBatch      int
	EnrichRetry      time.Duration
	// EnrichSpecial allows RDAP and PTR lookups of special-use, private and
	// documentation addresses (guard.SpecialUse); by default they are
	// recorded as skipped (MUNINN_ENRICH_SPECIAL).
	EnrichSpecial bool

	// FetchPollInterval is how often idle workers look for jobs besides
	// River's insert notifications (0: River's default, 1 s).
	FetchPollInterval time.Duration

	// Alerts, when set, runs alerting: matching events to rules, delivery,
	// the periodic checks and the pruning of old events.
	Alerts *AlertDeps

	// Metrics receives job and feed counters; nil records nothing.
	Metrics *Metrics
}

func (d Deps) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// PruneArgs prunes old sighting events, long-expired assertions and the
// prefixes left with nothing (store.Prune), hourly.
type PruneArgs struct{}

// Kind names the job.
func (PruneArgs) Kind() string { return "prune" }

// InsertOpts makes the prune job unique while one is pending.
func (PruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: time.Hour}}
}

// keepAll is retention d, or a century when d is not positive: an unset
// retention must never read as "keep nothing" (a test harness built without
// one deleted every sensor event at start).
func keepAll(d time.Duration) time.Duration {
	if d <= 0 {
		return 100 * 365 * 24 * time.Hour
	}
	return d
}

// PruneWorker runs PruneArgs.
type PruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	deps Deps
}

// Work prunes.
func (w *PruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	sightings, expired := keepAll(w.deps.SightingRetention), keepAll(w.deps.ExpiredRetention)
	s, a, p, err := w.deps.Store.Prune(ctx, w.deps.Now(), sightings, expired)
	if err != nil {
		return fmt.Errorf("worker: prune: %w", err)
	}
	lines, err := w.deps.Store.PruneSensorEvents(ctx, w.deps.Now().Add(-sightings))
	if err != nil {
		return fmt.Errorf("worker: prune: %w", err)
	}
	names, err := w.deps.Store.PrunePassiveDNS(ctx, w.deps.Now().Add(-w.deps.SightingRetention))
	if err != nil {
		return fmt.Errorf("worker: prune: %w", err)
	}
	w.deps.Logger.InfoContext(ctx, "Pruned old data.", "sightings", s, "assertions", a, "prefixes", p, "sensor_events", lines, "passive_dns", names)
	return nil
}

// NewClient returns a River client with every muninn worker registered. With
// work false the client only inserts jobs (a serve that leaves work to `muninn
// worker` processes).
func NewClient(d Deps, work bool) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &PruneWorker{deps: d})
	river.AddWorker(workers, &FeedRefreshWorker{deps: d})
	river.AddWorker(workers, &FeedScheduleWorker{deps: d})
	river.AddWorker(workers, &GeoSyncWorker{deps: d})
	river.AddWorker(workers, &EnrichScanWorker{deps: d})
	river.AddWorker(workers, &RDAPLookupWorker{deps: d})
	river.AddWorker(workers, &PTRLookupWorker{deps: d})
	alertPeriodic := alertJobs(d, workers, work)
	cfg := &river.Config{Workers: workers, Logger: d.Logger,
		Middleware: []rivertype.Middleware{d.Metrics.middleware()}}
	if work {
		if d.MaxWorkers <= 0 {
			d.MaxWorkers = 10
		}
		cfg.Queues = map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: d.MaxWorkers},
			QueueEnrich:        {MaxWorkers: orDefault(d.EnrichWorkers, 4)},
		}
		every := func(p time.Duration, args river.JobArgs) *river.PeriodicJob {
			return river.NewPeriodicJob(river.PeriodicInterval(p), func() (river.JobArgs, *river.InsertOpts) {
				return args, nil
			}, &river.PeriodicJobOpts{RunOnStart: true})
		}
		cfg.PeriodicJobs = []*river.PeriodicJob{
			every(time.Hour, PruneArgs{}),
			every(orDefault(d.FeedSchedulePeriod, time.Minute), FeedScheduleArgs{}),
		}
		if d.Geo != nil {
			cfg.PeriodicJobs = append(cfg.PeriodicJobs, every(orDefault(d.GeoCheckPeriod, time.Minute), GeoSyncArgs{}))
		}
		if d.RDAP != nil || d.RDNS != nil {
			cfg.PeriodicJobs = append(cfg.PeriodicJobs, every(orDefault(d.EnrichScanPeriod, time.Minute), EnrichScanArgs{}))
		}
		cfg.PeriodicJobs = append(cfg.PeriodicJobs, alertPeriodic...)
		if d.FetchPollInterval > 0 {
			cfg.FetchPollInterval = d.FetchPollInterval
			cfg.FetchCooldown = min(d.FetchPollInterval, 100*time.Millisecond)
		}
	}
	c, err := river.NewClient(riverpgxv5.New(d.Store.Pool()), cfg)
	if err != nil {
		return nil, fmt.Errorf("worker: river client: %w", err)
	}
	return c, nil
}
