package store_test

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func mp(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*256 + a.Bits() - b.Bits() })
	return slices.Compact(ps)
}

// stored returns every stored prefix with its live assertions, by LoadAll.
func stored(t *testing.T, st *store.Store, now time.Time) (map[netip.Prefix]resolve.Prefix, []store.GeoNetwork, int64) {
	t.Helper()
	out := map[netip.Prefix]resolve.Prefix{}
	var geo []store.GeoNetwork
	seq, err := st.LoadAll(context.Background(), now, func(p resolve.Prefix) error {
		p.Assertions = slices.Clone(p.Assertions)
		out[p.Prefix] = p
		return nil
	}, func(g store.GeoNetwork) error {
		geo = append(geo, g)
		return nil
	})
	require.NoError(t, err)
	return out, geo, seq
}

func TestChangeFeedRecordsEveryWriter(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	seq, err := st.ChangeSeq(ctx)
	require.NoError(t, err)
	require.Zero(t, seq)

	require.NoError(t, st.Ingest(ctx, []store.Observation{
		obs("192.0.2.0/24", "ingest:a", now, "supx"),
		obs("192.0.2.5/32", "ingest:c", now, "supx"),
		obs("192.0.2.5/32", "ingest:c", now),
	}, "test"))
	require.NoError(t, st.PutOverride(ctx, netip.MustParsePrefix("198.51.100.7/32"), store.Override{AddTags: []string{"mine"}}, "alice", now))
	require.NoError(t, st.DeleteOverride(ctx, netip.MustParsePrefix("198.51.100.7/32"), "alice"))
	_, err = st.ReplaceGeoNetworks(ctx, "test", func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: netip.MustParsePrefix("192.0.2.0/24"), Country: "NL", Continent: "EU", ASN: 64500, ASOrg: "Example"}, nil)
	})
	require.NoError(t, err)

	changes, err := st.ChangesSince(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, changes, 4)
	for i, c := range changes {
		require.EqualValues(t, i+1, c.Seq)
	}
	require.Equal(t, store.ChangePrefixes, changes[0].Scope)
	require.Equal(t, mp("192.0.2.0/24", "192.0.2.5/32"), sortedPrefixes(changes[0].Prefixes))
	require.Equal(t, store.ChangePrefixes, changes[1].Scope)
	require.Equal(t, mp("198.51.100.7/32"), changes[1].Prefixes)
	require.Equal(t, mp("198.51.100.7/32"), changes[2].Prefixes)
	require.Equal(t, store.ChangeGeo, changes[3].Scope)
	require.Empty(t, changes[3].Prefixes)

	later, err := st.ChangesSince(ctx, 2, 100)
	require.NoError(t, err)
	require.Len(t, later, 2)
	require.EqualValues(t, 3, later[0].Seq)

	all, geo, seq := stored(t, st, now)
	require.EqualValues(t, 4, seq)
	require.Len(t, all, 2, "the prefix of the deleted override is gone, not a ghost")
	require.EqualValues(t, 2, all[netip.MustParsePrefix("192.0.2.5/32")].Sightings)
	require.Len(t, all[netip.MustParsePrefix("192.0.2.0/24")].Assertions, 1)
	require.Equal(t, []store.GeoNetwork{{Network: netip.MustParsePrefix("192.0.2.0/24"), Country: "NL", Continent: "EU", ASN: 64500, ASOrg: "Example", Source: "test"}}, geo)

	// An empty override leaves no ghost either.
	require.NoError(t, st.PutOverride(ctx, netip.MustParsePrefix("203.0.113.9/32"), store.Override{}, "alice", now))
	all, _, seq = stored(t, st, now)
	require.EqualValues(t, 5, seq)
	require.Len(t, all, 2)
}

