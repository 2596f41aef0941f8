package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// AlertChannel is a notification target (migration 0021): one shoutrrr URL,
// stored sealed (URLSealed, see alert.Sealer) next to its redacted form,
// which is the only form ever shown again.
type AlertChannel struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Service     string    `json:"service"`
	URLRedacted string    `json:"url_redacted"`
	URLSealed   []byte    `json:"-"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

const channelCols = `id, name, service, url_redacted, url_sealed, created_at, updated_at`

func scanChannel(r pgx.CollectableRow) (AlertChannel, error) {
	var c AlertChannel
	err := r.Scan(&c.ID, &c.Name, &c.Service, &c.URLRedacted, &c.URLSealed, &c.CreatedAt, &c.UpdatedAt)
	return c, err
}

// AlertChannels returns every channel by name.
func (s *Store) AlertChannels(ctx context.Context) ([]AlertChannel, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+channelCols+` FROM alert_channels ORDER BY name`)
	out, err := pgx.CollectRows(rows, scanChannel)
	return out, mapErr("alert channels", err)
}

// AlertChannelByName returns one channel or ErrNotFound.
func (s *Store) AlertChannelByName(ctx context.Context, name string) (AlertChannel, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+channelCols+` FROM alert_channels WHERE name = $1`, name)
	c, err := pgx.CollectExactlyOneRow(rows, scanChannel)
	return c, mapErr("alert channel", err)
}

// PutAlertChannel creates or replaces channel c.Name (its service, sealed
// and redacted URL); the audit log records the redacted URL only.
func (s *Store) PutAlertChannel(ctx context.Context, c AlertChannel, actor string) (AlertChannel, bool, error) {
	var out AlertChannel
	var created bool
	err := s.inTx(ctx, "put alert channel", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+channelCols+` FROM alert_channels WHERE name = $1 FOR UPDATE`, c.Name)
		before, err := pgx.CollectExactlyOneRow(rows, scanChannel)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			created = true
		case err != nil:
			return err
		}
		rows, _ = tx.Query(ctx, `INSERT INTO alert_channels (name, service, url_sealed, url_redacted) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET service = excluded.service, url_sealed = excluded.url_sealed,
			  url_redacted = excluded.url_redacted, updated_at = now()
			RETURNING `+channelCols, c.Name, c.Service, c.URLSealed, c.URLRedacted)
		if out, err = pgx.CollectExactlyOneRow(rows, scanChannel); err != nil {
			return err
		}
		var old any
		if !created {
			old = before
		}
		return audit(ctx, tx, actor, "alert_channel.put", "alert_channel/"+c.Name, old, out)
	})
	return out, created, err
}

// DeleteAlertChannel deletes a channel (ErrNotFound when there is none);
// rules naming it keep the name and skip it.
func (s *Store) DeleteAlertChannel(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete alert channel", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `DELETE FROM alert_channels WHERE name = $1 RETURNING `+channelCols, name)
		old, err := pgx.CollectExactlyOneRow(rows, scanChannel)
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "alert_channel.delete", "alert_channel/"+name, old, nil)
	})
}

// AlertFilters narrow an alert rule beyond its event kind; every set field
// must match. Tag, Classification, Country and ASN are facts of the event's
// address (from the index and resolver); Ruleset and Bouncer are read from
// the event's subject or details. MinCount is the fewest events a group
// needs to become a message (0 or 1: any).
type AlertFilters struct {
	Tag            string `json:"tag,omitempty"`
	Classification string `json:"classification,omitempty"`
	Country        string `json:"country,omitempty"`
	ASN            int64  `json:"asn,omitempty"`
	Ruleset        string `json:"ruleset,omitempty"`
	Bouncer        string `json:"bouncer,omitempty"`
	MinCount       int    `json:"min_count,omitempty"`
}

// AlertRule turns events of Kind that pass Filters into messages to
// Channels (empty: every channel). Events are grouped: a group is sent
// GroupWait after its first event, or at once when it holds GroupThreshold
// events (0: no threshold); at most RatePerHour messages a rule in any hour
// (0: no bound), messages over it are dropped; none are sent in the quiet
// hours [QuietStart, QuietEnd) (minutes after midnight in QuietTZ; equal:
// none), where the group waits for their end.
type AlertRule struct {
	ID             int64         `json:"id"`
	Name           string        `json:"name"`
	Kind           string        `json:"kind"`
	Filters        AlertFilters  `json:"filters"`
	Channels       []string      `json:"channels"`
	GroupWait      time.Duration `json:"group_wait"`
	GroupThreshold int           `json:"group_threshold"`
	RatePerHour    int           `json:"rate_per_hour"`
	QuietStart     int           `json:"quiet_start"`
	QuietEnd       int           `json:"quiet_end"`
	QuietTZ        string        `json:"quiet_tz"`
	Enabled        bool          `json:"enabled"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

