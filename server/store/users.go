package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a person who logs in to the web UI.
type User struct {
	ID           int64      `json:"id"`
	Name         string     `json:"name"`
	Role         string     `json:"role"`
	PasswordHash string     `json:"-"`
	CreatedAt    time.Time  `json:"created_at"`
	LastLoginAt  *time.Time `json:"-"`
	// DisabledAt is when the user was disabled; nil for an active user.
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

// Session is a logged-in browser: its user and its CSRF token.
type Session struct {
	User      User
	CSRF      string
	ExpiresAt time.Time
}

const userColumns = `u.id, u.name, u.role, u.password_hash, u.created_at, u.last_login_at, u.disabled_at`

func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	dst := append([]any{&u.ID, &u.Name, &u.Role, &u.PasswordHash, &u.CreatedAt, &u.LastLoginAt, &u.DisabledAt}, extra...)
	return u, row.Scan(dst...)
}

// CreateUser stores a user whose password hashes to passwordHash (an argon2id
// PHC string). ErrConflict when the name is taken.
func (s *Store) CreateUser(ctx context.Context, name, role, passwordHash, actor string) (User, error) {
	var u User
	err := s.inTx(ctx, "create user", func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `INSERT INTO users AS u (name, role, password_hash) VALUES ($1, $2, $3)
			RETURNING `+userColumns, name, role, passwordHash))
		if err != nil {
			return mapErr("create user", err)
		}
		return audit(ctx, tx, actor, "user.create", fmt.Sprintf("user/%d", u.ID), nil, u)
	})
	return u, err
}

// UserByName returns the user who may log in as name: ErrNotFound for a
// disabled user too, so a login as one fails like any wrong password.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.name = $1 AND u.disabled_at IS NULL`, name))
	return u, mapErr("user by name", err)
}

// Users returns every user, disabled ones included, by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.name`)
	if err != nil {
		return nil, mapErr("list users", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, mapErr("list users", err)
		}
		out = append(out, u)
	}
	return out, mapErr("list users", rows.Err())
}

// UserChange is one change UpdateUser makes; nil fields stay as they are.
type UserChange struct {
	// PasswordHash replaces the password (and ends the user's sessions).
	PasswordHash *string
	// Role replaces the role (sessions read it on every request, so it
	// applies at once).
	Role *string
	// Disabled disables (ending the user's sessions) or enables the user.
	Disabled *bool
}

