package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bouncer is an enforcement host with a key and the rulesets it enforces.
type Bouncer struct {
	ID        int64            `json:"id"`
	Name      string           `json:"name"`
	Rulesets  []string         `json:"rulesets"`
	CreatedAt time.Time        `json:"created_at"`
	LastSeen  *time.Time       `json:"last_seen"`
	Applied   map[string]int64 `json:"applied"`
	Hostname  string           `json:"hostname"`
	Version   string           `json:"version"`
	LastError string           `json:"last_error"`
	Counters  json.RawMessage  `json:"counters"`
	// Confirmed is when the bouncer last confirmed, per ruleset, the version
	// that was current at the time (absent: never).
	Confirmed map[string]time.Time `json:"confirmed"`
}

const bouncerCols = `id, name, rulesets, created_at, last_seen, applied, hostname, version, last_error, counters, confirmed`

func scanBouncer(r pgx.CollectableRow) (Bouncer, error) {
	var b Bouncer
	var applied, counters, confirmed []byte
	if err := r.Scan(&b.ID, &b.Name, &b.Rulesets, &b.CreatedAt, &b.LastSeen, &applied, &b.Hostname, &b.Version, &b.LastError, &counters, &confirmed); err != nil {
		return b, err
	}
	if err := json.Unmarshal(confirmed, &b.Confirmed); err != nil {
		return b, fmt.Errorf("decode confirmed versions: %w", err)
	}
	b.Counters = counters
	if err := json.Unmarshal(applied, &b.Applied); err != nil {
		return b, fmt.Errorf("decode applied versions: %w", err)
	}
	return b, nil
}

// CreateBouncer stores a bouncer with the hash of its key; ErrConflict when the
// name is taken.
func (s *Store) CreateBouncer(ctx context.Context, name string, rulesets []string, keyHash []byte, actor string) (Bouncer, error) {
	var out Bouncer
	err := s.inTx(ctx, "create bouncer", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO bouncers (name, rulesets, key_hash) VALUES ($1, $2, $3) RETURNING `+bouncerCols,
			name, rulesets, keyHash)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectExactlyOneRow(rows, scanBouncer); err != nil {
			return mapErr("create bouncer", err)
		}
		return audit(ctx, tx, actor, "bouncer.create", "bouncer/"+name, nil, out)
	})
	return out, err
}

// Bouncers returns every bouncer by name.
func (s *Store) Bouncers(ctx context.Context) ([]Bouncer, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+bouncerCols+` FROM bouncers ORDER BY name`)
	if err != nil {
		return nil, mapErr("list bouncers", err)
	}
	out, err := pgx.CollectRows(rows, scanBouncer)
	return out, mapErr("list bouncers", err)
}

// BouncerByKeyHash returns the bouncer whose key hashes to hash, or ErrNotFound.
func (s *Store) BouncerByKeyHash(ctx context.Context, hash []byte) (Bouncer, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+bouncerCols+` FROM bouncers WHERE key_hash = $1`, hash)
	if err != nil {
		return Bouncer{}, mapErr("bouncer by key", err)
	}
	b, err := pgx.CollectExactlyOneRow(rows, scanBouncer)
	return b, mapErr("bouncer by key", err)
}

// SetBouncerRulesets changes the rulesets bouncer name enforces; ErrNotFound
// when there is no such bouncer.
func (s *Store) SetBouncerRulesets(ctx context.Context, name string, rulesets []string, actor string) (Bouncer, error) {
	var out Bouncer
	err := s.inTx(ctx, "set bouncer rulesets", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+bouncerCols+` FROM bouncers WHERE name = $1 FOR UPDATE`, name)
		if err != nil {
			return err
		}
		before, err := pgx.CollectExactlyOneRow(rows, scanBouncer)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: set bouncer rulesets: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `UPDATE bouncers SET rulesets = $2 WHERE name = $1 RETURNING `+bouncerCols, name, rulesets)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectExactlyOneRow(rows, scanBouncer); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "bouncer.rulesets", "bouncer/"+name, before.Rulesets, out.Rulesets)
	})
	return out, err
}

// DeleteBouncer removes a bouncer (its key stops working); ErrNotFound when there is none.
func (s *Store) DeleteBouncer(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete bouncer", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM bouncers WHERE name = $1 RETURNING `+bouncerCols, name)
		if err != nil {
			return err
		}
		old, err := pgx.CollectExactlyOneRow(rows, scanBouncer)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: delete bouncer: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "bouncer.delete", "bouncer/"+name, old, nil)
	})
}

