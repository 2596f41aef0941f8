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
	// CrowdSec holds the settings of the CrowdSec-compatible API for this
	// bouncer's key.
	CrowdSec CrowdSecSettings `json:"crowdsec"`
	// WideRanges counts the Range decisions of the last CrowdSec pull that
	// were too wide to expand into Ip decisions.
	WideRanges int64 `json:"wide_ranges"`
	// RenewEpoch is the renewal epoch of the CrowdSec stream's last pull: a
	// pull in a later epoch sends every decision again as new, before the
	// durations sent earlier run out.
	RenewEpoch int64 `json:"renew_epoch"`
	// FactsSeq is the change-feed sequence of the facts the CrowdSec
	// stream's last pull took its durations from (0: none): the next pull
	// sends again the decisions on stored prefixes changed since.
	FactsSeq int64 `json:"facts_seq"`
	// RulesKey fingerprints the rule texts the CrowdSec stream's last pull
	// served: when it changes, the next pull sends every decision again.
	RulesKey string `json:"rules_key"`
	// Usage holds the cumulative usage metrics a CrowdSec bouncer pushed.
	Usage []UsageCounter `json:"usage"`
	// Confirmed is when the bouncer last confirmed, per ruleset, the version
	// that was current at the time (absent: never).
	Confirmed map[string]time.Time `json:"confirmed"`
}

// Lag is how long ago b last confirmed the version of ruleset that was
// current at the time (since its creation when it never did): it keeps
// growing while the bouncer is dead, new renders or not. Never negative.
func (b Bouncer) Lag(ruleset string, now time.Time) time.Duration {
	since := b.CreatedAt
	if t, ok := b.Confirmed[ruleset]; ok {
		since = t
	}
	return max(0, now.Sub(since))
}

// CrowdSec range expansion modes (CrowdSecSettings.Expand).
const (
	ExpandOff    = "off"
	ExpandScopes = "scopes"
	ExpandAlways = "always"
)

// CrowdSecSettings say how the CrowdSec-compatible API serves one bouncer.
type CrowdSecSettings struct {
	// Expand is when Range decisions up to the widths below become Ip
	// decisions: ExpandOff, ExpandScopes (when the bouncer asks for scopes=ip
	// without range) or ExpandAlways.
	Expand string `json:"expand"`
	// V4Bits and V6Bits are the widest prefixes expanded (24: a /24 becomes
	// 256 Ip decisions, a /23 stays a Range).
	V4Bits int `json:"v4_bits"`
	V6Bits int `json:"v6_bits"`
}

// UsageCounter is one cumulative counter of a CrowdSec bouncer's usage
// metrics (e.g. dropped packets of origin muninn).
type UsageCounter struct {
	Name        string  `json:"name"`
	Unit        string  `json:"unit"`
	Origin      string  `json:"origin"`
	Remediation string  `json:"remediation"`
	Value       float64 `json:"value"`
}

const bouncerCols = `id, name, rulesets, created_at, last_seen, applied, hostname, version, last_error, counters,
	cs_expand, cs_expand_v4, cs_expand_v6, cs_wide, cs_epoch, usage_metrics, confirmed, cs_seq, cs_rules`

func scanBouncer(r pgx.CollectableRow) (Bouncer, error) { return scanBouncerWith(r) }