const ruleCols = `id, name, kind, filters, channels, group_wait_ms, group_threshold, rate_per_hour,
	quiet_start, quiet_end, quiet_tz, enabled, created_at, updated_at`

func scanRule(r pgx.CollectableRow) (AlertRule, error) {
	var a AlertRule
	var wait int64
	err := r.Scan(&a.ID, &a.Name, &a.Kind, &a.Filters, &a.Channels, &wait, &a.GroupThreshold, &a.RatePerHour,
		&a.QuietStart, &a.QuietEnd, &a.QuietTZ, &a.Enabled, &a.CreatedAt, &a.UpdatedAt)
	a.GroupWait = time.Duration(wait) * time.Millisecond
	return a, err
}

// AlertRules returns every rule by name.
func (s *Store) AlertRules(ctx context.Context) ([]AlertRule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+ruleCols+` FROM alert_rules ORDER BY name`)
	out, err := pgx.CollectRows(rows, scanRule)
	return out, mapErr("alert rules", err)
}

// AlertRuleByName returns one rule or ErrNotFound.
func (s *Store) AlertRuleByName(ctx context.Context, name string) (AlertRule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE name = $1`, name)
	r, err := pgx.CollectExactlyOneRow(rows, scanRule)
	return r, mapErr("alert rule", err)
}

// PutAlertRule creates or replaces rule r.Name; an open group of the rule
// is kept.
func (s *Store) PutAlertRule(ctx context.Context, r AlertRule, actor string) (AlertRule, bool, error) {
	var out AlertRule
	var created bool
	if r.Channels == nil {
		r.Channels = []string{}
	}
	if r.QuietTZ == "" {
		r.QuietTZ = "UTC"
	}
	err := s.inTx(ctx, "put alert rule", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE name = $1 FOR UPDATE`, r.Name)
		before, err := pgx.CollectExactlyOneRow(rows, scanRule)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			created = true
		case err != nil:
			return err
		}
		rows, _ = tx.Query(ctx, `INSERT INTO alert_rules (name, kind, filters, channels, group_wait_ms, group_threshold,
			  rate_per_hour, quiet_start, quiet_end, quiet_tz, enabled)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, filters = excluded.filters, channels = excluded.channels,
			  group_wait_ms = excluded.group_wait_ms, group_threshold = excluded.group_threshold,
			  rate_per_hour = excluded.rate_per_hour, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,
			  quiet_tz = excluded.quiet_tz, enabled = excluded.enabled, updated_at = now()
			RETURNING `+ruleCols, r.Name, r.Kind, r.Filters, r.Channels, r.GroupWait.Milliseconds(), r.GroupThreshold,
			r.RatePerHour, r.QuietStart, r.QuietEnd, r.QuietTZ, r.Enabled)
		if out, err = pgx.CollectExactlyOneRow(rows, scanRule); err != nil {
			return err
		}
		var old any
		if !created {
			old = before
		}
		return audit(ctx, tx, actor, "alert_rule.put", "alert_rule/"+r.Name, old, out)
	})
	return out, created, err
}

