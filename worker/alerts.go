package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/store"
)

// AlertDeps configure alerting (issue 16); a nil Deps.Alerts runs none of
// its jobs.
type AlertDeps struct {
	// Sealer opens the sealed channel URLs.
	Sealer *alert.Sealer
	// Facts looks up an event address's facts through the resolver (the
	// index, or the store in a process without one: alert.FromIndex); nil:
	// messages and filters know no facts.
	Facts alert.FactsFunc
	// Sync, when set, brings Facts up to date with everything committed
	// (muninn serve: the index catches up). The matcher calls it after
	// merging the observation log, before it reads the facts of a batch of
	// events, so an event stored with its sighting (a honeypot hit) reads the
	// sighting's own tag.
	Sync func(context.Context) error
	// BaseURL starts the address links in messages (MUNINN_BASE_URL).
	BaseURL string
	// Period is how often pending events are matched and due groups sent
	// (default 1 s).
	Period time.Duration
	// SendTimeout bounds one delivery attempt (default 10 s).
	SendTimeout time.Duration
	// RetryBase is the first retry delay of a failed delivery, doubled at
	// each attempt up to an hour (default 10 s); MaxAttempts bounds the
	// attempts (default 8).
	RetryBase   time.Duration
	MaxAttempts int
	// CheckPeriod is how often the periodic checks run (default 1 min).
	CheckPeriod time.Duration
	// SilentAfter: a bouncer not seen for this long becomes a
	// bouncer.silent event (default 10 min); LagAfter: a bouncer not
	// confirming the current version of a ruleset for this long becomes a
	// bouncer.lagging event (default 15 min).
	SilentAfter time.Duration
	LagAfter    time.Duration
	// EnrichWindow: an enrichment source whose last EnrichWindow attempts
	// all failed becomes an enrich.failing event (default 20).
	EnrichWindow int
	// EventRetention is how long events are kept (default 30 days).
	EventRetention time.Duration
}

// AlertMatchArgs matches the pending events against the alert rules and
// sends the due groups as delivery jobs (periodic; one step at a time across
// all processes: store.InAlertTx).
type AlertMatchArgs struct{}

// Kind names the job.
func (AlertMatchArgs) Kind() string { return "alert_match" }

// AlertMatchWorker runs AlertMatchArgs.
type AlertMatchWorker struct {
	river.WorkerDefaults[AlertMatchArgs]
	deps Deps
}

// Work matches until no pending event is left.
func (w *AlertMatchWorker) Work(ctx context.Context, _ *river.Job[AlertMatchArgs]) error {
	rc, err := river.ClientFromContextSafely[pgxTx](ctx)
	if err != nil {
		return fmt.Errorf("worker: alert match: %w", err)
	}
	for {
		more, err := w.step(ctx, rc)
		if err != nil {
			return fmt.Errorf("worker: alert match: %w", err)
		}
		if !more {
			return nil
		}
	}
}

const alertBatch = 1000

