package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muninn/muninn/server/resolve"
)

// RDAPFacts is the most specific cached RDAP/whois network containing a prefix.
type RDAPFacts struct {
	Network    netip.Prefix
	Handle     string
	Name       string
	Org        string
	Country    string
	AbuseEmail string
	Registry   string
	FetchedAt  time.Time
}

// Hostname is a name of an address.
type Hostname struct {
	Name     string
	Source   string
	LastSeen time.Time
}

// Override is a person's correction of one prefix. PutOverride replaces every
// manual assertion on the prefix with it.
type Override struct {
	Classification string     `json:"classification,omitempty"`
	AddTags        []string   `json:"add_tags,omitempty"`
	SuppressTags   []string   `json:"suppress_tags,omitempty"`
	Note           string     `json:"note,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	// WidthLifted says an admin accepted the prefix though it is wider than
	// the default limit (policy.CheckWidth); the write records it in the
	// audit log as width.lift.
	WidthLifted bool `json:"-"`
}

func (o Override) empty() bool {
	return o.Classification == "" && len(o.AddTags) == 0 && len(o.SuppressTags) == 0 && o.Note == ""
}

// manualOverride reads the current manual assertions of prefix id as an Override.
func manualOverride(ctx context.Context, tx pgx.Tx, id int64) (*Override, error) {
	rows, err := tx.Query(ctx, `SELECT kind, value, expires_at FROM assertions
		WHERE prefix_id = $1 AND source LIKE 'manual:%' ORDER BY kind, value`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var o Override
	found := false
	for rows.Next() {
		var kind, value string
		var exp *time.Time
		if err := rows.Scan(&kind, &value, &exp); err != nil {
			return nil, err
		}
		found = true
		o.ExpiresAt = exp
		switch kind {
		case resolve.KindClassification:
			o.Classification = value
		case resolve.KindTag:
			o.AddTags = append(o.AddTags, value)
		case resolve.KindSuppress:
			o.SuppressTags = append(o.SuppressTags, value)
		case resolve.KindNote:
			o.Note = value
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	return &o, nil
}

// PutOverride stores o as the manual override of p made by actor (a source
// name without the "manual:" prefix), replacing any earlier one, and writes the
// change to the audit log in the same transaction.
func (s *Store) PutOverride(ctx context.Context, p netip.Prefix, o Override, actor string, now time.Time) error {
	return s.inTx(ctx, "put override", func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `
			INSERT INTO prefixes (prefix, first_seen, last_seen) VALUES ($1, $2, $2)
			ON CONFLICT (prefix) DO UPDATE SET updated_at = now()
			RETURNING id`, p, now).Scan(&id)
		if err != nil {
			return err
		}
		before, err := manualOverride(ctx, tx, id)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM assertions WHERE prefix_id = $1 AND source LIKE 'manual:%'`, id); err != nil {
			return err
		}
		source := resolve.ManualPrefix + actor
		insert := func(kind, value string) error {
			_, err := tx.Exec(ctx, `INSERT INTO assertions (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
				VALUES ($1, $2, $3, $4, $5, $5, $6, $7) ON CONFLICT DO NOTHING`, id, source, kind, value, now, o.ExpiresAt, actor)
			return err
		}
		if o.Classification != "" {
			if err := insert(resolve.KindClassification, o.Classification); err != nil {
				return err
			}
		}
		for _, t := range o.AddTags {
			if err := insert(resolve.KindTag, t); err != nil {
				return err
			}
		}
		for _, t := range o.SuppressTags {
			if err := insert(resolve.KindSuppress, t); err != nil {
				return err
			}
		}
		if o.Note != "" {
			if err := insert(resolve.KindNote, o.Note); err != nil {
				return err
			}
		}
		if err := ensureTags(ctx, tx, o.AddTags); err != nil {
			return err
		}
		var after *Override
		if !o.empty() {
			after = &o
		} else if _, err := deleteGhostPrefixes(ctx, tx, []int64{id}, 0); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "override.put", "prefix/"+p.String(), before, after); err != nil {
			return err
		}
		if o.WidthLifted {
			if err := auditLift(ctx, tx, actor, "prefix/"+p.String(), []netip.Prefix{p}); err != nil {
				return err
			}
		}
		return recordChange(ctx, tx, ChangePrefixes, []netip.Prefix{p})
	})
}

