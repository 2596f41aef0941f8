package store_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// Every statement of the server's pool is bounded: a heavy query is
// canceled by PostgreSQL (57014) instead of holding a connection.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, storetest.URL(t), 2, slog.New(slog.DiscardHandler), store.StatementTimeout(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	var setting string
	require.NoError(t, st.Pool().QueryRow(ctx, `SHOW statement_timeout`).Scan(&setting))
	require.Equal(t, "50ms", setting)
	_, err = st.Pool().Exec(ctx, `SELECT pg_sleep(10)`)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "57014", pgErr.Code)
	// The index's bulk load lifts it for its own transaction.
	_, err = st.LoadAll(ctx, time.Now(), func(resolve.Prefix) error { return nil }, func(store.GeoNetwork) error { return nil })
	require.NoError(t, err)
}
