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

	"github.com/muninn/muninn/server/store"
)

// Deps is what the workers need.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	Now    func() time.Time
	// SightingRetention and ExpiredRetention drive the prune job.
	SightingRetention time.Duration
	ExpiredRetention  time.Duration
	// MaxWorkers bounds the default queue's concurrency.
	MaxWorkers int
}

// PruneArgs prunes old sighting events and long-expired assertions.
type PruneArgs struct{}

// Kind names the job.
func (PruneArgs) Kind() string { return "prune" }

// InsertOpts makes the prune job unique while one is pending.
func (PruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: time.Hour}}
}

// PruneWorker runs PruneArgs.
type PruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	deps Deps
}

// Work prunes.
func (w *PruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	s, a, err := w.deps.Store.Prune(ctx, w.deps.Now(), w.deps.SightingRetention, w.deps.ExpiredRetention)
	if err != nil {
		return fmt.Errorf("worker: prune: %w", err)
	}
	w.deps.Logger.InfoContext(ctx, "Pruned old data.", "sightings", s, "assertions", a)
	return nil
}

// NewClient returns a River client with every muninn worker registered. With
// work false the client only inserts jobs (a serve that leaves work to `muninn
// worker` processes).
func NewClient(d Deps, work bool) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &PruneWorker{deps: d})
	cfg := &river.Config{Workers: workers, Logger: d.Logger}
	if work {
		if d.MaxWorkers <= 0 {
			d.MaxWorkers = 10
		}
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: d.MaxWorkers}}
		cfg.PeriodicJobs = []*river.PeriodicJob{
			river.NewPeriodicJob(river.PeriodicInterval(time.Hour), func() (river.JobArgs, *river.InsertOpts) {
				return PruneArgs{}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true}),
		}
	}
	c, err := river.NewClient(riverpgxv5.New(d.Store.Pool()), cfg)
	if err != nil {
		return nil, fmt.Errorf("worker: river client: %w", err)
	}
	return c, nil
}
