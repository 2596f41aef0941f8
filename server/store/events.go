package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// EventsChannel is the PostgreSQL NOTIFY channel on which every stored event
// is announced with its id as the payload (migration 0016).
const EventsChannel = "muninn_events"

// Event is one thing that happened (migration 0016): a detection fired, a
// honeypot was touched, a feed failed, a bouncer went silent, the guard
// removed a prefix, an inside host talked to a bad address, ...
//
// Kind is lower-case dotted or dashed words ("detection", "honeypot",
// "feed.failed"), at most 64 characters. SubjectType says what Subject names
// ("address", "prefix", "feed", "bouncer", "ruleset", "host", ...); Subject
// is at most 1,024 characters. Details is a JSON object (nil is stored as
// {}). At is when it happened (the zero time is stored as now).
type Event struct {
	ID          int64
	At          time.Time
	Kind        string
	SubjectType string
	Subject     string
	Details     map[string]any
}

// AppendEvents stores evs in one transaction of their own and announces each
// on EventsChannel. A write that causes events should store them in its own
// transaction instead, with appendEvents(ctx, tx, evs), so the events exist
// exactly when the write does.
func (s *Store) AppendEvents(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.inTx(ctx, "append events", func(tx pgx.Tx) error { return appendEvents(ctx, tx, evs) })
}

// appendEvents stores evs in tx.
func appendEvents(ctx context.Context, tx pgx.Tx, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	ats := make([]*time.Time, len(evs))
	kinds := make([]string, len(evs))
	types := make([]string, len(evs))
	subjects := make([]string, len(evs))
	details := make([]string, len(evs))
	for i, ev := range evs {
		d := ev.Details
		if d == nil {
			d = map[string]any{}
		}
		raw, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("event details: %w", err)
		}
		if !ev.At.IsZero() {
			ats[i] = &evs[i].At
		}
		kinds[i], types[i], subjects[i], details[i] = ev.Kind, ev.SubjectType, ev.Subject, string(raw)
	}
	// One statement (its triggers run once over the new rows), ids in the
	// order of evs.
	if _, err := tx.Exec(ctx, `INSERT INTO events (at, kind, subject_type, subject, details)
		SELECT coalesce(at, now()), kind, subject_type, subject, details::jsonb
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY
		  AS e(at, kind, subject_type, subject, details, n) ORDER BY n`, ats, kinds, types, subjects, details); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// EventFilter selects events for ListEvents: all of the set fields must
// match. Before is a cursor: only events with an id below it (0: no bound).
// Limit is at most 1,000 (0: 100).
type EventFilter struct {
	Kind        string
	SubjectType string
	Subject     string
	Since       time.Time
	Before      int64
	Limit       int
}

// ListEvents returns the events f selects, newest first (by id).
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var since any
	if !f.Since.IsZero() {
		since = f.Since
	}
	rows, err := s.pool.Query(ctx, `
		SELECT id, at, kind, subject_type, subject, details FROM events
		WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR subject_type = $2) AND ($3 = '' OR subject = $3)
		  AND ($4::timestamptz IS NULL OR at >= $4) AND ($5 = 0 OR id < $5)
		ORDER BY id DESC LIMIT $6`, f.Kind, f.SubjectType, f.Subject, since, f.Before, limit)
	if err != nil {
		return nil, mapErr("list events", err)
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, mapErr("list events", err)
	}
	return out, nil
}

func scanEvent(r pgx.CollectableRow) (Event, error) {
	var ev Event
	err := r.Scan(&ev.ID, &ev.At, &ev.Kind, &ev.SubjectType, &ev.Subject, &ev.Details)
	return ev, err
}

// Event kinds the server itself produces (sensors and flows add their own).
// An alert.* event is never matched by alert rules: alerting's own failures
// must not feed alerting back.
const (
	// EventHoneypot: a bouncer reported a hit on a honeypot port; subject
	// the address, details ruleset, bouncer, protocol, port.
	EventHoneypot = "honeypot"
	// EventBouncerSilent: a bouncer was not seen for the configured time;
	// subject the bouncer, details last_seen, minutes.
	EventBouncerSilent = "bouncer.silent"
	// EventBouncerLagging: a bouncer has not confirmed the current version
	// of a ruleset for the configured time; details ruleset, lag_seconds.
	EventBouncerLagging = "bouncer.lagging"
	// EventBouncerError: a bouncer's heartbeat reported a new error;
	// details error.
	EventBouncerError = "bouncer.error"
	// EventFeedFailed: a feed refresh failed; subject the feed, details error.
	EventFeedFailed = "feed.failed"
	// EventFeedHeld: the drop or width guard held a feed refresh back;
	// details error.
	EventFeedHeld = "feed.held"
	// EventGuardRemoved: the never-block guard removed a prefix from a block
	// set; subject the prefix, details ruleset, rule, reason.
	EventGuardRemoved = "guard.removed"
	// EventRenderSize: a render served more elements than the configured
	// limit; subject the ruleset, details elements, limit.
	EventRenderSize = "render.size"
	// EventEnrichFailing: an enrichment source (rdap, ptr) failed its recent
	// attempts; subject the source, details failed, of.
	EventEnrichFailing = "enrich.failing"
	// EventAddressTag: an address (subject_type "address") or stored
	// prefix ("prefix") newly carries a tag in its effective view, as an
	// index saw it change; details tag, source, prefix (of the deciding
	// assertion). Reported only for tags an enabled rule of this kind asks
	// for (any tag when a rule has no tag filter); one event per transition
	// across processes (ReportMarks).
	EventAddressTag = "address.tag"
	// EventAddressClassification: an address or stored prefix newly has a
	// classification in its effective view; details classification,
	// source, prefix. Reported like EventAddressTag.
	EventAddressClassification = "address.classification"
	// EventAlertDeliveryFailed: a message could not be delivered to a
	// channel after its last attempt; subject the channel, details rule,
	// title, error, attempts.
	EventAlertDeliveryFailed = "alert.delivery_failed"
	// EventAlertSuppressed: a rule over its rate limit dropped a message;
	// subject the rule, details events, rate_per_hour.
	EventAlertSuppressed = "alert.suppressed"
)