func TestChangeFeedFeedsAndPrune(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	ctx := b.ctx
	_, err := b.apply(t, hosts(3, "192.0.2.1"), false)
	require.NoError(t, err)
	_, err = b.apply(t, hosts(2, "192.0.2.2"), true)
	require.NoError(t, err)
	changes, err := b.st.ChangesSince(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, changes, 2)
	require.Equal(t, mp("192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"), sortedPrefixes(changes[0].Prefixes))
	require.Equal(t, mp("192.0.2.1/32"), sortedPrefixes(changes[1].Prefixes),
		"the removed prefix only: the refresh wrote nothing on the ones still listed")
	all, _, _ := stored(t, b.st, b.now)
	require.Len(t, all, 3)
	require.False(t, all[netip.MustParsePrefix("192.0.2.1/32")].Exists(b.now),
		"192.0.2.1 had only the feed's assertions: a ghost until Prune")

	// An ingested prefix stays when the feed is deleted; the feed-only one goes.
	require.NoError(t, b.st.Ingest(ctx, []store.Observation{obs("192.0.2.2/32", "ingest:x", b.now)}, "test"))
	require.NoError(t, b.st.DeleteFeed(ctx, "test", "test"))
	changes, err = b.st.ChangesSince(ctx, 3, 100)
	require.NoError(t, err)
	require.Len(t, changes, 1)
	require.Equal(t, mp("192.0.2.2/32", "192.0.2.3/32"), sortedPrefixes(changes[0].Prefixes))
	all, _, _ = stored(t, b.st, b.now)
	require.Len(t, all, 3)
	require.Empty(t, all[netip.MustParsePrefix("192.0.2.2/32")].Assertions)
	require.True(t, all[netip.MustParsePrefix("192.0.2.2/32")].Exists(b.now), "sighted")

	// Prune removes what expired long ago and the ghosts it leaves.
	exp := b.now.Add(-48 * time.Hour)
	o := obs("198.51.100.1/32", "ingest:y", b.now, "old")
	o.ExpiresAt = &exp
	require.NoError(t, b.st.Ingest(ctx, []store.Observation{o}, "test"))
	require.NoError(t, b.st.PutOverride(ctx, netip.MustParsePrefix("198.51.100.2/32"), store.Override{Note: "n", ExpiresAt: &exp}, "alice", b.now))
	_, a, p, err := b.st.Prune(ctx, b.now, time.Hour, time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 2, a)
	require.EqualValues(t, 3, p)
	changes, err = b.st.ChangesSince(ctx, 6, 100)
	require.NoError(t, err)
	require.Len(t, changes, 2)
	require.Equal(t, mp("198.51.100.1/32", "198.51.100.2/32"), sortedPrefixes(changes[0].Prefixes),
		"the prefixes whose expired assertions went: the override's is deleted, the sighted one stays")
	require.Equal(t, mp("192.0.2.1/32", "192.0.2.3/32"), sortedPrefixes(changes[1].Prefixes), "the feed's ghosts")
	all, _, _ = stored(t, b.st, b.now)
	require.Len(t, all, 2)
	seq, err := b.st.ChangeSeq(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 8, seq)
}

// Concurrent writers (four stores on one database, as four processes would
// be): a reader polling ChangesSince must see the sequence without gaps,
// which it would not if a later sequence could commit first. Ingests that
// wait together share a merge, so changes may list several prefixes.
func TestChangeFeedCommitOrder(t *testing.T) {
	t.Parallel()
	url := storetest.URL(t)
	ctx := context.Background()
	st, err := store.Open(ctx, url, 4, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const writers, each = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		ws, err := store.Open(ctx, url, 2, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(ws.Close)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(w*each + i)}), 32)
				if err := ws.Ingest(ctx, []store.Observation{{Prefix: p, Source: "ingest:x", Tags: []string{"t"}, SeenAt: now}}, "test"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var last int64
	seen := map[netip.Prefix]bool{}
	for finished := false; ; {
		changes, err := st.ChangesSince(ctx, last, 1000)
		require.NoError(t, err)
		for _, c := range changes {
			require.Equal(t, last+1, c.Seq, "sequences become visible in order")
			last = c.Seq
			for _, p := range c.Prefixes {
				seen[p] = true
			}
		}
		if finished {
			break
		}
		select {
		case <-done:
			finished = true
		default:
		}
	}
	require.Len(t, seen, writers*each)
}