// DeleteAlertRule deletes a rule and its open group (ErrNotFound when none).
func (s *Store) DeleteAlertRule(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete alert rule", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `DELETE FROM alert_rules WHERE name = $1 RETURNING `+ruleCols, name)
		old, err := pgx.CollectExactlyOneRow(rows, scanRule)
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "alert_rule.delete", "alert_rule/"+name, old, nil)
	})
}

// AlertGroup is the open group of one rule: the ids of its events since
// FirstAt.
type AlertGroup struct {
	RuleID   int64
	FirstAt  time.Time
	EventIDs []int64
}

// AlertTx is the alert matcher's transaction: InAlertTx serialises it across
// processes, so each stored event is matched exactly once and each group is
// sent once. Tx is the transaction for inserting delivery jobs with it.
type AlertTx struct {
	tx pgx.Tx
}

// Tx returns the transaction (for River's InsertTx).
func (a *AlertTx) Tx() pgx.Tx { return a.tx }

// InAlertTx runs fn in one transaction holding the alert matcher's lock.
func (s *Store) InAlertTx(ctx context.Context, fn func(*AlertTx) error) error {
	return s.inTx(ctx, "alert step", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('muninn_alerts', 0))`); err != nil {
			return err
		}
		return fn(&AlertTx{tx: tx})
	})
}

// TakePending removes up to limit unmatched events from the queue and
// returns them, oldest first.
func (a *AlertTx) TakePending(ctx context.Context, limit int) ([]Event, error) {
	rows, _ := a.tx.Query(ctx, `WITH taken AS (
		  DELETE FROM alert_pending WHERE event_id IN (SELECT event_id FROM alert_pending ORDER BY event_id LIMIT $1)
		  RETURNING event_id)
		SELECT e.id, e.at, e.kind, e.subject_type, e.subject, e.details FROM events e JOIN taken t ON t.event_id = e.id
		ORDER BY e.id`, limit)
	out, err := pgx.CollectRows(rows, scanEvent)
	return out, mapErr("take pending events", err)
}

// EnabledRules returns the enabled rules.
func (a *AlertTx) EnabledRules(ctx context.Context) ([]AlertRule, error) {
	rows, _ := a.tx.Query(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE enabled ORDER BY id`)
	out, err := pgx.CollectRows(rows, scanRule)
	return out, mapErr("enabled alert rules", err)
}

// Groups returns the open groups by rule id.
func (a *AlertTx) Groups(ctx context.Context) (map[int64]AlertGroup, error) {
	rows, _ := a.tx.Query(ctx, `SELECT rule_id, first_at, event_ids FROM alert_groups`)
	gs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AlertGroup, error) {
		var g AlertGroup
		err := r.Scan(&g.RuleID, &g.FirstAt, &g.EventIDs)
		return g, err
	})
	if err != nil {
		return nil, mapErr("alert groups", err)
	}
	out := make(map[int64]AlertGroup, len(gs))
	for _, g := range gs {
		out[g.RuleID] = g
	}
	return out, nil
}

// SaveGroup stores the open group of g.RuleID.
func (a *AlertTx) SaveGroup(ctx context.Context, g AlertGroup) error {
	_, err := a.tx.Exec(ctx, `INSERT INTO alert_groups (rule_id, first_at, event_ids) VALUES ($1, $2, $3)
		ON CONFLICT (rule_id) DO UPDATE SET first_at = excluded.first_at, event_ids = excluded.event_ids`, g.RuleID, g.FirstAt, g.EventIDs)
	return mapErr("save alert group", err)
}

// CloseGroup removes the open group of rule id.
func (a *AlertTx) CloseGroup(ctx context.Context, ruleID int64) error {
	_, err := a.tx.Exec(ctx, `DELETE FROM alert_groups WHERE rule_id = $1`, ruleID)
	return mapErr("close alert group", err)
}

// Events returns the stored events among ids, oldest first (pruned ones
// are gone).
func (a *AlertTx) Events(ctx context.Context, ids []int64) ([]Event, error) {
	rows, _ := a.tx.Query(ctx, `SELECT id, at, kind, subject_type, subject, details FROM events WHERE id = ANY($1) ORDER BY id`, ids)
	out, err := pgx.CollectRows(rows, scanEvent)
	return out, mapErr("alert events", err)
}

