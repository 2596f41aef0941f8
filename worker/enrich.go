package worker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/muninn/muninn/server/guard"
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

// specialUse holds the special-use ranges (documentation included) whose
// addresses are not looked up unless Deps.EnrichSpecial is set.
var specialUse = guard.New(guard.SpecialUse())

// skipSpecial reports why addr is not to be looked up, or "" when it is.
func (d Deps) skipSpecial(addr netip.Addr) string {
	if d.EnrichSpecial {
		return ""
	}
	reason, ok := specialUse.Reason(addr)
	if !ok {
		return ""
	}
	return "not looked up: " + reason + " (MUNINN_ENRICH_SPECIAL=on allows it)"
}

// EnqueueEnrichment enqueues RDAP and PTR lookups for addresses lacking them.
// Special-use addresses (see Deps.EnrichSpecial) are recorded as skipped
// instead, which also keeps them out of the next scans until EnrichRetry.
func EnqueueEnrichment(ctx context.Context, d Deps, client *river.Client[pgxTx]) error {
	since := d.now().Add(-orDefault(d.EnrichRetry, 24*time.Hour))
	batch := orDefault(d.EnrichBatch, 500)
	var params []river.InsertManyParams
	scan := func(kind string, args func(netip.Addr) river.JobArgs) error {
		addrs, err := d.Store.AddrsLacking(ctx, kind, since, batch)
		if err != nil {
			return fmt.Errorf("worker: enrich scan: %w", err)
		}
		for _, a := range addrs {
			if why := d.skipSpecial(a); why != "" {
				if err := d.Store.RecordEnrichAttempt(ctx, kind, a, d.now(), store.EnrichSkipped, why); err != nil {
					return fmt.Errorf("worker: enrich scan: %w", err)
				}
				continue
			}
			params = append(params, river.InsertManyParams{Args: args(a)})
		}
		return nil
	}
	if d.RDAP != nil {
		if err := scan(store.EnrichRDAP, func(a netip.Addr) river.JobArgs { return RDAPLookupArgs{Addr: a} }); err != nil {
			return err
		}
	}
	if d.RDNS != nil {
		if err := scan(store.EnrichPTR, func(a netip.Addr) river.JobArgs { return PTRLookupArgs{Addr: a} }); err != nil {
			return err
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
	if why := w.deps.skipSpecial(addr); why != "" {
		return w.record(ctx, addr, store.EnrichSkipped, why)
	}
	covered, err := w.deps.Store.RDAPCovers(ctx, addr)
	if err != nil {
		return fmt.Errorf("worker: rdap %s: %w", addr, err)
	}
	if covered {
		return w.record(ctx, addr, store.EnrichOK, "")
	}
	n, lerr := w.deps.RDAP.Lookup(ctx, addr)
	now := w.deps.now()
	if lerr != nil {
		if errors.Is(lerr, rdap.ErrNotFound) {
			return w.record(ctx, addr, store.EnrichNotFound, lerr.Error())
		}
		if err := w.record(ctx, addr, store.EnrichError, lerr.Error()); err != nil {
			return err
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
	return w.record(ctx, addr, store.EnrichOK, "")
}

func (w *RDAPLookupWorker) record(ctx context.Context, addr netip.Addr, outcome, text string) error {
	if err := w.deps.Store.RecordEnrichAttempt(ctx, store.EnrichRDAP, addr, w.deps.now(), outcome, text); err != nil {
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
	if why := w.deps.skipSpecial(addr); why != "" {
		if err := w.deps.Store.RecordEnrichAttempt(ctx, store.EnrichPTR, addr, w.deps.now(), store.EnrichSkipped, why); err != nil {
			return fmt.Errorf("worker: ptr %s: %w", addr, err)
		}
		return nil
	}
	names, lerr := w.deps.RDNS.Lookup(ctx, addr)
	now := w.deps.now()
	errText, outcome := "", store.EnrichOK
	switch {
	case errors.Is(lerr, rdns.ErrNotFound):
		errText, outcome = lerr.Error(), store.EnrichNotFound
	case lerr != nil:
		errText, outcome = lerr.Error(), store.EnrichError
	}
	if err := w.deps.Store.RecordEnrichAttempt(ctx, store.EnrichPTR, addr, now, outcome, errText); err != nil {
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
