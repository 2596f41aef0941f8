package worker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/rdap"
	"github.com/muninn/muninn/worker/source/rdns"
)

// uniquePending makes a job unique by its args until it finishes.
func uniquePending() river.UniqueOpts {
	return river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled}}
}

// EnrichScanArgs finds stored single addresses lacking RDAP or PTR data and
// enqueues their lookups. Ingest never waits for enrichment: it stores
// prefixes, and this periodic scan picks them up.
type EnrichScanArgs struct{}

// Kind names the job.
func (EnrichScanArgs) Kind() string { return "enrich_scan" }

// InsertOpts keeps at most one scan queued.
func (EnrichScanArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 1, UniqueOpts: uniquePending()}
}

// EnrichScanWorker runs EnrichScanArgs.
type EnrichScanWorker struct {
	river.WorkerDefaults[EnrichScanArgs]
	deps Deps
}

// Work enqueues up to EnrichBatch lookups of each enabled kind.
func (w *EnrichScanWorker) Work(ctx context.Context, _ *river.Job[EnrichScanArgs]) error {
	client, err := river.ClientFromContextSafely[pgxTx](ctx)
	if err != nil {
		return fmt.Errorf("worker: enrich scan: %w", err)
	}
	return EnqueueEnrichment(ctx, w.deps, client)
}

// EnqueueEnrichment enqueues RDAP and PTR lookups for addresses lacking them.
func EnqueueEnrichment(ctx context.Context, d Deps, client *river.Client[pgxTx]) error {
	since := d.now().Add(-orDefault(d.EnrichRetry, 24*time.Hour))
	batch := orDefault(d.EnrichBatch, 500)
	var params []river.InsertManyParams
	if d.RDAP != nil {
		addrs, err := d.Store.AddrsLacking(ctx, store.EnrichRDAP, since, batch)
		if err != nil {
			return fmt.Errorf("worker: enrich scan: %w", err)
		}
		for _, a := range addrs {
			params = append(params, river.InsertManyParams{Args: RDAPLookupArgs{Addr: a}})
		}
	}
	if d.RDNS != nil {
		addrs, err := d.Store.AddrsLacking(ctx, store.EnrichPTR, since, batch)
		if err != nil {
			return fmt.Errorf("worker: enrich scan: %w", err)
		}
		for _, a := range addrs {
			params = append(params, river.InsertManyParams{Args: PTRLookupArgs{Addr: a}})
		}
	}
	if len(params) == 0 {
		return nil
	}
	if _, err := client.InsertMany(ctx, params); err != nil {
		return fmt.Errorf("worker: enrich scan: enqueue: %w", err)
	}
	return nil
}

// RDAPLookupArgs asks the registry (RDAP, whois fallback) who holds Addr.
type RDAPLookupArgs struct {
	Addr netip.Addr `json:"addr"`
}

// Kind names the job.
func (RDAPLookupArgs) Kind() string { return "rdap_lookup" }

// InsertOpts puts the lookup on the enrich queue, unique per address.
func (RDAPLookupArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueEnrich, MaxAttempts: 3, UniqueOpts: uniquePending()}
}

// RDAPLookupWorker runs RDAPLookupArgs.
type RDAPLookupWorker struct {
	river.WorkerDefaults[RDAPLookupArgs]
	deps Deps
}

// Work looks the address up unless a stored network covers it already (an
// earlier lookup of a neighbour), and stores every network the answer names,
// so one lookup serves the whole network. The client's per-registry rate
// limit paces the queue.
func (w *RDAPLookupWorker) Work(ctx context.Context, job *river.Job[RDAPLookupArgs]) error {
	if w.deps.RDAP == nil {
		return nil
	}
	addr := job.Args.Addr
	covered, err := w.deps.Store.RDAPCovers(ctx, addr)
	if err != nil {
		return fmt.Errorf("worker: rdap %s: %w", addr, err)
	}
	if covered {
		return nil
	}
	n, lerr := w.deps.RDAP.Lookup(ctx, addr)
	now := w.deps.now()
	if lerr != nil {
		if err := w.deps.Store.RecordEnrichAttempt(ctx, store.EnrichRDAP, addr, now, lerr.Error()); err != nil {
			return fmt.Errorf("worker: rdap %s: %w", addr, err)
		}
		if errors.Is(lerr, rdap.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("worker: rdap %s: %w", addr, lerr)
	}
	for _, p := range n.Prefixes {
		err := w.deps.Store.PutRDAPNetwork(ctx, store.RDAPNetwork{Network: p, Handle: n.Handle, Name: n.Name, Org: n.Org,
			Country: n.Country, AbuseEmail: n.AbuseEmail, Registry: n.Registry, Raw: n.Raw, FetchedAt: now})
		if err != nil {
			return fmt.Errorf("worker: rdap %s: %w", addr, err)
		}
	}
	if err := w.deps.Store.RecordEnrichAttempt(ctx, store.EnrichRDAP, addr, now, ""); err != nil {
		return fmt.Errorf("worker: rdap %s: %w", addr, err)
	}
	return nil
}

// PTRLookupArgs asks the resolver for Addr's PTR names.
type PTRLookupArgs struct {
	Addr netip.Addr `json:"addr"`
}

// Kind names the job.
func (PTRLookupArgs) Kind() string { return "ptr_lookup" }

// InsertOpts puts the lookup on the enrich queue, unique per address.
func (PTRLookupArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueEnrich, MaxAttempts: 3, UniqueOpts: uniquePending()}
}

// PTRLookupWorker runs PTRLookupArgs.
type PTRLookupWorker struct {
	river.WorkerDefaults[PTRLookupArgs]
	deps Deps
}

// Work stores the names (source "ptr"); "no PTR record" is an answer, kept as
// an attempt so the address is not asked again before EnrichRetry.
func (w *PTRLookupWorker) Work(ctx context.Context, job *river.Job[PTRLookupArgs]) error {
	if w.deps.RDNS == nil {
		return nil
	}
	addr := job.Args.Addr
	names, lerr := w.deps.RDNS.Lookup(ctx, addr)
	now := w.deps.now()
	errText := ""
	if lerr != nil {
		errText = lerr.Error()
	}
	if err := w.deps.Store.RecordEnrichAttempt(ctx, store.EnrichPTR, addr, now, errText); err != nil {
		return fmt.Errorf("worker: ptr %s: %w", addr, err)
	}
	if lerr != nil {
		if errors.Is(lerr, rdns.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("worker: ptr %s: %w", addr, lerr)
	}
	if err := w.deps.Store.PutHostnames(ctx, addr, "ptr", names, now); err != nil {
		return fmt.Errorf("worker: ptr %s: %w", addr, err)
	}
	return nil
}