// BouncerHeartbeat is what a bouncer reports about itself.
type BouncerHeartbeat struct {
	Hostname  string
	Version   string
	Applied   map[string]int64
	Counters  json.RawMessage
	LastError string
	// Current names the rulesets whose applied version is the current one:
	// their confirmation time becomes now.
	Current []string
}

// TouchBouncer records a heartbeat of bouncer id at now.
func (s *Store) TouchBouncer(ctx context.Context, id int64, hb BouncerHeartbeat, now time.Time) error {
	applied, err := json.Marshal(hb.Applied)
	if err != nil {
		return fmt.Errorf("store: bouncer heartbeat: %w", err)
	}
	if hb.Applied == nil {
		applied = []byte("{}")
	}
	counters := hb.Counters
	if len(counters) == 0 || string(counters) == "null" {
		counters = json.RawMessage("[]")
	}
	current := hb.Current
	if current == nil {
		current = []string{}
	}
	_, err = s.pool.Exec(ctx, `UPDATE bouncers SET last_seen = $2, hostname = $3, version = $4, applied = $5,
		counters = $6, last_error = $7,
		confirmed = confirmed || coalesce((SELECT jsonb_object_agg(name, $2::timestamptz) FROM unnest($8::text[]) AS name), '{}')
		WHERE id = $1`, id, now, hb.Hostname, hb.Version, applied, []byte(counters), hb.LastError, current)
	return mapErr("bouncer heartbeat", err)
}

// CrowdSecCursor is what the CrowdSec stream last sent one bouncer.
type CrowdSecCursor struct {
	// Versions are the render versions the decisions were built from.
	Versions map[string]int64
	// Sent maps each decision's value to its scenario; nil unless asked for.
	Sent map[string]string
}

// CrowdSecCursor returns the cursor of bouncer id (empty when nothing was sent
// yet); the sent decisions are read only when withSent is set, since an
// unchanged pull needs just the versions.
func (s *Store) CrowdSecCursor(ctx context.Context, id int64, withSent bool) (CrowdSecCursor, error) {
	c := CrowdSecCursor{Versions: map[string]int64{}, Sent: map[string]string{}}
	var versions, sent []byte
	err := s.pool.QueryRow(ctx, `SELECT versions, CASE WHEN $2 THEN sent END FROM crowdsec_cursors WHERE bouncer_id = $1`, id, withSent).Scan(&versions, &sent)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return c, mapErr("crowdsec cursor", err)
	}
	if err := json.Unmarshal(versions, &c.Versions); err != nil {
		return c, fmt.Errorf("store: crowdsec cursor: %w", err)
	}
	if sent != nil {
		if err := json.Unmarshal(sent, &c.Sent); err != nil {
			return c, fmt.Errorf("store: crowdsec cursor: %w", err)
		}
	}
	return c, nil
}

// SetCrowdSecCursor records what the CrowdSec stream has now sent bouncer id.
func (s *Store) SetCrowdSecCursor(ctx context.Context, id int64, c CrowdSecCursor) error {
	versions, err := json.Marshal(c.Versions)
	if err != nil {
		return fmt.Errorf("store: set crowdsec cursor: %w", err)
	}
	sent, err := json.Marshal(c.Sent)
	if err != nil {
		return fmt.Errorf("store: set crowdsec cursor: %w", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO crowdsec_cursors (bouncer_id, versions, sent) VALUES ($1, $2, $3)
		ON CONFLICT (bouncer_id) DO UPDATE SET versions = excluded.versions, sent = excluded.sent, updated_at = now()`, id, versions, sent)
	return mapErr("set crowdsec cursor", err)
}
