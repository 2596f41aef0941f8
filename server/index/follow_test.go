package index_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// rows is everything a snapshot's walk yields, as comparable text.
func rows(s *index.Snap) []string {
	var out []string
	s.Walk(func(p netip.Prefix, v resolve.View) bool {
		out = append(out, viewKey(p, v))
		return true
	})
	return out
}

func viewKey(p netip.Prefix, v resolve.View) string {
	return p.String() + " " + v.Classification + "/" + v.ClassificationSource + " " +
		join(v.TagNames()) + " -" + join(v.SuppressedNames()) + " " + join(v.Sources) + " " + v.Note + "/" + v.NoteSource +
		" " + v.FirstSeen.UTC().Format(time.RFC3339Nano) + " " + v.LastSeen.UTC().Format(time.RFC3339Nano)
}

func join(ss []string) string {
	out := "["
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out + "]"
}

// Two processes on one database converge on the same views, through every
// kind of writer: ingest, overrides, feeds (apply and delete), geo.
func TestTwoIndexesConverge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	one := run(t, b.st)
	now := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("192.0.2.0/24", "ingest:a", now, "net")}, "test"))
	two := run(t, b.st) // starts after a write: loads it, then follows
	_, err := b.st.PutFeed(b.ctx, store.Feed{Name: "f", URL: "http://example.invalid/f", Format: "list", Tag: "listed", Classification: "malicious", Enabled: true}, "test")
	require.NoError(t, err)
	_, err = b.st.ApplyFeed(b.ctx, "f", store.FeedUpdate{Prefixes: prefixes("192.0.2.7/32", "198.51.100.0/25"), Now: now, StartedAt: now})
	require.NoError(t, err)
	require.NoError(t, b.st.PutOverride(b.ctx, prefix("198.51.100.0/24"), store.Override{Classification: "benign", SuppressTags: []string{"listed"}}, "alice", now))
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("2001:db8::1/128", "ingest:b", now, "v6")}, "test"))
	_, err = b.st.ReplaceGeoNetworks(b.ctx, "test", func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: prefix("192.0.2.0/24"), Country: "NL", Continent: "EU", ASN: 64500, ASOrg: "Example"}, nil)
	})
	require.NoError(t, err)

	s1, s2 := caughtUp(t, b, one), caughtUp(t, b, two)
	require.Equal(t, rows(s1), rows(s2))
	require.Len(t, rows(s1), 5)
	v, ok := s1.Lookup(addr("198.51.100.5"))
	require.True(t, ok)
	require.Equal(t, "benign", v.Classification)
	require.Empty(t, v.TagNames())
	g, ok := s2.Geo(addr("192.0.2.7"))
	require.True(t, ok)
	require.Equal(t, "NL", g.Country)
	require.Len(t, s2.Entries(true).Geo, 1)

	require.NoError(t, b.st.DeleteFeed(b.ctx, "f", "test"))
	s1, s2 = caughtUp(t, b, one), caughtUp(t, b, two)
	require.Equal(t, rows(s1), rows(s2))
	require.Equal(t, prefixes("192.0.2.0/24", "198.51.100.0/24", "2001:db8::1/128"), searchAll(s1, index.Filter{}),
		"the feed-only prefixes went with the feed")
}