// scanBouncerWith scans bouncerCols, then the columns after them into extra.
func scanBouncerWith(r pgx.Row, extra ...any) (Bouncer, error) {
	var b Bouncer
	var applied, counters, usage, confirmed []byte
	if err := r.Scan(append([]any{&b.ID, &b.Name, &b.Rulesets, &b.CreatedAt, &b.LastSeen, &applied, &b.Hostname, &b.Version, &b.LastError, &counters,
		&b.CrowdSec.Expand, &b.CrowdSec.V4Bits, &b.CrowdSec.V6Bits, &b.WideRanges, &b.RenewEpoch, &usage, &confirmed, &b.FactsSeq, &b.RulesKey}, extra...)...); err != nil {
		return b, err
	}
	if err := json.Unmarshal(confirmed, &b.Confirmed); err != nil {
		return b, fmt.Errorf("decode confirmed versions: %w", err)
	}
	b.Counters = counters
	if err := json.Unmarshal(applied, &b.Applied); err != nil {
		return b, fmt.Errorf("decode applied versions: %w", err)
	}
	if err := json.Unmarshal(usage, &b.Usage); err != nil {
		return b, fmt.Errorf("decode usage metrics: %w", err)
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

// BouncersByKeyHashes returns the bouncers whose keys hash to one of hashes,
// by hash (as a string); a hash no bouncer has is absent. One query however
// many hashes: a cache of key lookups refreshes itself with it.
func (s *Store) BouncersByKeyHashes(ctx context.Context, hashes [][]byte) (map[string]Bouncer, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+bouncerCols+`, key_hash FROM bouncers WHERE key_hash = ANY($1)`, hashes)
	if err != nil {
		return nil, mapErr("bouncers by key", err)
	}
	defer rows.Close()
	out := make(map[string]Bouncer, len(hashes))
	for rows.Next() {
		var hash []byte
		b, err := scanBouncerWith(rows, &hash)
		if err != nil {
			return nil, mapErr("bouncers by key", err)
		}
		out[string(hash)] = b
	}
	return out, mapErr("bouncers by key", rows.Err())
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

// TouchBouncer records a heartbeat of bouncer id at now and returns the
// version the bouncer reported before this one ("" for none, or when there is
// no bouncer id).
func (s *Store) TouchBouncer(ctx context.Context, id int64, hb BouncerHeartbeat, now time.Time) (string, error) {
	applied, err := json.Marshal(hb.Applied)
	if err != nil {
		return "", fmt.Errorf("store: bouncer heartbeat: %w", err)
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
	// A new error (not the one the last heartbeat carried) becomes a
	// bouncer.error event in the same transaction.
	var before string
	err = s.inTx(ctx, "bouncer heartbeat", func(tx pgx.Tx) error {
		var name, prevError string
		err := tx.QueryRow(ctx, `SELECT name, last_error, version FROM bouncers WHERE id = $1 FOR UPDATE`, id).Scan(&name, &prevError, &before)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE bouncers SET last_seen = $2, hostname = $3, version = $4, applied = $5,
			counters = $6, last_error = $7,
			confirmed = confirmed || coalesce((SELECT jsonb_object_agg(name, $2::timestamptz) FROM unnest($8::text[]) AS name), '{}')
			WHERE id = $1`, id, now, hb.Hostname, hb.Version, applied, []byte(counters), hb.LastError, current); err != nil {
			return err
		}
		if hb.LastError == "" || hb.LastError == prevError {
			return nil
		}
		return appendEvents(ctx, tx, []Event{{At: now, Kind: EventBouncerError, SubjectType: "bouncer", Subject: name,
			Details: map[string]any{"error": hb.LastError, "hostname": hb.Hostname, "version": hb.Version}}})
	})
	return before, err
}

// CrowdSecPull records a pull of the CrowdSec stream by bouncer id at now:
// it was seen, runs userAgent (CrowdSec's "<type>/<version>"), now holds the
// decisions of the render versions applied as of renewal epoch epoch with
// durations from the facts at change-feed sequence factsSeq and the rules
// fingerprinted by rulesKey, and wide of the Range decisions were too wide
// to expand. The applied versions, factsSeq and rulesKey are the stream's
// cursor, and each version is confirmed at now.
func (s *Store) CrowdSecPull(ctx context.Context, id int64, userAgent string, applied map[string]int64, wide, epoch, factsSeq int64, rulesKey string, now time.Time) error {
	a, err := json.Marshal(applied)
	if err != nil {
		return fmt.Errorf("store: crowdsec pull: %w", err)
	}
	if applied == nil {
		a = []byte("{}")
	}
	// A pull answers up to the current render of each ruleset: each is
	// confirmed now (the bouncer's lag restarts from zero).
	_, err = s.pool.Exec(ctx, `UPDATE bouncers SET last_seen = $2, version = $3, applied = $4, cs_wide = $5, cs_epoch = $6, cs_seq = $7, cs_rules = $8,
		confirmed = confirmed || coalesce((SELECT jsonb_object_agg(k, $2::timestamptz) FROM jsonb_object_keys($4::jsonb) AS k), '{}')
		WHERE id = $1`,
		id, now, userAgent, a, wide, epoch, factsSeq, rulesKey)
	return mapErr("crowdsec pull", err)
}

// CrowdSecSeen records that bouncer id was seen at now running userAgent,
// without changing what it applied (a HEAD or a live query).
func (s *Store) CrowdSecSeen(ctx context.Context, id int64, userAgent string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE bouncers SET last_seen = $2, version = $3 WHERE id = $1`, id, now, userAgent)
	return mapErr("crowdsec seen", err)
}

// AddBouncerUsage adds the counters of one usage-metrics push of bouncer id
// to its cumulative counters (same name, unit, origin and remediation add up)
// and returns the new totals.
func (s *Store) AddBouncerUsage(ctx context.Context, id int64, items []UsageCounter, now time.Time) ([]UsageCounter, error) {
	var out []UsageCounter
	err := s.inTx(ctx, "add bouncer usage", func(tx pgx.Tx) error {
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT usage_metrics FROM bouncers WHERE id = $1 FOR UPDATE`, id).Scan(&raw); err != nil {
			return mapErr("add bouncer usage", err)
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("decode usage metrics: %w", err)
		}
		for _, it := range items {
			found := false
			for i := range out {
				c := &out[i]
				if c.Name == it.Name && c.Unit == it.Unit && c.Origin == it.Origin && c.Remediation == it.Remediation {
					c.Value += it.Value
					found = true
					break
				}
			}
			if !found {
				out = append(out, it)
			}
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE bouncers SET usage_metrics = $2, last_seen = $3 WHERE id = $1`, id, b, now)
		return err
	})
	return out, err
}

// SetBouncerCrowdSec changes the CrowdSec settings of bouncer name;
// ErrNotFound when there is no such bouncer.
func (s *Store) SetBouncerCrowdSec(ctx context.Context, name string, cs CrowdSecSettings, actor string) (Bouncer, error) {
	var out Bouncer
	err := s.inTx(ctx, "set bouncer crowdsec settings", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+bouncerCols+` FROM bouncers WHERE name = $1 FOR UPDATE`, name)
		if err != nil {
			return err
		}
		before, err := pgx.CollectExactlyOneRow(rows, scanBouncer)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: set bouncer crowdsec settings: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `UPDATE bouncers SET cs_expand = $2, cs_expand_v4 = $3, cs_expand_v6 = $4 WHERE name = $1 RETURNING `+bouncerCols,
			name, cs.Expand, cs.V4Bits, cs.V6Bits)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectExactlyOneRow(rows, scanBouncer); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "bouncer.crowdsec", "bouncer/"+name, before.CrowdSec, out.CrowdSec)
	})
	return out, err
}

