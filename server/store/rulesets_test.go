package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestSaveRenderOnlyOnNewHash(t *testing.T) {
	t.Parallel()
	st, ctx := storetest.Store(t), context.Background()
	body := func(v int64, _ time.Time) ([]byte, error) { return []byte(`{"v":1}`), nil }
	r1, err := st.SaveRender(ctx, "edge", "sha256:a", 1, time.Now(), body)
	require.NoError(t, err)
	require.EqualValues(t, 1, r1.Version)
	r2, err := st.SaveRender(ctx, "edge", "sha256:a", 1, time.Now(), func(int64, time.Time) ([]byte, error) {
		t.Fatal("an unchanged hash must not build a body")
		return nil, nil
	})
	require.NoError(t, err)
	require.Equal(t, r1.Version, r2.Version)
	r3, err := st.SaveRender(ctx, "edge", "sha256:b", 2, time.Now(), body)
	require.NoError(t, err)
	require.EqualValues(t, 2, r3.Version)
	// Content computed from older facts than the newest render's is not stored.
	r4, err := st.SaveRender(ctx, "edge", "sha256:stale", 1, time.Now(), func(int64, time.Time) ([]byte, error) {
		t.Fatal("a render from older facts must not build a body")
		return nil, nil
	})
	require.NoError(t, err)
	require.Equal(t, r3.Version, r4.Version)
	require.Equal(t, "sha256:b", r4.Hash)
	latest, err := st.LatestRender(ctx, "edge")
	require.NoError(t, err)
	require.Equal(t, "sha256:b", latest.Hash)
	_, err = st.LatestRender(ctx, "none")
	require.ErrorIs(t, err, store.ErrNotFound)
}