// An index that missed notifications catches up from the change table, and
// reloads in full when what it missed was pruned.
func TestIndexCatchUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	ix := index.New(b.st, logger(t), time.Now)
	require.Equal(t, uint64(0), ix.Snapshot().Gen())
	require.NoError(t, ix.Reload(b.ctx))
	require.Equal(t, uint64(1), ix.Snapshot().Gen())

	// Not following: two writes go unnoticed.
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("192.0.2.1/32", "ingest:a", now, "x")}, "test"))
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("192.0.2.2/32", "ingest:a", now, "y")}, "test"))
	require.Equal(t, 0, ix.Snapshot().Len())
	require.NoError(t, ix.CatchUp(b.ctx))
	s := ix.Snapshot()
	require.EqualValues(t, 2, s.Seq())
	require.Equal(t, uint64(2), s.Gen(), "one snapshot for the batch")
	require.Equal(t, prefixes("192.0.2.1/32", "192.0.2.2/32"), searchAll(s, index.Filter{}))
	spans, _, ok := s.ChangedSince(1)
	require.True(t, ok)
	require.Equal(t, prefixes("192.0.2.1/32", "192.0.2.2/32"), spans)

	// Missed and pruned: a full reload, across which ChangedSince cannot see.
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("192.0.2.3/32", "ingest:a", now, "z")}, "test"))
	storetest.ForgetChanges(t, b.st)
	require.NoError(t, ix.CatchUp(b.ctx))
	s = ix.Snapshot()
	require.EqualValues(t, 3, s.Seq())
	require.Equal(t, prefixes("192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"), searchAll(s, index.Filter{}))
	_, _, ok = s.ChangedSince(2)
	require.False(t, ok)
	spans, _, ok = s.ChangedSince(s.Gen())
	require.True(t, ok)
	require.Empty(t, spans)
	_, _, ok = s.ChangedSince(s.Gen() + 1)
	require.False(t, ok, "a generation from the future")

	// Nothing new: nothing published.
	require.NoError(t, ix.CatchUp(b.ctx))
	require.Equal(t, s.Gen(), ix.Snapshot().Gen())
}

// A running index follows writes made while it runs, and other processes'
// writes, within one notification.
func TestIndexFollowsAfterReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ix := run(t, b.st)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 5 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32)
		require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{{Prefix: p, Source: "ingest:a", Tags: []string{"t"}, SeenAt: now}}, "test"))
	}
	s := caughtUp(t, b, ix)
	require.Len(t, searchAll(s, index.Filter{Tag: "t"}), 5)
	// Kill the listening connections: the index reconnects and catches up.
	require.Equal(t, 1, storetest.KillListeners(t, b.st))
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("203.0.113.99/32", "ingest:a", now, "t")}, "test"))
	s = caughtUp(t, b, ix)
	require.Len(t, searchAll(s, index.Filter{Tag: "t"}), 6)
}

// A change of everything (a bulk write over more prefixes than the feed
// lists) reloads, and ChangedSince cannot see across the reload.
func TestIndexApplyAll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	ix := index.New(b.st, logger(t), time.Now)
	require.NoError(t, ix.Reload(b.ctx))
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("192.0.2.1/32", "ingest:a", now, "x")}, "test"))
	require.NoError(t, ix.CatchUp(b.ctx))
	gen := ix.Snapshot().Gen()
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{ob("192.0.2.2/32", "ingest:a", now, "y")}, "test"))
	require.NoError(t, ix.Apply(b.ctx, []store.Change{{Seq: 2, Scope: store.ChangeAll}}))
	s := ix.Snapshot()
	require.Equal(t, prefixes("192.0.2.1/32", "192.0.2.2/32"), searchAll(s, index.Filter{}))
	require.EqualValues(t, 2, s.Seq())
	_, _, ok := s.ChangedSince(gen)
	require.False(t, ok)
}

// The history is bounded: a generation too old to reach answers not ok, a
// recent one the union of what changed since.
func TestIndexHistoryBound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ix := index.New(b.st, logger(t), time.Now)
	require.NoError(t, ix.Reload(b.ctx))
	first := ix.Snapshot().Gen()
	for i := range 2100 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 7)}), 32)
		require.NoError(t, ix.Apply(b.ctx, []store.Change{{Seq: int64(i + 1), Scope: store.ChangePrefixes, Prefixes: []netip.Prefix{p}}}))
	}
	s := ix.Snapshot()
	require.Equal(t, first+2100, s.Gen())
	_, _, ok := s.ChangedSince(first)
	require.False(t, ok, "beyond the history kept")
	spans, geo, ok := s.ChangedSince(s.Gen() - 3)
	require.True(t, ok)
	require.False(t, geo)
	require.Len(t, spans, 3)
}
