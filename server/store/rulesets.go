package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ruleset is a stored ruleset: its canonical text and JSON forms.
type Ruleset struct {
	Name      string    `json:"name"`
	Text      string    `json:"text"`
	JSON      []byte    `json:"-"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

const rulesetCols = `name, text, json, version, created_at, updated_at, updated_by`

func scanRuleset(r pgx.CollectableRow) (Ruleset, error) {
	var rs Ruleset
	return rs, r.Scan(&rs.Name, &rs.Text, &rs.JSON, &rs.Version, &rs.CreatedAt, &rs.UpdatedAt, &rs.UpdatedBy)
}

// Rulesets returns every ruleset by name.
func (s *Store) Rulesets(ctx context.Context) ([]Ruleset, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rulesetCols+` FROM rulesets ORDER BY name`)
	if err != nil {
		return nil, mapErr("list rulesets", err)
	}
	out, err := pgx.CollectRows(rows, scanRuleset)
	return out, mapErr("list rulesets", err)
}

// RulesetByName returns one ruleset or ErrNotFound.
func (s *Store) RulesetByName(ctx context.Context, name string) (Ruleset, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rulesetCols+` FROM rulesets WHERE name = $1`, name)
	if err != nil {
		return Ruleset{}, mapErr("get ruleset", err)
	}
	rs, err := pgx.CollectExactlyOneRow(rows, scanRuleset)
	return rs, mapErr("get ruleset", err)
}

// PutRuleset creates or replaces a ruleset (text and JSON already validated and
// canonical), bumps its version, audits and announces the change. It returns
// the stored ruleset and whether it was created.
//
// lifted names the cidr values an admin accepted wider than the default limit
// (allow_wide); they are audited as width.lift in the same transaction.
func (s *Store) PutRuleset(ctx context.Context, name, text string, js []byte, actor string, lifted ...netip.Prefix) (Ruleset, bool, error) {
	var out Ruleset
	var created bool
	err := s.inTx(ctx, "put ruleset", func(tx pgx.Tx) error {
		var before *Ruleset
		rows, err := tx.Query(ctx, `SELECT `+rulesetCols+` FROM rulesets WHERE name = $1 FOR UPDATE`, name)
		if err != nil {
			return err
		}
		old, err := pgx.CollectExactlyOneRow(rows, scanRuleset)
		switch {
		case err == nil:
			before = &old
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		created = before == nil
		rows, err = tx.Query(ctx, `INSERT INTO rulesets (name, text, json, updated_by) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET text = excluded.text, json = excluded.json,
			  version = rulesets.version + 1, updated_at = now(), updated_by = excluded.updated_by
			RETURNING `+rulesetCols, name, text, js, actor)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectExactlyOneRow(rows, scanRuleset); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "ruleset.put", "ruleset/"+name, before, out); err != nil {
			return err
		}
		if err := auditLift(ctx, tx, actor, "ruleset/"+name, lifted); err != nil {
			return err
		}
		return notifyChange(ctx, tx, "ruleset")
	})
	return out, created, err
}

// DeleteRuleset removes a ruleset; ErrNotFound when there is none.
func (s *Store) DeleteRuleset(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete ruleset", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM rulesets WHERE name = $1 RETURNING `+rulesetCols, name)
		if err != nil {
			return err
		}
		old, err := pgx.CollectExactlyOneRow(rows, scanRuleset)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: delete ruleset: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "ruleset.delete", "ruleset/"+name, old, nil); err != nil {
			return err
		}
		return notifyChange(ctx, tx, "ruleset")
	})
}

// List is a named selector served as a plain prefix list.
type List struct {
	Name      string    `json:"name"`
	Selector  string    `json:"selector"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

func scanList(r pgx.CollectableRow) (List, error) {
	var l List
	return l, r.Scan(&l.Name, &l.Selector, &l.UpdatedAt, &l.UpdatedBy)
}

// Lists returns every named list by name.
func (s *Store) Lists(ctx context.Context) ([]List, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, selector, updated_at, updated_by FROM lists ORDER BY name`)
	if err != nil {
		return nil, mapErr("list lists", err)
	}
	out, err := pgx.CollectRows(rows, scanList)
	return out, mapErr("list lists", err)
}