// UpdateUser applies ch to the user named name at now, audited as actor, and
// returns the user as it is afterwards; ErrNotFound when there is none.
// Changing the password or disabling ends every session of the user in the
// same transaction: a browser logged in as them is out at its next request.
func (s *Store) UpdateUser(ctx context.Context, name string, ch UserChange, now time.Time, actor string) (User, error) {
	var after User
	err := s.inTx(ctx, "update user", func(tx pgx.Tx) error {
		before, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.name = $1 FOR UPDATE`, name))
		if err != nil {
			return mapErr("update user", err)
		}
		var disabledAt *time.Time
		if ch.Disabled != nil && *ch.Disabled {
			disabledAt = &now
		}
		after, err = scanUser(tx.QueryRow(ctx, `UPDATE users AS u SET
				password_hash = coalesce($2, u.password_hash),
				role = coalesce($3, u.role),
				disabled_at = CASE WHEN $4::boolean IS NULL THEN u.disabled_at WHEN $4 THEN coalesce(u.disabled_at, $5) ELSE NULL END
			WHERE u.id = $1 RETURNING `+userColumns, before.ID, ch.PasswordHash, ch.Role, ch.Disabled, disabledAt))
		if err != nil {
			return mapErr("update user", err)
		}
		if ch.PasswordHash != nil || after.DisabledAt != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, before.ID); err != nil {
				return mapErr("update user: end sessions", err)
			}
		}
		action := "user.update"
		switch {
		case ch.Disabled != nil && *ch.Disabled:
			action = "user.disable"
		case ch.Disabled != nil:
			action = "user.enable"
		case ch.PasswordHash != nil:
			action = "user.password"
		case ch.Role != nil:
			action = "user.role"
		}
		return audit(ctx, tx, actor, action, fmt.Sprintf("user/%d", before.ID), before, after)
	})
	return after, err
}

// DeleteUser deletes the user named name and (by the foreign key) every
// session of theirs; the name can be used again. ErrNotFound when there is none.
func (s *Store) DeleteUser(ctx context.Context, name, actor string) error {
	return s.inTx(ctx, "delete user", func(tx pgx.Tx) error {
		u, err := scanUser(tx.QueryRow(ctx, `DELETE FROM users AS u WHERE u.name = $1 RETURNING `+userColumns, name))
		if err != nil {
			return mapErr("delete user", err)
		}
		return audit(ctx, tx, actor, "user.delete", fmt.Sprintf("user/%d", u.ID), u, nil)
	})
}

// CreateSession stores a session of user whose secret hashes to hash, and
// records the login time.
func (s *Store) CreateSession(ctx context.Context, hash []byte, userID int64, csrf string, now, expiresAt time.Time, ip, userAgent string) error {
	return s.inTx(ctx, "create session", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at, ip, user_agent)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, hash, userID, csrf, now, expiresAt, ip, userAgent); err != nil {
			return err
		}
		// Expired sessions of this user go on each login, so the table stays small
		// without a sweeper.
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND expires_at < $2`, userID, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE users SET last_login_at = $2 WHERE id = $1`, userID, now)
		return err
	})
}

// SessionByHash returns the live session whose secret hashes to hash, with its
// user; ErrNotFound when there is none or it expired.
func (s *Store) SessionByHash(ctx context.Context, hash []byte, now time.Time) (Session, error) {
	var sess Session
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+`, s.csrf, s.expires_at
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL`, hash, now), &sess.CSRF, &sess.ExpiresAt)
	if err != nil {
		return Session{}, mapErr("session by hash", err)
	}
	sess.User = u
	return sess, nil
}

// DeleteSession ends a session (logout). Deleting a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, hash)
	return mapErr("delete session", err)
}

// ClaimLoginAttempt claims a login attempt for username at now, before the
// password is checked, counting it as a failure until LoginSucceeded says
// otherwise. When an earlier failure's delay has not passed it claims nothing
// and returns how long to wait. delay(n) is the wait after n failures in a
// row; failures older than forgetBefore are forgotten (their rows pruned, for
// every name). The row lock makes concurrent claims of one name take turns,
// so no more attempts run than the delays allow.
func (s *Store) ClaimLoginAttempt(ctx context.Context, username string, now, forgetBefore time.Time, delay func(failures int) time.Duration) (time.Duration, error) {
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_throttle WHERE updated_at < $1`, forgetBefore); err != nil {
		return 0, mapErr("prune login throttle", err)
	}
	var wait time.Duration
	err := s.inTx(ctx, "claim login attempt", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO login_throttle (username, failures, next_at, updated_at)
			VALUES ($1, 0, $2, $2) ON CONFLICT DO NOTHING`, username, now); err != nil {
			return err
		}
		var failures int
		var next, updated time.Time
		if err := tx.QueryRow(ctx, `SELECT failures, next_at, updated_at FROM login_throttle WHERE username = $1 FOR UPDATE`,
			username).Scan(&failures, &next, &updated); err != nil {
			return err
		}
		if updated.Before(forgetBefore) {
			failures = 0
		} else if next.After(now) {
			wait = next.Sub(now)
			return nil
		}
		failures++
		_, err := tx.Exec(ctx, `UPDATE login_throttle SET failures = $2, next_at = $3, updated_at = $4 WHERE username = $1`,
			username, failures, now.Add(delay(failures)), now)
		return err
	})
	return wait, err
}

// LoginSucceeded forgets username's failures after a good password.
func (s *Store) LoginSucceeded(ctx context.Context, username string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM login_throttle WHERE username = $1`, username)
	return mapErr("clear login throttle", err)
}

// ServerKey returns the shared secret key called name, creating it from
// fresh (random, 32 bytes) when no process has yet.
func (s *Store) ServerKey(ctx context.Context, name string, fresh []byte) ([]byte, error) {
	var key []byte
	err := s.pool.QueryRow(ctx, `WITH ins AS (INSERT INTO server_keys (name, key) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING key)
		SELECT key FROM ins UNION ALL SELECT key FROM server_keys WHERE name = $1 LIMIT 1`, name, fresh).Scan(&key)
	return key, mapErr("server key", err)
}