func TestChangeFeedPrunedHorizon(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ingest := func(p string) {
		require.NoError(t, st.Ingest(ctx, []store.Observation{obs(p, "ingest:x", now, "t")}, "test"))
	}
	ingest("192.0.2.1/32")
	// Age the first change and jump the sequence to just before a pruning one.
	_, err := st.Pool().Exec(ctx, `UPDATE changes SET at = now() - interval '1 hour'`)
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, `SELECT setval('changes_seq', 999)`)
	require.NoError(t, err)
	ingest("192.0.2.2/32") // seq 1000 prunes seq 1
	_, err = st.ChangesSince(ctx, 0, 10)
	require.ErrorIs(t, err, store.ErrChangesPruned)
	changes, err := st.ChangesSince(ctx, 1, 10)
	require.NoError(t, err, "a reader that applied the pruned change can go on")
	require.Len(t, changes, 1)
	require.EqualValues(t, 1000, changes[0].Seq)
	seq, err := st.ChangeSeq(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1000, seq)
}

func TestLoadPrefixesSubsetAndExpiry(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	a := obs("192.0.2.1/32", "ingest:x", now, "soon")
	a.ExpiresAt = &exp
	require.NoError(t, st.Ingest(ctx, []store.Observation{a, obs("192.0.2.2/32", "ingest:x", now, "t"), obs("192.0.2.3/32", "ingest:x", now, "t")}, "test"))
	var got []resolve.Prefix
	collect := func(p resolve.Prefix) error {
		p.Assertions = slices.Clone(p.Assertions)
		got = append(got, p)
		return nil
	}
	require.NoError(t, st.LoadPrefixes(ctx, now.Add(2*time.Hour), mp("192.0.2.1/32", "192.0.2.3/32", "203.0.113.1/32"), collect))
	require.Len(t, got, 2)
	slices.SortFunc(got, func(x, y resolve.Prefix) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	require.Equal(t, netip.MustParsePrefix("192.0.2.1/32"), got[0].Prefix)
	require.Empty(t, got[0].Assertions, "expired at the given time")
	require.EqualValues(t, 1, got[0].Sightings)
	require.Len(t, got[1].Assertions, 1)
	require.Equal(t, "t", got[1].Assertions[0].Value)

	got = nil
	require.NoError(t, st.LoadPrefixes(ctx, now, mp("192.0.2.1/32"), collect))
	require.Len(t, got[0].Assertions, 1)
	require.Equal(t, exp, got[0].Assertions[0].ExpiresAt.UTC())
}

// Prefixes whose assertions all expired go in batches of 1,000, each batch
// one transaction and one change-feed row naming its prefixes, so every
// serve process's index drops them.
func TestPruneExpiredInBatches(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{Name: "ttl", URL: "http://example.invalid/list", Format: "list", Tag: "bad", Enabled: true, TTL: time.Hour})
	ps := hosts(2500, "198.51.100.0") // spills into 198.51.109.195
	_, err := b.st.ApplyFeed(b.ctx, "ttl", store.FeedUpdate{Prefixes: ps, StartedAt: b.now, Now: b.now})
	require.NoError(t, err)
	seq, err := b.st.ChangeSeq(b.ctx)
	require.NoError(t, err)

	// Expired at now+1h, kept for a day after: not yet.
	_, a, p, err := b.st.Prune(b.ctx, b.now.Add(2*time.Hour), time.Hour, 24*time.Hour)
	require.NoError(t, err)
	require.Zero(t, a)
	require.Zero(t, p)
	all, _, _ := stored(t, b.st, b.now)
	require.Len(t, all, 2500)

	_, a, p, err = b.st.Prune(b.ctx, b.now.Add(26*time.Hour), time.Hour, 24*time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 2500, a)
	require.EqualValues(t, 2500, p)
	changes, err := b.st.ChangesSince(b.ctx, seq, 100)
	require.NoError(t, err)
	require.Len(t, changes, 3)
	var got []netip.Prefix
	for i, want := range []int{1000, 1000, 500} {
		require.Len(t, changes[i].Prefixes, want)
		got = append(got, changes[i].Prefixes...)
	}
	require.Equal(t, ps, sortedPrefixes(got))
	all, _, _ = stored(t, b.st, b.now)
	require.Empty(t, all)
	var rows int
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT count(*) FROM prefixes`).Scan(&rows))
	require.Zero(t, rows)
}
