package index_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

type testBundle struct {
	ctx context.Context
	st  *store.Store
	ix  *index.Index
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// run starts an index over st and waits until it is ready; it stops when t ends.
func run(t *testing.T, st *store.Store) *index.Index {
	t.Helper()
	ix := index.New(st, logger(t), time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-ix.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("index not ready")
	}
	return ix
}

func setup(t *testing.T) testBundle {
	t.Helper()
	st := storetest.Store(t)
	return testBundle{ctx: context.Background(), st: st}
}

// waitFor waits, on the index's change signal, until cond holds for a snapshot.
func waitFor(t *testing.T, ix *index.Index, what string, cond func(*index.Snap) bool) *index.Snap {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		ch := ix.Changed()
		s := ix.Snapshot()
		if cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s (gen %d, seq %d)", what, s.Gen(), s.Seq())
		}
	}
}

// caughtUp waits until the index has applied every recorded change.
func caughtUp(t *testing.T, b testBundle, ix *index.Index) *index.Snap {
	t.Helper()
	seq, err := b.st.ChangeSeq(b.ctx)
	require.NoError(t, err)
	return waitFor(t, ix, "the change feed", func(s *index.Snap) bool { return s.Seq() >= seq })
}

func ob(p, src string, seen time.Time, tags ...string) store.Observation {
	return store.Observation{Prefix: netip.MustParsePrefix(p), Source: src, Tags: tags, SeenAt: seen}
}

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = prefix(s)
	}
	return out
}

func searchAll(s *index.Snap, f index.Filter) []netip.Prefix {
	var out []netip.Prefix
	var after netip.Prefix
	for {
		rows, next := s.Search(f, after, 2)
		for _, r := range rows {
			out = append(out, r.Prefix)
		}
		if !next.IsValid() {
			return out
		}
		after = next
	}
}

// The suppression case, end to end through the index: a manual
// suppress on the /24 hides the tag for the /24, the /26 inside it and the
// /32 inside it, in lookups, search, walks and the compiler's entries.
func TestIndexSuppressionCase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{
		ob("192.0.2.0/24", "ingest:a", now, "supx"),
		ob("192.0.2.64/26", "ingest:b", now, "supx"),
		ob("192.0.2.5/32", "ingest:c", now, "supx"),
	}, "test"))
	ix := run(t, b.st)
	s := ix.Snapshot()
	require.Equal(t, prefixes("192.0.2.0/24", "192.0.2.5/32", "192.0.2.64/26"), searchAll(s, index.Filter{Tag: "supx"}))
	gen := s.Gen()

	require.NoError(t, b.st.PutOverride(b.ctx, prefix("192.0.2.0/24"), store.Override{SuppressTags: []string{"supx"}}, "alice", now))
	s = caughtUp(t, b, ix)
	spans, geo, ok := s.ChangedSince(gen)
	require.True(t, ok)
	require.False(t, geo)
	require.Equal(t, prefixes("192.0.2.0/24"), spans)

	for _, a := range []string{"192.0.2.70", "192.0.2.5", "192.0.2.200"} {
		v, ok := s.Lookup(addr(a))
		require.True(t, ok, a)
		require.Empty(t, v.TagNames(), a)
		require.Equal(t, []string{"supx"}, v.SuppressedNames(), a)
	}
	v, ok := s.Explain(prefix("192.0.2.70/32"))
	require.True(t, ok)
	require.Contains(t, v.Steps, `192.0.2.64/26: tag "supx" from ingest:b is suppressed by manual:alice on 192.0.2.0/24`)
	v, ok = s.Network(prefix("192.0.2.64/26"))
	require.True(t, ok)
	require.Empty(t, v.TagNames())
	require.Equal(t, []string{"ingest:a", "ingest:b", "manual:alice"}, v.Sources)
	require.Empty(t, searchAll(s, index.Filter{Tag: "supx"}))
	require.Equal(t, prefixes("192.0.2.0/24", "192.0.2.5/32", "192.0.2.64/26"), searchAll(s, index.Filter{Source: "manual:*"}))
	require.Equal(t, prefixes("192.0.2.64/26"), searchAll(s, index.Filter{Source: "ingest:b"}))
	require.Equal(t, prefixes("192.0.2.5/32"), searchAll(s, index.Filter{Within: prefix("192.0.2.0/28")}))
	f := s.Entries(false)
	require.Equal(t, []policy.Entry{
		{Prefix: prefix("192.0.2.0/24"), Classification: "unknown", Sources: []string{"ingest:a", "manual:alice"}},
		{Prefix: prefix("192.0.2.5/32"), Classification: "unknown", Sources: []string{"ingest:a", "ingest:c", "manual:alice"}},
		{Prefix: prefix("192.0.2.64/26"), Classification: "unknown", Sources: []string{"ingest:a", "ingest:b", "manual:alice"}},
	}, f.Entries)
	span := s.SpanFacts(prefix("192.0.2.64/27"), false)
	require.Equal(t, []netip.Prefix{prefix("192.0.2.64/26")}, entryPrefixes(span), "the containing prefix, nothing inside")
	span = s.SpanFacts(prefix("192.0.2.0/25"), false)
	require.Equal(t, prefixes("192.0.2.0/24", "192.0.2.5/32", "192.0.2.64/26"), entryPrefixes(span))

	// Deleting the override brings the tag back and leaves the /24, which
	// has other assertions.
	require.NoError(t, b.st.DeleteOverride(b.ctx, prefix("192.0.2.0/24"), "alice"))
	s = caughtUp(t, b, ix)
	require.Equal(t, prefixes("192.0.2.0/24", "192.0.2.5/32", "192.0.2.64/26"), searchAll(s, index.Filter{Tag: "supx"}))
}

