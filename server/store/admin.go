package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Tag is a tag's definition.
type Tag struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Color       string        `json:"color"`
	DefaultTTL  time.Duration `json:"default_ttl,omitempty"`
	CreatedAt   time.Time     `json:"-"`
	UpdatedAt   time.Time     `json:"-"`
}

const tagSelect = `SELECT t.name, t.description, t.color, t.default_ttl, t.created_at, t.updated_at
	FROM tags t`

func scanTag(r pgx.CollectableRow) (Tag, error) {
	var t Tag
	var ttl pgtype.Interval
	if err := r.Scan(&t.Name, &t.Description, &t.Color, &ttl, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return t, err
	}
	if ttl.Valid {
		t.DefaultTTL = time.Duration(ttl.Microseconds)*time.Microsecond +
			time.Duration(ttl.Days)*24*time.Hour + time.Duration(ttl.Months)*30*24*time.Hour
	}
	return t, nil
}

// Tags lists every tag.
func (s *Store) Tags(ctx context.Context) ([]Tag, error) {
	rows, err := s.pool.Query(ctx, tagSelect+` ORDER BY t.name`)
	if err != nil {
		return nil, mapErr("list tags", err)
	}
	tags, err := pgx.CollectRows(rows, scanTag)
	return tags, mapErr("list tags", err)
}

// TagByName returns one tag.
func (s *Store) TagByName(ctx context.Context, name string) (Tag, error) {
	rows, err := s.pool.Query(ctx, tagSelect+` WHERE t.name = $1`, name)
	if err != nil {
		return Tag{}, mapErr("get tag", err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, scanTag)
	return t, mapErr("get tag", err)
}

func ttlInterval(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

// PutTag creates or updates a tag's definition.
func (s *Store) PutTag(ctx context.Context, t Tag, actor string) error {
	return s.inTx(ctx, "put tag", func(tx pgx.Tx) error {
		var before *Tag
		rows, err := tx.Query(ctx, tagSelect+` WHERE t.name = $1`, t.Name)
		if err != nil {
			return err
		}
		if old, err := pgx.CollectExactlyOneRow(rows, scanTag); err == nil {
			before = &old
		} else if err != pgx.ErrNoRows {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tags (name, description, color, default_ttl) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET description = excluded.description, color = excluded.color,
			default_ttl = excluded.default_ttl, updated_at = now()`, t.Name, t.Description, t.Color, ttlInterval(t.DefaultTTL)); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "tag.put", "tag/"+t.Name, before, t)
	})
}

// DeleteTag deletes a tag's definition; assertions using the name stay.
func (s *Store) DeleteTag(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete tag", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, tagSelect+` WHERE t.name = $1`, name)
		if err != nil {
			return err
		}
		old, err := pgx.CollectExactlyOneRow(rows, scanTag)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE name = $1`, name); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "tag.delete", "tag/"+name, old, nil)
	})
}

// Token is an API credential without its secret.
type Token struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"-"`
}

// HashSecret is how token and key secrets are stored: only their SHA-256.
// Secrets are 256 random bits, so a fast hash is enough.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateToken stores a token whose secret hashes to hash.
func (s *Store) CreateToken(ctx context.Context, name, role string, expiresAt *time.Time, hash []byte, actor string) (Token, error) {
	var t Token
	err := s.inTx(ctx, "create token", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO tokens (name, role, hash, expires_at) VALUES ($1, $2, $3, $4)
			RETURNING id, name, role, created_at, expires_at, last_used_at`, name, role, hash, expiresAt).
			Scan(&t.ID, &t.Name, &t.Role, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
		if err != nil {
			return mapErr("create token", err)
		}
		return audit(ctx, tx, actor, "token.create", fmt.Sprintf("token/%d", t.ID), nil, t)
	})
	return t, err
}

// Tokens lists every token.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, role, created_at, expires_at, last_used_at FROM tokens ORDER BY id`)
	if err != nil {
		return nil, mapErr("list tokens", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) {
		var t Token
		return t, r.Scan(&t.ID, &t.Name, &t.Role, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
	})
	return ts, mapErr("list tokens", err)
}

// CountTokens counts tokens with role (every token when role is empty).
func (s *Store) CountTokens(ctx context.Context, role string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE $1 = '' OR role = $1`, role).Scan(&n)
	return n, mapErr("count tokens", err)
}

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, id int64, actor string) error {
	return s.inTx(ctx, "delete token", func(tx pgx.Tx) error {
		var t Token
		err := tx.QueryRow(ctx, `DELETE FROM tokens WHERE id = $1 RETURNING id, name, role, created_at, expires_at, last_used_at`, id).
			Scan(&t.ID, &t.Name, &t.Role, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
		if err != nil {
			return mapErr("delete token", err)
		}
		return audit(ctx, tx, actor, "token.delete", fmt.Sprintf("token/%d", id), t, nil)
	})
}

// TokenByHash finds the token whose secret hashes to hash.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (Token, error) {
	var t Token
	err := s.pool.QueryRow(ctx, `SELECT id, name, role, created_at, expires_at, last_used_at FROM tokens WHERE hash = $1`, hash).
		Scan(&t.ID, &t.Name, &t.Role, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
	return t, mapErr("token by hash", err)
}

// TouchToken records that a token was used.
func (s *Store) TouchToken(ctx context.Context, id int64, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE tokens SET last_used_at = $2 WHERE id = $1`, id, at)
	return mapErr("touch token", err)
}

