package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestMigrateDownAndUpAgain(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	pending, err := st.PendingMigrations(ctx)
	require.NoError(t, err)
	require.Empty(t, pending)
	latest, err := store.LatestVersion()
	require.NoError(t, err)
	reverted, err := st.MigrateDown(ctx)
	require.NoError(t, err)
	require.Equal(t, latest, reverted)
	pending, err = st.PendingMigrations(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{latest}, pending)
	applied, err := st.Migrate(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{latest}, applied)
	applied, err = st.Migrate(ctx)
	require.NoError(t, err)
	require.Empty(t, applied, "migrating twice applies nothing")
}