// step matches one batch of pending events and sends the due groups.
func (w *AlertMatchWorker) step(ctx context.Context, rc *river.Client[pgxTx]) (bool, error) {
	a := w.deps.Alerts
	more := false
	err := w.deps.Store.InAlertTx(ctx, func(tx *store.AlertTx) error {
		now := w.deps.now()
		evs, err := tx.TakePending(ctx, alertBatch)
		if err != nil {
			return err
		}
		more = len(evs) == alertBatch
		if len(evs) > 0 {
			if err := w.deps.Store.Flush(ctx); err != nil {
				return err
			}
			if a.Sync != nil {
				if err := a.Sync(ctx); err != nil {
					return err
				}
			}
		}
		rules, err := tx.EnabledRules(ctx)
		if err != nil {
			return err
		}
		groups, err := tx.Groups(ctx)
		if err != nil {
			return err
		}
		changed := map[int64]bool{}
		for _, ev := range evs {
			var f alert.Facts
			looked := false
			for _, r := range rules {
				if r.Kind != ev.Kind {
					continue
				}
				if !looked {
					if p, ok := alert.Target(ev); ok && a.Facts != nil {
						if f, err = a.Facts(ctx, p); err != nil {
							return err
						}
					}
					looked = true
				}
				if !alert.Matches(r, ev, f) {
					continue
				}
				g, ok := groups[r.ID]
				if !ok {
					g = store.AlertGroup{RuleID: r.ID, FirstAt: now}
				}
				g.EventIDs = append(g.EventIDs, ev.ID)
				groups[r.ID], changed[r.ID] = g, true
			}
		}
		var jobs []river.InsertManyParams
		for _, r := range rules {
			g, ok := groups[r.ID]
			if !ok {
				continue
			}
			full := r.GroupThreshold > 0 && len(g.EventIDs) >= r.GroupThreshold
			if !full && now.Before(g.FirstAt.Add(r.GroupWait)) {
				continue
			}
			if quiet, _ := alert.Quiet(r, now); quiet {
				continue // held until the quiet hours end
			}
			delete(changed, r.ID)
			if err := tx.CloseGroup(ctx, r.ID); err != nil {
				return err
			}
			js, err := w.send(ctx, tx, r, g, now)
			if err != nil {
				return err
			}
			jobs = append(jobs, js...)
		}
		for id := range changed {
			if err := tx.SaveGroup(ctx, groups[id]); err != nil {
				return err
			}
		}
		if len(jobs) > 0 {
			if _, err := rc.InsertManyTx(ctx, tx.Tx(), jobs); err != nil {
				return fmt.Errorf("insert deliveries: %w", err)
			}
		}
		return nil
	})
	return more, err
}