func entryPrefixes(f *policy.Facts) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range f.Entries {
		out = append(out, e.Prefix)
	}
	return out
}

// The note and ghost cases through the index.
func TestIndexNotesAndGhosts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ix := run(t, b.st)
	now := time.Now().UTC().Truncate(time.Second)
	first := ob("198.51.100.9/32", "ingest:one", now.Add(-time.Minute))
	first.Note = "first"
	second := ob("198.51.100.9/32", "ingest:two", now)
	second.Note = "second"
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{first}, "test"))
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{second}, "test"))
	s := caughtUp(t, b, ix)
	v, ok := s.Lookup(addr("198.51.100.9"))
	require.True(t, ok)
	require.Equal(t, "second", v.Note)
	var walked []string
	s.Walk(func(p netip.Prefix, v resolve.View) bool {
		walked = append(walked, p.String()+" "+v.Note)
		return true
	})
	require.Equal(t, []string{"198.51.100.9/32 second"}, walked)

	require.NoError(t, b.st.PutOverride(b.ctx, prefix("198.51.100.0/24"), store.Override{Note: "ours"}, "alice", now.Add(-time.Hour)))
	s = caughtUp(t, b, ix)
	v, _ = s.Lookup(addr("198.51.100.9"))
	require.Equal(t, "ours", v.Note, "a manual note wins over newer automatic ones")

	// Ghost: an override on a fresh prefix, then deleted.
	require.NoError(t, b.st.PutOverride(b.ctx, prefix("203.0.113.7/32"), store.Override{AddTags: []string{"x"}}, "alice", now))
	s = caughtUp(t, b, ix)
	_, ok = s.Lookup(addr("203.0.113.7"))
	require.True(t, ok)
	require.NoError(t, b.st.DeleteOverride(b.ctx, prefix("203.0.113.7/32"), "alice"))
	s = caughtUp(t, b, ix)
	_, ok = s.Lookup(addr("203.0.113.7"))
	require.False(t, ok)
	require.False(t, s.Stored(prefix("203.0.113.7/32")))
	require.Equal(t, prefixes("198.51.100.0/24", "198.51.100.9/32"), searchAll(s, index.Filter{}))
	require.Equal(t, 2, s.Len(), "the ghost was deleted, not kept")
}

// Expiry changes views without any write: the index publishes a new
// generation at the moment an assertion expires.
func TestIndexExpiryAdvancesGen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ix := run(t, b.st)
	now := time.Now()
	exp := now.Add(2 * time.Second)
	o := ob("192.0.2.9/32", "ingest:a", now, "brief")
	o.ExpiresAt = &exp
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{o, ob("192.0.2.0/24", "ingest:a", now, "stays")}, "test"))
	require.NoError(t, b.st.PutOverride(b.ctx, prefix("203.0.113.1/32"), store.Override{Classification: "benign", ExpiresAt: &exp}, "alice", now))
	s := caughtUp(t, b, ix)
	require.True(t, s.At().Before(exp), "the writes were applied before the expiry")
	v, ok := s.Lookup(addr("192.0.2.9"))
	require.True(t, ok)
	require.Equal(t, []string{"brief", "stays"}, v.TagNames())
	_, ok = s.Lookup(addr("203.0.113.1"))
	require.True(t, ok)
	gen, seq := s.Gen(), s.Seq()

	s = waitFor(t, ix, "the expiry", func(s *index.Snap) bool { return !s.At().Before(exp) })
	require.Equal(t, seq, s.Seq(), "no write happened")
	require.Greater(t, s.Gen(), gen)
	v, ok = s.Lookup(addr("192.0.2.9"))
	require.True(t, ok, "sighted, so it still exists")
	require.Equal(t, []string{"stays"}, v.TagNames())
	_, ok = s.Lookup(addr("203.0.113.1"))
	require.False(t, ok, "an override whose assertions all expired leaves a ghost no output shows")
	require.Equal(t, prefixes("192.0.2.0/24", "192.0.2.9/32"), searchAll(s, index.Filter{}))
	spans, _, ok := s.ChangedSince(gen)
	require.True(t, ok)
	require.Equal(t, prefixes("192.0.2.9/32", "203.0.113.1/32"), spans)
}