// ListByName returns one named list or ErrNotFound.
func (s *Store) ListByName(ctx context.Context, name string) (List, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, selector, updated_at, updated_by FROM lists WHERE name = $1`, name)
	if err != nil {
		return List{}, mapErr("get list", err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, scanList)
	return l, mapErr("get list", err)
}

// PutList creates or replaces a named list, audits and announces the change.
// lifted names the cidr values accepted wider than the default limit
// (audited as width.lift).
func (s *Store) PutList(ctx context.Context, name, selector, actor string, lifted ...netip.Prefix) (List, error) {
	var out List
	err := s.inTx(ctx, "put list", func(tx pgx.Tx) error {
		var before *List
		rows, err := tx.Query(ctx, `SELECT name, selector, updated_at, updated_by FROM lists WHERE name = $1 FOR UPDATE`, name)
		if err != nil {
			return err
		}
		if old, err := pgx.CollectExactlyOneRow(rows, scanList); err == nil {
			before = &old
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		rows, err = tx.Query(ctx, `INSERT INTO lists (name, selector, updated_by) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET selector = excluded.selector, updated_at = now(), updated_by = excluded.updated_by
			RETURNING name, selector, updated_at, updated_by`, name, selector, actor)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectExactlyOneRow(rows, scanList); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "list.put", "list/"+name, before, out); err != nil {
			return err
		}
		if err := auditLift(ctx, tx, actor, "list/"+name, lifted); err != nil {
			return err
		}
		return notifyChange(ctx, tx, "list")
	})
	return out, err
}

// DeleteList removes a named list; ErrNotFound when there is none.
func (s *Store) DeleteList(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete list", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM lists WHERE name = $1 RETURNING name, selector, updated_at, updated_by`, name)
		if err != nil {
			return err
		}
		old, err := pgx.CollectExactlyOneRow(rows, scanList)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: delete list: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "list.delete", "list/"+name, old, nil); err != nil {
			return err
		}
		return notifyChange(ctx, tx, "list")
	})
}

// GuardEntry is one operator never-block entry.
type GuardEntry struct {
	Prefix netip.Prefix `json:"prefix"`
	Reason string       `json:"reason"`
}

// GuardEntries returns the operator's never-block entries.
func (s *Store) GuardEntries(ctx context.Context) ([]GuardEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT prefix, reason FROM guard_entries ORDER BY prefix`)
	if err != nil {
		return nil, mapErr("list guard entries", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GuardEntry, error) {
		var e GuardEntry
		return e, r.Scan(&e.Prefix, &e.Reason)
	})
	return out, mapErr("list guard entries", err)
}

// PutGuardEntries replaces the operator's never-block entries, audits and
// announces the change. lifted names the entries accepted wider than the
// default limit (audited as width.lift).
func (s *Store) PutGuardEntries(ctx context.Context, entries []GuardEntry, actor string, lifted ...netip.Prefix) error {
	return s.inTx(ctx, "put guard entries", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM guard_entries RETURNING prefix, reason`)
		if err != nil {
			return err
		}
		before, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GuardEntry, error) {
			var e GuardEntry
			return e, r.Scan(&e.Prefix, &e.Reason)
		})
		if err != nil {
			return err
		}
		prefixes := make([]netip.Prefix, len(entries))
		reasons := make([]string, len(entries))
		for i, e := range entries {
			prefixes[i], reasons[i] = e.Prefix, e.Reason
		}
		if _, err := tx.Exec(ctx, `INSERT INTO guard_entries (prefix, reason)
			SELECT * FROM unnest($1::cidr[], $2::text[]) ON CONFLICT (prefix) DO UPDATE SET reason = excluded.reason`,
			prefixes, reasons); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "guard.put", "guard", before, entries); err != nil {
			return err
		}
		if err := auditLift(ctx, tx, actor, "guard", lifted); err != nil {
			return err
		}
		return notifyChange(ctx, tx, "guard")
	})
}

// StoredRender is one stored render of a ruleset.
type StoredRender struct {
	Ruleset     string
	Version     int64
	Hash        string
	Body        []byte
	GeneratedAt time.Time
}

// RenderPrefix starts the NOTIFY payload announcing a new stored render; the
// rest of the payload is "<ruleset>:<version>" (ruleset names have no colon).
// Render hubs of other processes reload it instead of recomputing.
const RenderPrefix = "render:"