// SentSince counts the messages of rule id sent at or after since.
func (a *AlertTx) SentSince(ctx context.Context, ruleID int64, since time.Time) (int, error) {
	var n int
	err := a.tx.QueryRow(ctx, `SELECT count(*) FROM alert_sent WHERE rule_id = $1 AND at >= $2`, ruleID, since).Scan(&n)
	return n, mapErr("alert sent count", err)
}

// RecordSent records a message of rule id at at and forgets those older
// than a day.
func (a *AlertTx) RecordSent(ctx context.Context, ruleID int64, at time.Time) error {
	if _, err := a.tx.Exec(ctx, `INSERT INTO alert_sent (rule_id, at) VALUES ($1, $2)`, ruleID, at); err != nil {
		return mapErr("record alert sent", err)
	}
	_, err := a.tx.Exec(ctx, `DELETE FROM alert_sent WHERE rule_id = $1 AND at < $2`, ruleID, at.Add(-24*time.Hour))
	return mapErr("forget alert sent", err)
}

// AppendEvents stores evs in the matcher's transaction.
func (a *AlertTx) AppendEvents(ctx context.Context, evs []Event) error {
	return appendEvents(ctx, a.tx, evs)
}

// Condition reports whether a periodic check's condition key holds: when
// holds and it was not recorded, it is recorded and evs are stored (one
// event when a condition starts); when it does not hold, it is forgotten.
// It returns whether evs were stored.
func (s *Store) Condition(ctx context.Context, key string, holds bool, now time.Time, evs ...Event) (bool, error) {
	stored := false
	err := s.inTx(ctx, "alert condition", func(tx pgx.Tx) error {
		if !holds {
			_, err := tx.Exec(ctx, `DELETE FROM alert_conditions WHERE key = $1`, key)
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO alert_conditions (key, since) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, now)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		stored = true
		return appendEvents(ctx, tx, evs)
	})
	return stored, err
}