// CrowdSecStep is the change of one ruleset's CrowdSec decision set from
// render version Base to Version; Added and Deleted are encoded by the render
// package.
// A step with Base == Version and nothing added or deleted marks a version
// whose decision set a process computed (and may have served).
type CrowdSecStep struct {
	Ruleset        string
	Base, Version  int64
	Added, Deleted []byte
	CreatedAt      time.Time
}

// crowdSecStepsKept is how many versions back a ruleset's steps are kept: a
// bouncer whose cursor is older gets every decision again.
const crowdSecStepsKept = 100000

// SaveCrowdSecStep stores a step (a step already stored by another process
// stays: both computed it from the same renders) and prunes the ruleset's
// steps that are too old to be asked for.
func (s *Store) SaveCrowdSecStep(ctx context.Context, st CrowdSecStep) error {
	return s.inTx(ctx, "save crowdsec step", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO crowdsec_steps (ruleset, base, version, added, deleted) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING`, st.Ruleset, st.Base, st.Version, st.Added, st.Deleted); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM crowdsec_steps WHERE ruleset = $1 AND version < $2`, st.Ruleset, st.Version-crowdSecStepsKept)
		return err
	})
}

// CrowdSecSteps returns the stored steps of ruleset that lie between render
// versions from and to (from <= base, version <= to), by base then version.
func (s *Store) CrowdSecSteps(ctx context.Context, ruleset string, from, to int64) ([]CrowdSecStep, error) {
	rows, err := s.pool.Query(ctx, `SELECT ruleset, base, version, added, deleted, created_at FROM crowdsec_steps
		WHERE ruleset = $1 AND base >= $2 AND version <= $3 ORDER BY base, version`, ruleset, from, to)
	if err != nil {
		return nil, mapErr("crowdsec steps", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CrowdSecStep, error) {
		var st CrowdSecStep
		err := r.Scan(&st.Ruleset, &st.Base, &st.Version, &st.Added, &st.Deleted, &st.CreatedAt)
		return st, err
	})
	return out, mapErr("crowdsec steps", err)
}
