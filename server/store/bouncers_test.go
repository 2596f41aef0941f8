package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// TestBouncersByKeyHashes: one query answers many key hashes, by hash; a hash
// no bouncer has is absent, and a deleted bouncer's hash too.
func TestBouncersByKeyHashes(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	a, err := st.CreateBouncer(ctx, "a", []string{}, []byte("hash-a"), "test")
	require.NoError(t, err)
	_, err = st.CreateBouncer(ctx, "b", []string{}, []byte("hash-b"), "test")
	require.NoError(t, err)
	got, err := st.BouncersByKeyHashes(ctx, [][]byte{[]byte("hash-a"), []byte("hash-b"), []byte("hash-none")})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, a.ID, got["hash-a"].ID)
	require.Equal(t, "b", got["hash-b"].Name)

	require.NoError(t, st.DeleteBouncer(ctx, "b", "test"))
	got, err = st.BouncersByKeyHashes(ctx, [][]byte{[]byte("hash-a"), []byte("hash-b")})
	require.NoError(t, err)
	require.Equal(t, []int64{a.ID}, ids(got))
}

// TestTouchBouncerReturnsPreviousVersion: a heartbeat returns the version
// the bouncer reported before it.
func TestTouchBouncerReturnsPreviousVersion(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	b, err := st.CreateBouncer(ctx, "a", []string{}, []byte("hash-a"), "test")
	require.NoError(t, err)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	before, err := st.TouchBouncer(ctx, b.ID, store.BouncerHeartbeat{Version: "1.3.0"}, now)
	require.NoError(t, err)
	require.Empty(t, before)
	before, err = st.TouchBouncer(ctx, b.ID, store.BouncerHeartbeat{Version: "1.4.0"}, now.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, "1.3.0", before)
	before, err = st.TouchBouncer(ctx, b.ID+1000, store.BouncerHeartbeat{Version: "1.4.0"}, now)
	require.NoError(t, err)
	require.Empty(t, before, "no such bouncer")
}

func ids(m map[string]store.Bouncer) []int64 {
	var out []int64
	for _, b := range m {
		out = append(out, b.ID)
	}
	return out
}
