package worker

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/geo"
)

// GeoSyncArgs loads the geo databases into geo_networks when their files
// changed, appeared or went away since the last load (and once at start).
//
// Ingest does not look geo data up inline: ruleset conditions and the IP view
// read geo_networks through its GiST index at query time, so a stored prefix
// resolves country, continent, ASN and organisation as soon as the table
// holds its network, and a new database release re-labels everything at once.
type GeoSyncArgs struct{}

// Kind names the job.
func (GeoSyncArgs) Kind() string { return "geo_sync" }

// InsertOpts keeps at most one sync queued.
func (GeoSyncArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: uniquePending()}
}

// GeoSyncWorker runs GeoSyncArgs.
type GeoSyncWorker struct {
	river.WorkerDefaults[GeoSyncArgs]
	deps Deps
	// loaded is set once this process has filled the table: the watcher opens
	// the files before the first job, so "unchanged" then still needs a load
	// (the files may have changed while no muninn was running).
	loaded atomic.Bool
}

// Timeout allows for a full database (a few million networks).
func (w *GeoSyncWorker) Timeout(*river.Job[GeoSyncArgs]) time.Duration { return 15 * time.Minute }

// Work reloads the files when they changed and, if so (or on the first run
// of this process), replaces geo_networks.
func (w *GeoSyncWorker) Work(ctx context.Context, _ *river.Job[GeoSyncArgs]) error {
	if w.deps.Geo == nil {
		return nil
	}
	changed, err := w.deps.Geo.Reload()
	if err != nil {
		return fmt.Errorf("worker: geo sync: %w", err)
	}
	if !changed && w.loaded.Load() {
		return nil
	}
	paths := w.deps.Geo.Paths()
	if paths.Empty() && !w.loaded.Swap(true) {
		// No files since this process started: keep what an earlier run
		// (or another worker process with the files) loaded rather than
		// emptying the table; files that go away later do empty it.
		w.warnMissing(ctx, paths)
		return nil
	}
	n, err := SyncGeo(ctx, w.deps.Store, w.deps.Geo.Current())
	if err != nil {
		return err
	}
	w.loaded.Store(true)
	w.deps.Logger.InfoContext(ctx, "Loaded geo networks.", "networks", n, "country", paths.Country,
		"city", paths.City, "asn", paths.ASN, "asn_csv", paths.ASNCSV)
	w.warnMissing(ctx, paths)
	return nil
}

// warnMissing logs one warning naming the geo data paths lacks and what
// that disables, if any.
func (w *GeoSyncWorker) warnMissing(ctx context.Context, paths geo.Paths) {
	if missing := paths.Missing(); missing != "" {
		w.deps.Logger.WarnContext(ctx, "Geo data is incomplete: "+missing+"; `make geodata` fetches the free databases, and files added to the directory are loaded without a restart.")
	}
}

// SyncGeo replaces geo_networks with every network of db.
func SyncGeo(ctx context.Context, st *store.Store, db *geo.DB) (int64, error) {
	n, err := st.ReplaceGeoNetworks(ctx, "geo", geoNetworks(db))
	if err != nil {
		return 0, fmt.Errorf("worker: geo sync: %w", err)
	}
	return n, nil
}

var errStopIter = errors.New("stop")

// geoNetworks adapts db.Networks' callback to an iterator for the COPY.
func geoNetworks(db *geo.DB) iter.Seq2[store.GeoNetwork, error] {
	return func(yield func(store.GeoNetwork, error) bool) {
		err := db.Networks(func(g geo.GeoNet) error {
			if !yield(store.GeoNetwork{Network: g.Prefix, Country: g.Country, Continent: g.Continent,
				ASN: int64(g.ASN), ASOrg: g.Org}, nil) {
				return errStopIter
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopIter) {
			yield(store.GeoNetwork{}, err)
		}
	}
}