// send turns group g of rule r into one delivery job per channel, unless
// it holds fewer than the rule's minimum count or the rule is over its rate
// (then an alert.suppressed event says so).
func (w *AlertMatchWorker) send(ctx context.Context, tx *store.AlertTx, r store.AlertRule, g store.AlertGroup, now time.Time) ([]river.InsertManyParams, error) {
	a := w.deps.Alerts
	evs, err := tx.Events(ctx, g.EventIDs)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	if r.Filters.MinCount > 1 && len(evs) < r.Filters.MinCount {
		return nil, nil
	}
	if r.RatePerHour > 0 {
		n, err := tx.SentSince(ctx, r.ID, now.Add(-time.Hour))
		if err != nil {
			return nil, err
		}
		if n >= r.RatePerHour {
			return nil, tx.AppendEvents(ctx, []store.Event{{At: now, Kind: store.EventAlertSuppressed, SubjectType: "rule", Subject: r.Name,
				Details: map[string]any{"events": len(evs), "rate_per_hour": r.RatePerHour}}})
		}
	}
	if err := tx.RecordSent(ctx, r.ID, now); err != nil {
		return nil, err
	}
	m, err := alert.Compose(ctx, evs, a.Facts, a.BaseURL)
	if err != nil {
		return nil, err
	}
	channels := r.Channels
	if len(channels) == 0 {
		all, err := w.deps.Store.AlertChannels(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range all {
			channels = append(channels, c.Name)
		}
	}
	jobs := make([]river.InsertManyParams, 0, len(channels))
	for _, c := range channels {
		jobs = append(jobs, river.InsertManyParams{Args: AlertDeliverArgs{Channel: c, Rule: r.Name, Message: m},
			InsertOpts: &river.InsertOpts{MaxAttempts: orDefault(a.MaxAttempts, 8)}})
	}
	return jobs, nil
}

// AlertDeliverArgs delivers one message to one channel.
type AlertDeliverArgs struct {
	Channel string        `json:"channel"`
	Rule    string        `json:"rule"`
	Message alert.Message `json:"message"`
}

// Kind names the job.
func (AlertDeliverArgs) Kind() string { return "alert_deliver" }

// AlertDeliverWorker runs AlertDeliverArgs: a failed attempt is retried
// with a doubling delay; the last failed attempt becomes an
// alert.delivery_failed event (which no rule matches).
type AlertDeliverWorker struct {
	river.WorkerDefaults[AlertDeliverArgs]
	deps Deps
}

// NextRetry doubles RetryBase at each attempt, up to an hour.
func (w *AlertDeliverWorker) NextRetry(job *river.Job[AlertDeliverArgs]) time.Time {
	d := orDefault(w.deps.Alerts.RetryBase, 10*time.Second)
	for i := 1; i < job.Attempt && d < time.Hour; i++ {
		d *= 2
	}
	return time.Now().Add(min(d, time.Hour))
}

// Timeout leaves room for the send timeout.
func (w *AlertDeliverWorker) Timeout(*river.Job[AlertDeliverArgs]) time.Duration {
	return orDefault(w.deps.Alerts.SendTimeout, 10*time.Second) + 5*time.Second
}

// Work sends the message.
func (w *AlertDeliverWorker) Work(ctx context.Context, job *river.Job[AlertDeliverArgs]) error {
	a := w.deps.Alerts
	ch, err := w.deps.Store.AlertChannelByName(ctx, job.Args.Channel)
	if errors.Is(err, store.ErrNotFound) {
		w.deps.Logger.WarnContext(ctx, "An alert names a channel that no longer exists; not sent.", "channel", job.Args.Channel, "rule", job.Args.Rule)
		return river.JobCancel(fmt.Errorf("worker: alert channel %s is gone", job.Args.Channel))
	}
	if err != nil {
		return fmt.Errorf("worker: alert deliver: %w", err)
	}
	raw, err := a.Sealer.Open(ch.URLSealed)
	if err == nil {
		err = alert.Send(raw, job.Args.Message, orDefault(a.SendTimeout, 10*time.Second))
	}
	if err == nil {
		return nil
	}
	w.deps.Logger.WarnContext(ctx, "An alert could not be delivered.", "channel", ch.Name, "rule", job.Args.Rule,
		"attempt", job.Attempt, "max_attempts", job.MaxAttempts, "error", err)
	if job.Attempt >= job.MaxAttempts {
		if aerr := w.deps.Store.AppendEvents(ctx, []store.Event{{Kind: store.EventAlertDeliveryFailed, SubjectType: "channel", Subject: ch.Name,
			Details: map[string]any{"rule": job.Args.Rule, "title": job.Args.Message.Title, "error": err.Error(), "attempts": job.Attempt}}}); aerr != nil {
			return errors.Join(err, aerr)
		}
	}
	return err
}

// AlertCheckArgs runs the periodic checks that become events: bouncers
// silent or lagging, enrichment sources failing.
type AlertCheckArgs struct{}

// Kind names the job.
func (AlertCheckArgs) Kind() string { return "alert_check" }

// AlertCheckWorker runs AlertCheckArgs.
type AlertCheckWorker struct {
	river.WorkerDefaults[AlertCheckArgs]
	deps Deps
}

// Work checks. A condition becomes one event when it starts; it must end
// (store.Condition) before it is reported again.
func (w *AlertCheckWorker) Work(ctx context.Context, _ *river.Job[AlertCheckArgs]) error {
	a := w.deps.Alerts
	now := w.deps.now()
	bs, err := w.deps.Store.Bouncers(ctx)
	if err != nil {
		return fmt.Errorf("worker: alert check: %w", err)
	}
	silentAfter, lagAfter := orDefault(a.SilentAfter, 10*time.Minute), orDefault(a.LagAfter, 15*time.Minute)
	cond := func(key string, holds bool, ev store.Event) error {
		ev.At = now
		_, err := w.deps.Store.Condition(ctx, key, holds, now, ev)
		return err
	}
	for _, b := range bs {
		seen := b.CreatedAt
		if b.LastSeen != nil {
			seen = *b.LastSeen
		}
		silent := now.Sub(seen) >= silentAfter
		details := map[string]any{"minutes": int(now.Sub(seen).Minutes())}
		if b.LastSeen != nil {
			details["last_seen"] = b.LastSeen.UTC().Format(time.RFC3339)
		}
		if err := cond("bouncer.silent:"+b.Name, silent, store.Event{Kind: store.EventBouncerSilent, SubjectType: "bouncer", Subject: b.Name, Details: details}); err != nil {
			return fmt.Errorf("worker: alert check: %w", err)
		}
		for _, rs := range b.Rulesets {
			lag := b.Lag(rs, now)
			if err := cond("bouncer.lagging:"+b.Name+":"+rs, !silent && lag >= lagAfter, store.Event{Kind: store.EventBouncerLagging, SubjectType: "bouncer", Subject: b.Name,
				Details: map[string]any{"ruleset": rs, "minutes": int(lag.Minutes())}}); err != nil {
				return fmt.Errorf("worker: alert check: %w", err)
			}
		}
	}
	n := orDefault(a.EnrichWindow, 20)
	failing, err := w.deps.Store.EnrichFailing(ctx, n)
	if err != nil {
		return fmt.Errorf("worker: alert check: %w", err)
	}
	for _, kind := range []string{"rdap", "ptr"} {
		if err := cond("enrich.failing:"+kind, failing[kind] >= n, store.Event{Kind: store.EventEnrichFailing, SubjectType: "source", Subject: kind,
			Details: map[string]any{"failed": failing[kind], "of": n}}); err != nil {
			return fmt.Errorf("worker: alert check: %w", err)
		}
	}
	return nil
}

// EventPruneArgs deletes the events older than the retention, hourly.
type EventPruneArgs struct{}

// Kind names the job.
func (EventPruneArgs) Kind() string { return "event_prune" }

// EventPruneWorker runs EventPruneArgs.
type EventPruneWorker struct {
	river.WorkerDefaults[EventPruneArgs]
	deps Deps
}

// Work prunes.
func (w *EventPruneWorker) Work(ctx context.Context, _ *river.Job[EventPruneArgs]) error {
	n, err := w.deps.Store.PruneEvents(ctx, w.deps.now(), orDefault(w.deps.Alerts.EventRetention, 30*24*time.Hour))
	if err != nil {
		return fmt.Errorf("worker: prune events: %w", err)
	}
	if n > 0 {
		w.deps.Logger.InfoContext(ctx, "Pruned old events.", "events", n)
	}
	return nil
}

// alertJobs registers the alert workers and returns their periodic jobs.
func alertJobs(d Deps, workers *river.Workers, work bool) []*river.PeriodicJob {
	if d.Alerts == nil {
		return nil
	}
	river.AddWorker(workers, &AlertMatchWorker{deps: d})
	river.AddWorker(workers, &AlertDeliverWorker{deps: d})
	river.AddWorker(workers, &AlertCheckWorker{deps: d})
	river.AddWorker(workers, &EventPruneWorker{deps: d})
	if !work {
		return nil
	}
	every := func(p time.Duration, args river.JobArgs) *river.PeriodicJob {
		return river.NewPeriodicJob(river.PeriodicInterval(p), func() (river.JobArgs, *river.InsertOpts) {
			return args, nil
		}, &river.PeriodicJobOpts{RunOnStart: true})
	}
	return []*river.PeriodicJob{
		every(orDefault(d.Alerts.Period, time.Second), AlertMatchArgs{}),
		every(orDefault(d.Alerts.CheckPeriod, time.Minute), AlertCheckArgs{}),
		every(time.Hour, EventPruneArgs{}),
	}
}

// NewAlertCheckWorker returns the check worker (its Work ignores the job).
func NewAlertCheckWorker(d Deps) *AlertCheckWorker { return &AlertCheckWorker{deps: d} }
