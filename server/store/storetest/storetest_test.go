package storetest_test

import (
	"context"
	"testing"

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