// LatestRender returns the newest stored render of a ruleset or ErrNotFound.
func (s *Store) LatestRender(ctx context.Context, ruleset string) (StoredRender, error) {
	r := StoredRender{Ruleset: ruleset}
	err := s.pool.QueryRow(ctx, `SELECT version, hash, body, generated_at FROM renders
		WHERE ruleset = $1 ORDER BY version DESC LIMIT 1`, ruleset).Scan(&r.Version, &r.Hash, &r.Body, &r.GeneratedAt)
	return r, mapErr("latest render", err)
}

// SaveRender stores a render of ruleset whose content hashes to hash,
// computed from the facts as of change-feed sequence factsSeq, unless the
// newest stored render already has that hash, or was computed from newer facts
// (the caller's facts lag: it must not store older content as a newer
// version). body builds the stored bytes for the version and time the render
// gets. It returns the newest stored render afterwards (the existing one when
// nothing was stored: its Hash then differs from hash when the caller lags),
// so processes sharing a database agree on versions. A new render is announced.
//
// evs, the events the new render causes (guard removals, size), are stored
// with it, and only when it is stored.
func (s *Store) SaveRender(ctx context.Context, ruleset, hash string, factsSeq int64, now time.Time, body func(version int64, at time.Time) ([]byte, error), evs ...Event) (StoredRender, error) {
	var out StoredRender
	err := s.inTx(ctx, "save render", func(tx pgx.Tx) error {
		// Serialises renders of one ruleset across processes so versions are not
		// taken twice and an unchanged hash is never stored again.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('muninn_render:' || $1, 0))`, ruleset); err != nil {
			return err
		}
		cur := StoredRender{Ruleset: ruleset}
		var curSeq int64
		err := tx.QueryRow(ctx, `SELECT version, hash, body, generated_at, facts_seq FROM renders
			WHERE ruleset = $1 ORDER BY version DESC LIMIT 1`, ruleset).Scan(&cur.Version, &cur.Hash, &cur.Body, &cur.GeneratedAt, &curSeq)
		switch {
		case err == nil && (cur.Hash == hash || curSeq > factsSeq):
			out = cur
			return nil
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		next := StoredRender{Ruleset: ruleset, Version: cur.Version + 1, Hash: hash, GeneratedAt: now.UTC().Truncate(time.Microsecond)}
		b, err := body(next.Version, next.GeneratedAt)
		if err != nil {
			return err
		}
		next.Body = b
		if _, err := tx.Exec(ctx, `INSERT INTO renders (ruleset, version, hash, body, generated_at, facts_seq) VALUES ($1, $2, $3, $4, $5, $6)`,
			ruleset, next.Version, hash, b, next.GeneratedAt, factsSeq); err != nil {
			return err
		}
		// Keep a short history; older versions are never served as delta bases.
		if _, err := tx.Exec(ctx, `DELETE FROM renders WHERE ruleset = $1 AND version <= $2`, ruleset, next.Version-20); err != nil {
			return err
		}
		out = next
		if len(evs) > 0 {
			if err := appendEvents(ctx, tx, evs); err != nil {
				return err
			}
		}
		return notifyChange(ctx, tx, fmt.Sprintf("%s%s:%d", RenderPrefix, ruleset, next.Version))
	})
	return out, err
}

// Listener is a dedicated connection LISTENing on ChangeChannel.
type Listener struct {
	conn *pgx.Conn
}

// Listen opens a dedicated connection (taken out of the pool for good) that
// listens on ChangeChannel.
func (s *Store) Listen(ctx context.Context) (*Listener, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, mapErr("listen", err)
	}
	conn := c.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ChangeChannel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, mapErr("listen", err)
	}
	return &Listener{conn: conn}, nil
}

// Wait blocks until a change is announced and returns its payload.
func (l *Listener) Wait(ctx context.Context) (string, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return "", fmt.Errorf("store: wait for change: %w", err)
	}
	return n.Payload, nil
}

// Note is one announcement read by Listener.Notes, or (Err set) the failure
// that ended the reading.
type Note struct {
	Payload string
	Err     error
}

// Notes reads announcements on a goroutine it owns and sends them on the
// returned channel, ending after the first failure (sent as the last Note) or
// when ctx ends. stop ends the reading and waits for the goroutine; call it
// before Close.
func (l *Listener) Notes(ctx context.Context) (notes <-chan Note, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan Note)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			p, err := l.Wait(ctx)
			select {
			case ch <- Note{p, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, func() { cancel(); <-done }
}

// Close closes the connection.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.conn.Close(ctx)
}