// Conditions returns the keys of the conditions that hold, with their start.
func (s *Store) Conditions(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, since FROM alert_conditions`)
	if err != nil {
		return nil, mapErr("alert conditions", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var k string
		var t time.Time
		if err := rows.Scan(&k, &t); err != nil {
			return nil, mapErr("alert conditions", err)
		}
		out[k] = t
	}
	return out, mapErr("alert conditions", rows.Err())
}

// PruneEvents deletes the events older than keep before now and returns
// how many.
func (s *Store) PruneEvents(ctx context.Context, now time.Time, keep time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE at < $1`, now.Add(-keep))
	if err != nil {
		return 0, fmt.Errorf("store: prune events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// EnrichFailing returns, per enrichment kind (rdap, ptr), how many of its
// last n attempts failed with an error, and whether it had n attempts.
func (s *Store) EnrichFailing(ctx context.Context, n int) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT kind, count(*) FILTER (WHERE outcome = 'error') FROM (
		  SELECT kind, outcome, row_number() OVER (PARTITION BY kind ORDER BY attempted_at DESC) AS rn
		  FROM enrich_attempts WHERE outcome <> 'skipped') a
		WHERE rn <= $1 GROUP BY kind HAVING count(*) >= $1`, n)
	if err != nil {
		return nil, mapErr("enrich failing", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var c int
		if err := rows.Scan(&k, &c); err != nil {
			return nil, mapErr("enrich failing", err)
		}
		out[k] = c
	}
	return out, mapErr("enrich failing", rows.Err())
}

// Mark is one report of whether Subject (an address or prefix) carries a
// tag ("tag:<name>") or classification ("classification:<value>") in its
// effective view, seen in the index snapshot that includes change Seq at
// instant At. Event is what to store when the report turns the mark on.
type Mark struct {
	Subject string
	Mark    string
	Present bool
	Seq     int64
	At      time.Time
	Event   Event
}

// ReportMarks applies reports, in one transaction, and returns how many
// events it stored. The database decides: a report older (by Seq, then At)
// than the stored one for its subject and mark is ignored; a newer one is
// stored, and when it turns the mark from absent (or never seen) to
// present, its Event is stored too. So processes reporting the same
// transitions in any order and any grouping store one event per
// transition. (A process far behind whose snapshot is older by Seq but
// newer by At could still report a present mark another process has seen
// expire: its later Seq wins.)
func (s *Store) ReportMarks(ctx context.Context, reports []Mark) (int, error) {
	if len(reports) == 0 {
		return 0, nil
	}
	type key struct{ subject, mark string }
	newer := func(a Mark, seq int64, at time.Time) bool {
		return a.Seq > seq || (a.Seq == seq && a.At.After(at))
	}
	// The newest report of each subject and mark.
	byKey := map[key]Mark{}
	for _, m := range reports {
		m.At = m.At.Truncate(time.Microsecond) // what timestamptz keeps
		k := key{m.Subject, m.Mark}
		if o, ok := byKey[k]; !ok || newer(m, o.Seq, o.At) {
			byKey[k] = m
		}
	}
	subjects, marks := make([]string, 0, len(byKey)), make([]string, 0, len(byKey))
	for k := range byKey {
		subjects, marks = append(subjects, k.subject), append(marks, k.mark)
	}
	stored := 0
	err := s.inTx(ctx, "report alert marks", func(tx pgx.Tx) error {
		stored = 0
		// The rows exist before they are locked, so the locks are real even
		// for marks no process has reported yet; both statements take them
		// in one order (COLLATE "C"), so processes never deadlock.
		if _, err := tx.Exec(ctx, `INSERT INTO alert_marks (subject, mark, present, seq, at)
			SELECT s, m, false, -1, '-infinity' FROM unnest($1::text[], $2::text[]) AS u(s, m) ORDER BY s COLLATE "C", m COLLATE "C"
			ON CONFLICT (subject, mark) DO NOTHING`, subjects, marks); err != nil {
			return fmt.Errorf("insert marks: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT subject, mark, present, seq, at FROM alert_marks
			WHERE (subject, mark) IN (SELECT * FROM unnest($1::text[], $2::text[]))
			ORDER BY subject COLLATE "C", mark COLLATE "C" FOR UPDATE`, subjects, marks)
		if err != nil {
			return fmt.Errorf("lock marks: %w", err)
		}
		var (
			upS, upM []string
			upP      []bool
			upQ      []int64
			upA      []time.Time
			evs      []Event
		)
		for rows.Next() {
			var (
				k       key
				present bool
				seq     int64
				at      pgtype.Timestamptz
			)
			if err := rows.Scan(&k.subject, &k.mark, &present, &seq, &at); err != nil {
				rows.Close()
				return fmt.Errorf("read marks: %w", err)
			}
			m := byKey[k]
			if at.InfinityModifier == pgtype.Finite && !newer(m, seq, at.Time) {
				continue
			}
			upS, upM, upP, upQ, upA = append(upS, k.subject), append(upM, k.mark), append(upP, m.Present), append(upQ, m.Seq), append(upA, m.At)
			if !present && m.Present {
				evs = append(evs, m.Event)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read marks: %w", err)
		}
		if len(upS) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE alert_marks am SET present = u.p, seq = u.q, at = u.a
				FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::timestamptz[]) AS u(s, m, p, q, a)
				WHERE am.subject = u.s AND am.mark = u.m`, upS, upM, upP, upQ, upA); err != nil {
				return fmt.Errorf("update marks: %w", err)
			}
		}
		// Events by subject and kind, for a stable listing.
		slices.SortStableFunc(evs, func(a, b Event) int {
			if c := strings.Compare(a.Subject, b.Subject); c != 0 {
				return c
			}
			return strings.Compare(a.Kind, b.Kind)
		})
		stored = len(evs)
		return appendEvents(ctx, tx, evs)
	})
	return stored, err
}
