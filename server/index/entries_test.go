package index_test

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index/indextest"
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

	ix := indextest.Start(t, st, slog.New(slog.DiscardHandler), func() time.Time { return now })
	f := ix.Snapshot().Entries(false)
	require.Len(t, f.Entries, 2)
	w := entryOf(t, f, "198.51.100.0/24")
	require.Equal(t, []string{"x", "y"}, w.Tags, "the same tag from two feeds once")
	require.Equal(t, "malicious", w.Classification, "the most severe automatic one")
	require.Equal(t, []string{"feed:a", "feed:b"}, w.Sources)
	n := entryOf(t, f, "198.51.100.7/32")
	require.Equal(t, []string{"m", "w", "y"}, n.Tags, "x and z suppressed, y inherited from the /24; the expired tag is gone")
	require.Equal(t, "benign", n.Classification, "the manual one beats the /24's automatic one")
	require.Equal(t, []string{"feed:a", "feed:b", "manual:alice"}, n.Sources)

	f = ix.Snapshot().SpanFacts(netip.MustParsePrefix("198.51.100.9/32"), false)
	require.Len(t, f.Entries, 1)
	require.Equal(t, wide, f.Entries[0].Prefix)
}
