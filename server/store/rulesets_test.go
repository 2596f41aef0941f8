package store_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func entryOf(t *testing.T, f *policy.Facts, p string) policy.Entry {
	t.Helper()
	i := slices.IndexFunc(f.Entries, func(e policy.Entry) bool { return e.Prefix == netip.MustParsePrefix(p) })
	require.GreaterOrEqual(t, i, 0, "no entry for %s", p)
	e := f.Entries[i]
	slices.Sort(e.Tags)
	slices.Sort(e.Sources)
	return e
}

func TestFactsAreEffectiveViews(t *testing.T) {
	t.Parallel()
	st, ctx := storetest.Store(t), context.Background()
	now := time.Now()
	past := now.Add(-time.Minute)
	wide, narrow := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.100.7/32")
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: wide, Source: "feed:a", Tags: []string{"x", "y"}, Classification: "suspicious", SeenAt: now},
		{Prefix: wide, Source: "feed:b", Tags: []string{"x"}, Classification: "malicious", SeenAt: now},
		{Prefix: narrow, Source: "feed:a", Tags: []string{"z", "w"}, SeenAt: now},
		{Prefix: narrow, Source: "feed:old", Tags: []string{"gone"}, SeenAt: now.Add(-time.Hour), ExpiresAt: &past},
	}, "t"))
	require.NoError(t, st.PutOverride(ctx, narrow, store.Override{Classification: "benign", SuppressTags: []string{"x", "z"}, AddTags: []string{"m"}}, "alice", now))

	f, err := st.Facts(ctx, now)
	require.NoError(t, err)
	require.Len(t, f.Entries, 2)
	w := entryOf(t, f, "198.51.100.0/24")
	require.Equal(t, []string{"x", "y"}, w.Tags, "the same tag from two feeds once")
	require.Equal(t, "malicious", w.Classification, "the most severe automatic one")
	require.Equal(t, []string{"feed:a", "feed:b"}, w.Sources)
	n := entryOf(t, f, "198.51.100.7/32")
	require.Equal(t, []string{"m", "w", "y"}, n.Tags, "x and z suppressed, y inherited from the /24; the expired tag is gone")
	require.Equal(t, "benign", n.Classification, "the manual one beats the /24's automatic one")
	require.Equal(t, []string{"feed:a", "feed:b", "manual:alice"}, n.Sources)

	f, err = st.FactsContaining(ctx, now, netip.MustParseAddr("198.51.100.9"))
	require.NoError(t, err)
	require.Len(t, f.Entries, 1)
	require.Equal(t, wide, f.Entries[0].Prefix)
}

func TestSaveRenderOnlyOnNewHash(t *testing.T) {
	t.Parallel()
	st, ctx := storetest.Store(t), context.Background()
	body := func(v int64, _ time.Time) ([]byte, error) { return []byte(`{"v":1}`), nil }
	r1, err := st.SaveRender(ctx, "edge", "sha256:a", time.Now(), body)
	require.NoError(t, err)
	require.EqualValues(t, 1, r1.Version)
	r2, err := st.SaveRender(ctx, "edge", "sha256:a", time.Now(), func(int64, time.Time) ([]byte, error) {
		t.Fatal("an unchanged hash must not build a body")
		return nil, nil
	})
	require.NoError(t, err)
	require.Equal(t, r1.Version, r2.Version)
	r3, err := st.SaveRender(ctx, "edge", "sha256:b", time.Now(), body)
	require.NoError(t, err)
	require.EqualValues(t, 2, r3.Version)
	latest, err := st.LatestRender(ctx, "edge")
	require.NoError(t, err)
	require.Equal(t, "sha256:b", latest.Hash)
	_, err = st.LatestRender(ctx, "none")
	require.ErrorIs(t, err, store.ErrNotFound)
}
