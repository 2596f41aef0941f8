// Package store is the only package that speaks SQL. It wraps a pgx pool and
// maps database errors to the sentinels callers branch on.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the object exists already.
	ErrConflict = errors.New("already exists")
)

// Store is muninn's state in PostgreSQL.
type Store struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	merge *merger
	agg   *aggregator
}

// Open connects to url and checks the connection.
func Open(ctx context.Context, url string, maxConns int32, log *slog.Logger, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	for _, o := range opts {
		o(cfg)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// JIT compilation costs ~100 ms and triggers on the inflated cost estimates
	// of GiST containment queries; muninn's queries are short or bulk, never
	// long-running analytics, so it only ever hurts.
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: ping: %w", err)
	}
	return &Store{pool: pool, log: log, merge: newMerger(), agg: newAggregator()}, nil
}

// Option tunes the pool Open makes.
type Option func(*pgxpool.Config)

// StatementTimeout bounds every statement of the pool's connections (its
// statement_timeout), so one heavy query cannot hold a connection, and what
// waits for it, indefinitely. The bulk paths that legitimately run long
// (loading the index, applying a feed, replacing geo data, migrations) lift
// it for their own transaction.
func StatementTimeout(d time.Duration) Option {
	return func(c *pgxpool.Config) {
		if d > 0 {
			c.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(d.Milliseconds(), 10)
		}
	}
}

// unbounded lifts the statement timeout for the rest of tx: a bulk path.
func unbounded(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
		return fmt.Errorf("lift statement timeout: %w", err)
	}
	return nil
}

// New wraps an existing pool.
func New(pool *pgxpool.Pool, log *slog.Logger) *Store {
	return &Store{pool: pool, log: log, merge: newMerger(), agg: newAggregator()}
}

// Pool returns the underlying pool (for River, which shares it).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the merger (a merge under way is rolled back: its rows stay
// in the log) and closes the pool.
func (s *Store) Close() {
	s.agg.close()
	s.merge.close()
	s.pool.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// mapErr turns driver errors into the package's sentinels.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("store: %s: %w", op, ErrConflict)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// inTx runs fn in one transaction.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
			return err
		}
		return mapErr(op, err)
	}
	return nil
}
