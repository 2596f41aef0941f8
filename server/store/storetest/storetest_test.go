package storetest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestStoreIsMigratedAndIsolated(t *testing.T) {
	t.Parallel()
	a, b := storetest.Store(t), storetest.Store(t)
	want, err := store.LatestVersion()
	require.NoError(t, err)
	for _, st := range []*store.Store{a, b} {
		got, err := st.SchemaVersion(context.Background())
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err = a.CreateToken(context.Background(), "only-in-a", "reader", nil, store.HashSecret("x"), "test")
	require.NoError(t, err)
	n, err := b.CountTokens(context.Background(), "")
	require.NoError(t, err)
	require.Zero(t, n, "databases of two tests must not share rows")
}

// TestDropDatabases drops a stale database and one of the named run, and
// keeps a fresh one of another run and the one a test is connected to.
func TestDropDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Store(t)
	var own string
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT current_database()`).Scan(&own))
	suffix := func() string {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	run, other := "drop"+suffix(), "keep"+suffix()
	now := time.Now()
	stale := fmt.Sprintf("muninn_test_%x_0_%s", now.Add(-storetest.StaleAfter-time.Minute).Unix(), suffix())
	inRun := fmt.Sprintf("muninn_test_%x_%s_%s", now.Unix(), run, suffix())
	kept := fmt.Sprintf("muninn_test_%x_%s_%s", now.Unix(), other, suffix())
	for _, db := range []string{stale, inRun, kept} {
		_, err := st.Pool().Exec(ctx, `CREATE DATABASE `+db)
		require.NoError(t, err)
	}
	t.Cleanup(func() { _, _ = st.Pool().Exec(context.Background(), `DROP DATABASE IF EXISTS `+kept) })

	n, err := storetest.DropDatabases(ctx, now.Add(-storetest.StaleAfter), run)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 2)
	exists := func(db string) bool {
		var ok bool
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&ok))
		return ok
	}
	require.False(t, exists(stale), "a database older than StaleAfter is dropped")
	require.False(t, exists(inRun), "a database of the named run is dropped")
	require.True(t, exists(kept), "a fresh database of another run stays")
	require.True(t, exists(own), "a database someone is connected to stays")
}