// A ghost is a stored prefix with no assertion and no sighting: it does not
// exist for any output (DESIGN.md §3), so it is not kept either. Deleting one
// takes two statements: the first locks the candidates (in prefix order, like
// every writer), which blocks a concurrent writer from adding an assertion to
// them (its foreign key check needs a share lock); the second, with a fresh
// snapshot, deletes those still without any. A single DELETE could remove a
// prefix, and by cascade the assertion, that a writer added while it waited.
const (
	lockGhosts = `SELECT coalesce(array_agg(id), '{}') FROM (
		SELECT p.id FROM prefixes p WHERE ($1::bigint[] IS NULL OR p.id = ANY ($1::bigint[])) AND p.sightings = 0
		  AND NOT EXISTS (SELECT 1 FROM assertions a WHERE a.prefix_id = p.id)
		ORDER BY p.prefix LIMIT $2 FOR UPDATE) g`
	deleteGhosts = `WITH g AS (DELETE FROM prefixes p WHERE p.id = ANY ($1::bigint[]) AND p.sightings = 0
		  AND NOT EXISTS (SELECT 1 FROM assertions a WHERE a.prefix_id = p.id) RETURNING p.prefix)
		SELECT coalesce(array_agg(prefix), '{}') FROM g`
)

// deleteGhostPrefixes deletes the ghosts among the prefixes with the given
// ids (nil: among every stored prefix), the first limit of them in prefix
// order (0: all), and returns the prefixes deleted.
func deleteGhostPrefixes(ctx context.Context, tx pgx.Tx, ids []int64, limit int) ([]netip.Prefix, error) {
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	var locked []int64
	if err := tx.QueryRow(ctx, lockGhosts, ids, lim).Scan(&locked); err != nil {
		return nil, fmt.Errorf("lock ghost prefixes: %w", err)
	}
	if len(locked) == 0 {
		return nil, nil
	}
	var gone []netip.Prefix
	if err := tx.QueryRow(ctx, deleteGhosts, locked).Scan(&gone); err != nil {
		return nil, fmt.Errorf("delete ghost prefixes: %w", err)
	}
	return gone, nil
}

// DeleteOverride removes every manual assertion on p, and p itself when
// nothing else is stored about it. ErrNotFound when there is none.
func (s *Store) DeleteOverride(ctx context.Context, p netip.Prefix, actor string) error {
	return s.inTx(ctx, "delete override", func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM prefixes WHERE prefix = $1`, p).Scan(&id); err != nil {
			if err == pgx.ErrNoRows {
				return fmt.Errorf("store: delete override: %w", ErrNotFound)
			}
			return err
		}
		before, err := manualOverride(ctx, tx, id)
		if err != nil {
			return err
		}
		if before == nil {
			return fmt.Errorf("store: delete override: %w", ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM assertions WHERE prefix_id = $1 AND source LIKE 'manual:%'`, id); err != nil {
			return err
		}
		if _, err := deleteGhostPrefixes(ctx, tx, []int64{id}, 0); err != nil {
			return err
		}
		if err := audit(ctx, tx, actor, "override.delete", "prefix/"+p.String(), before, nil); err != nil {
			return err
		}
		return recordChange(ctx, tx, ChangePrefixes, []netip.Prefix{p})
	})
}

// ChangeChannel is the LISTEN/NOTIFY channel on which every change that can alter
// a render is announced; the payload names what changed.
const ChangeChannel = "muninn_changes"

func notifyChange(ctx context.Context, tx pgx.Tx, what string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, ChangeChannel, what)
	return err
}

func audit(ctx context.Context, tx pgx.Tx, actor, action, object string, before, after any) error {
	b, err := jsonOrNil(before)
	if err != nil {
		return err
	}
	a, err := jsonOrNil(after)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit (actor, action, object, before, after) VALUES ($1, $2, $3, $4, $5)`, actor, action, object, b, a)
	return err
}

// ActionWidthLift is the audit action of prefixes accepted wider than the
// default limit because an admin sent allow_wide.
const ActionWidthLift = "width.lift"

// auditLift records, in the transaction of the write that stores them, the
// prefixes an admin accepted wider than the default limit.
func auditLift(ctx context.Context, tx pgx.Tx, actor, object string, lifted []netip.Prefix) error {
	if len(lifted) == 0 {
		return nil
	}
	return audit(ctx, tx, actor, ActionWidthLift, object, nil, struct {
		Prefixes []netip.Prefix `json:"prefixes"`
	}{lifted})
}

func jsonOrNil(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal audit value: %w", err)
	}
	if string(b) == "null" {
		return nil, nil
	}
	return b, nil
}

func ensureTags(ctx context.Context, tx pgx.Tx, names []string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO tags (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, names)
	return err
}