// AuditEntry is one change in the audit log.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Actor  string
	Action string
	Object string
	// Before and After are the object before and after the change as stored:
	// any JSON value (an object, or an array such as a bouncer's rulesets or
	// the guard's entries); nil when absent.
	Before json.RawMessage
	After  json.RawMessage
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Actor string
	// Object is an object type ("token") or a type/id prefix ("prefix/198.51.100.0/24").
	Object string
	Since  *time.Time
}

// Audit lists audit entries newest first, with ids below before (0 = from the newest).
func (s *Store) Audit(ctx context.Context, f AuditFilter, before int64, limit int) ([]AuditEntry, error) {
	object := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(f.Object)
	rows, err := s.pool.Query(ctx, `SELECT id, at, actor, action, object, before, after FROM audit
		WHERE ($1 = 0 OR id < $1) AND ($2 = '' OR actor = $2)
		  AND ($3 = '' OR object = $3 OR object LIKE $3 || '/%') AND ($4::timestamptz IS NULL OR at >= $4)
		ORDER BY id DESC LIMIT $5`, before, f.Actor, object, f.Since, limit)
	if err != nil {
		return nil, mapErr("list audit", err)
	}
	es, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var b, a []byte
		if err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Object, &b, &a); err != nil {
			return e, err
		}
		if b != nil {
			e.Before = b
		}
		if a != nil {
			e.After = a
		}
		return e, nil
	})
	return es, mapErr("list audit", err)
}

// Prune batch sizes: each batch is one short transaction (and, for
// prefixes, one change-feed row), so pruning a million expired prefixes never
// holds locks, or a serve process's catch-up, for long.
const (
	prunePrefixBatch = 1000
)

// Pruning statements. Expired assertions go prefix by prefix: their prefixes
// are locked first, in prefix order like every writer, so an ingest that
// re-asserts one of them waits for the batch instead of deadlocking with it.
const (
	// Sightings are counted per UTC day (migration 0017): a day goes once
	// all of it is older than the retention.
	pruneSightings = `WITH d AS (DELETE FROM sighting_counts WHERE day < ($1::timestamptz AT TIME ZONE 'UTC')::date
		RETURNING sightings) SELECT coalesce(sum(sightings), 0)::bigint FROM d`
	lockExpired = `SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(prefix), '{}') FROM (
		SELECT p.id, p.prefix FROM prefixes p WHERE p.id IN (
		  SELECT a.prefix_id FROM assertions a WHERE a.expires_at < $1 LIMIT $2)
		ORDER BY p.prefix FOR UPDATE) e`
	deleteExpired = `DELETE FROM assertions WHERE prefix_id = ANY ($1::bigint[]) AND expires_at < $2`
)

// Prune deletes the sighting counts of days wholly older than keepSightings
// (counted per UTC day since migration 0017), assertions that
// expired more than keepExpired ago, and the prefixes left with no assertion
// and no sighting (ghosts: expired prefixes, and those a feed refresh or
// delete left behind), in batches. Every batch that touches prefixes records
// them in the change feed, so every serve process's index drops what went.
// It returns how many sightings (summed counts), assertions and prefixes went; after
// an error, those of the batches done.
func (s *Store) Prune(ctx context.Context, now time.Time, keepSightings, keepExpired time.Duration) (sightings, assertions, prefixes int64, err error) {
	if err := s.pool.QueryRow(ctx, pruneSightings, now.Add(-keepSightings)).Scan(&sightings); err != nil {
		return sightings, assertions, prefixes, mapErr("prune sightings", err)
	}
	cutoff := now.Add(-keepExpired)
	for {
		var n int
		err := s.inTx(ctx, "prune expired assertions", func(tx pgx.Tx) error {
			var ids []int64
			var touched []netip.Prefix
			if err := tx.QueryRow(ctx, lockExpired, cutoff, prunePrefixBatch).Scan(&ids, &touched); err != nil {
				return err
			}
			if n = len(ids); n == 0 {
				return nil
			}
			tag, err := tx.Exec(ctx, deleteExpired, ids, cutoff)
			if err != nil {
				return err
			}
			assertions += tag.RowsAffected()
			gone, err := deleteGhostPrefixes(ctx, tx, ids, 0)
			if err != nil {
				return err
			}
			prefixes += int64(len(gone))
			// Every touched prefix, not only the deleted ones: the index
			// drops the expired assertions of those that stay too.
			return recordChange(ctx, tx, ChangePrefixes, touched)
		})
		if err != nil {
			return sightings, assertions, prefixes, err
		}
		if n == 0 {
			break
		}
	}
	for {
		var gone []netip.Prefix
		err := s.inTx(ctx, "prune ghost prefixes", func(tx pgx.Tx) error {
			var err error
			if gone, err = deleteGhostPrefixes(ctx, tx, nil, prunePrefixBatch); err != nil || len(gone) == 0 {
				return err
			}
			return recordChange(ctx, tx, ChangePrefixes, gone)
		})
		if err != nil {
			return sightings, assertions, prefixes, err
		}
		prefixes += int64(len(gone))
		if len(gone) < prunePrefixBatch {
			return sightings, assertions, prefixes, nil
		}
	}
}
