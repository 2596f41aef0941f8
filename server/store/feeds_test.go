package store_test

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

type feedBundle struct {
	st  *store.Store
	ctx context.Context
	now time.Time
}

func setupFeed(t *testing.T, f store.Feed) feedBundle {
	t.Helper()
	b := feedBundle{st: storetest.Store(t), ctx: context.Background(), now: time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)}
	if f.Name == "" {
		f = store.Feed{Name: "test", URL: "http://example.invalid/list", Format: "list", Tag: "bad", Classification: "malicious", Enabled: true}
	}
	created, err := b.st.PutFeed(b.ctx, f, "test")
	require.NoError(t, err)
	require.True(t, created)
	return b
}

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func hosts(n int, base string) []netip.Prefix {
	a := netip.MustParseAddr(base)
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = netip.PrefixFrom(a, 32)
		a = a.Next()
	}
	return out
}

// feedState returns prefix -> sorted "kind=value" of the feed's assertions.
func feedState(t *testing.T, b feedBundle, name string) map[string][]string {
	t.Helper()
	rows, err := b.st.Pool().Query(b.ctx, `SELECT p.prefix::text, a.kind || '=' || a.value FROM assertions a
		JOIN prefixes p ON p.id = a.prefix_id WHERE a.source = $1 ORDER BY 1, 2`, store.FeedSource(name))
	require.NoError(t, err)
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var p, kv string
		require.NoError(t, rows.Scan(&p, &kv))
		out[p] = append(out[p], kv)
	}
	require.NoError(t, rows.Err())
	return out
}

func (b feedBundle) apply(t *testing.T, ps []netip.Prefix, force bool) (store.FeedRun, error) {
	t.Helper()
	b.now = b.now.Add(time.Minute)
	return b.st.ApplyFeed(b.ctx, "test", store.FeedUpdate{Prefixes: ps, Force: force, StartedAt: b.now, Now: b.now, ETag: `"v1"`})
}

func TestApplyFeedDiff(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	run, err := b.apply(t, prefixes(t, "192.0.2.1/32", "192.0.2.2/32", "198.51.100.0/24", "2001:db8::/48"), false)
	require.NoError(t, err)
	require.Equal(t, store.RunOK, run.Status)
	require.EqualValues(t, 4, run.Entries)
	require.EqualValues(t, 4, run.Added)
	st := feedState(t, b, "test")
	require.Len(t, st, 4)
	require.Equal(t, []string{"classification=malicious", "tag=bad"}, st["198.51.100.0/24"])

	// One removed, one added, three unchanged.
	run, err = b.apply(t, prefixes(t, "192.0.2.1/32", "198.51.100.0/24", "2001:db8::/48", "203.0.113.9/32"), false)
	require.NoError(t, err)
	require.EqualValues(t, 1, run.Added)
	require.EqualValues(t, 1, run.Removed)
	st = feedState(t, b, "test")
	require.Len(t, st, 4)
	require.NotContains(t, st, "192.0.2.2/32")
	require.Contains(t, st, "203.0.113.9/32")

	// Idempotent: the same update again changes nothing.
	run, err = b.apply(t, prefixes(t, "192.0.2.1/32", "198.51.100.0/24", "2001:db8::/48", "203.0.113.9/32"), false)
	require.NoError(t, err)
	require.Zero(t, run.Added)
	require.Zero(t, run.Removed)
	require.Equal(t, st, feedState(t, b, "test"))

	f, err := b.st.FeedByName(b.ctx, "test")
	require.NoError(t, err)
	require.EqualValues(t, 4, f.Entries)
	require.Equal(t, `"v1"`, f.ETag)
	require.NotNil(t, f.LastSuccess)
	runs, err := b.st.FeedRuns(b.ctx, "test", 10)
	require.NoError(t, err)
	require.Len(t, runs, 3)
}

func TestApplyFeedLeavesOtherSources(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	p := netip.MustParsePrefix("192.0.2.1/32")
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{{Prefix: p, Source: "ingest:x", Tags: []string{"seen"}, SeenAt: b.now}}, "tok"))
	_, err := b.apply(t, []netip.Prefix{p}, false)
	require.NoError(t, err)
	_, err = b.apply(t, nil, true)
	require.NoError(t, err)
	require.Empty(t, feedState(t, b, "test"))
	var n int
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT count(*) FROM assertions WHERE source = 'ingest:x'`).Scan(&n))
	require.Equal(t, 1, n)
}

func TestApplyFeedDropGuard(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	all := hosts(100, "198.51.100.1")
	_, err := b.apply(t, all, false)
	require.NoError(t, err)

	// Keeping 40 of 100 removes 60%: refused, recorded, nothing changed.
	run, err := b.apply(t, all[:40], false)
	require.ErrorIs(t, err, store.ErrDropGuard)
	require.Equal(t, store.RunRefused, run.Status)
	require.Len(t, feedState(t, b, "test"), 100)
	f, err := b.st.FeedByName(b.ctx, "test")
	require.NoError(t, err)
	require.Contains(t, f.LastError, "60 of 100")
	runs, err := b.st.FeedRuns(b.ctx, "test", 1)
	require.NoError(t, err)
	require.Equal(t, store.RunRefused, runs[0].Status)

	// Exactly the limit (50%) passes; force passes anything.
	_, err = b.apply(t, all[:50], false)
	require.NoError(t, err)
	run, err = b.apply(t, all[:1], true)
	require.NoError(t, err)
	require.EqualValues(t, 49, run.Removed)
	require.Len(t, feedState(t, b, "test"), 1)
}

// A statement failing in the middle of the merge (after prefixes and tags were
// written) must leave the previous state untouched.
func TestApplyFeedFailureKeepsOldState(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	old := hosts(50, "198.51.100.1")
	_, err := b.apply(t, old, false)
	require.NoError(t, err)
	before := feedState(t, b, "test")

	_, err = b.st.Pool().Exec(b.ctx, `
		CREATE FUNCTION fail_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
		  IF NEW.kind = 'classification' AND (SELECT prefix FROM prefixes WHERE id = NEW.prefix_id) = '203.0.113.66/32' THEN
		    RAISE EXCEPTION 'injected failure';
		  END IF;
		  RETURN NEW;
		END $$;
		CREATE TRIGGER fail_poison BEFORE INSERT ON assertions FOR EACH ROW EXECUTE FUNCTION fail_poison();`)
	require.NoError(t, err)
	next := append(hosts(40, "198.51.100.1"), prefixes(t, "203.0.113.65/32", "203.0.113.66/32")...)
	_, err = b.apply(t, next, false)
	require.ErrorContains(t, err, "injected failure")
	require.Equal(t, before, feedState(t, b, "test"))
	var n int
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT count(*) FROM prefixes WHERE prefix << '203.0.113.0/24'`).Scan(&n))
	require.Zero(t, n, "prefixes of the failed refresh must not persist")

	// A context cancelled while the transaction is in the middle of its
	// merge (held there by an advisory lock the test owns) leaves the old
	// state too.
	_, err = b.st.Pool().Exec(b.ctx, `DROP TRIGGER fail_poison ON assertions;
		CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
		CREATE TRIGGER hold BEFORE INSERT ON assertions FOR EACH ROW EXECUTE FUNCTION hold();`)
	require.NoError(t, err)
	lock, err := b.st.Pool().Acquire(b.ctx)
	require.NoError(t, err)
	defer lock.Release()
	_, err = lock.Exec(b.ctx, `SELECT pg_advisory_lock(4242)`)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.st.ApplyFeed(ctx, "test", store.FeedUpdate{Prefixes: hosts(10, "192.0.2.1"), Force: true, StartedAt: b.now, Now: b.now})
		done <- err
	}()
	require.Eventually(t, func() bool {
		var waiting bool
		err := b.st.Pool().QueryRow(b.ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 10*time.Millisecond, "the apply never reached the held trigger")
	cancel()
	require.Error(t, <-done)
	_, err = lock.Exec(b.ctx, `SELECT pg_advisory_unlock(4242)`)
	require.NoError(t, err)
	require.Equal(t, before, feedState(t, b, "test"))
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT count(*) FROM prefixes WHERE prefix << '192.0.2.0/24'`).Scan(&n))
	require.Zero(t, n)
}

func TestFeedReconfigureAndDelete(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	ps := hosts(3, "192.0.2.1")
	_, err := b.apply(t, ps, false)
	require.NoError(t, err)

	// Another tag and no classification: the next refresh rewrites the assertions.
	f, err := b.st.FeedByName(b.ctx, "test")
	require.NoError(t, err)
	f.Tag, f.Classification, f.TTL = "other", "", time.Hour
	created, err := b.st.PutFeed(b.ctx, f, "test")
	require.NoError(t, err)
	require.False(t, created)
	_, err = b.apply(t, ps, false)
	require.NoError(t, err)
	st := feedState(t, b, "test")
	require.Equal(t, []string{"tag=other"}, st["192.0.2.1/32"])
	var exp *time.Time
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT max(expires_at) FROM assertions WHERE source = 'feed:test'`).Scan(&exp))
	require.NotNil(t, exp)

	require.NoError(t, b.st.DeleteFeed(b.ctx, "test", "test"))
	require.Empty(t, feedState(t, b, "test"))
	_, err = b.st.FeedByName(b.ctx, "test")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, b.st.DeleteFeed(b.ctx, "test", "test"), store.ErrNotFound)
}

func TestDueFeeds(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	_, err := b.st.PutFeed(b.ctx, store.Feed{Name: "off", URL: "http://x.invalid", Format: "list"}, "test")
	require.NoError(t, err)
	due, err := b.st.DueFeeds(b.ctx, b.now)
	require.NoError(t, err)
	require.Equal(t, []string{"test"}, due)
	_, err = b.apply(t, hosts(1, "192.0.2.1"), false)
	require.NoError(t, err)
	due, err = b.st.DueFeeds(b.ctx, b.now.Add(30*time.Minute))
	require.NoError(t, err)
	require.Empty(t, due)
	due, err = b.st.DueFeeds(b.ctx, b.now.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, []string{"test"}, due)
}

func TestApplyFeedNotifies(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	conn, err := b.st.Pool().Acquire(b.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(b.ctx, "LISTEN "+store.ChangeChannel)
	require.NoError(t, err)

	_, err = b.apply(t, hosts(2, "192.0.2.1"), false)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(ctx)
	require.NoError(t, err)
	require.Equal(t, store.ChangePayloadPrefix+"1", n.Payload)

	// A refused update changes nothing and announces nothing.
	_, err = b.apply(t, nil, false)
	require.ErrorIs(t, err, store.ErrDropGuard)
	require.NoError(t, b.st.DeleteFeed(b.ctx, "test", "test"))
	n, err = conn.Conn().WaitForNotification(ctx)
	require.NoError(t, err)
	require.Equal(t, store.ChangePayloadPrefix+"2", n.Payload, "the refused update recorded no change")
	_, err = conn.Exec(b.ctx, "UNLISTEN *")
	require.NoError(t, err)
}

// Feed applies and ingest batches over the same new prefixes run side by side
// without deadlocks: both insert prefixes in prefix order, and a feed only
// ever writes assertions of its own source.
func TestApplyFeedConcurrentWithIngest(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{})
	ps := hosts(3000, "198.51.100.0")
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			var obs []store.Observation
			for j := i; j < len(ps); j += 2 {
				obs = append(obs, store.Observation{Prefix: ps[j], Source: "ingest:c", Tags: []string{"seen"}, SeenAt: b.now})
			}
			errs <- b.st.Ingest(b.ctx, obs, "c")
		}()
		go func() {
			defer wg.Done()
			now := b.now.Add(time.Duration(i) * time.Minute)
			_, err := b.st.ApplyFeed(b.ctx, "test", store.FeedUpdate{Prefixes: ps[i*500 : i*500+1500], Force: true, StartedAt: now, Now: now})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, feedState(t, b, "test"), 1500)
}

// A refresh writes only what changed: nothing for an unchanged list, the
// rows of a reclassified feed, and for a feed with a TTL the rows whose
// expiry ran below half the TTL (extended to refresh time + TTL). Each
// refresh's change lists only the prefixes it wrote.
func TestFeedRefreshWritesOnlyItsDiff(t *testing.T) {
	t.Parallel()
	b := setupFeed(t, store.Feed{Name: "test", URL: "http://example.invalid/list", Format: "list", Tag: "bad",
		Classification: "malicious", TTL: time.Hour, Enabled: true})
	ps := hosts(3, "192.0.2.1")
	at := func(d time.Duration) time.Time { return b.now.Add(d) }
	apply := func(when time.Time, ps []netip.Prefix) []netip.Prefix {
		before, err := b.st.ChangeSeq(b.ctx)
		require.NoError(t, err)
		_, err = b.st.ApplyFeed(b.ctx, "test", store.FeedUpdate{Prefixes: ps, StartedAt: when, Now: when})
		require.NoError(t, err)
		changes, err := b.st.ChangesSince(b.ctx, before, 10)
		require.NoError(t, err)
		require.Len(t, changes, 1)
		return sortedPrefixes(changes[0].Prefixes)
	}
	expiries := func() []time.Time {
		rows, err := b.st.Pool().Query(b.ctx, `SELECT DISTINCT expires_at FROM assertions WHERE source = 'feed:test' ORDER BY 1`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		require.NoError(t, err)
		for i := range out {
			out[i] = out[i].UTC()
		}
		return out
	}
	require.Equal(t, ps, apply(at(0), ps))
	require.Equal(t, []time.Time{at(time.Hour)}, expiries())

	require.Empty(t, apply(at(10*time.Minute), ps), "unchanged, expiry still over half the TTL away")
	require.Equal(t, []time.Time{at(time.Hour)}, expiries())

	// A new entry at 20 minutes; at 40 minutes the first three have less than
	// half an hour left and are extended, the new one is not.
	more := append(slices.Clone(ps), netip.MustParsePrefix("192.0.2.9/32"))
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.9/32")}, apply(at(20*time.Minute), more))
	require.Equal(t, ps, apply(at(40*time.Minute), more))
	require.Equal(t, []time.Time{at(80 * time.Minute), at(100 * time.Minute)}, expiries())

	// Reclassified: every row's classification is rewritten.
	f, err := b.st.FeedByName(b.ctx, "test")
	require.NoError(t, err)
	f.Classification = "suspicious"
	_, err = b.st.PutFeed(b.ctx, f, "test")
	require.NoError(t, err)
	require.Equal(t, more, apply(at(41*time.Minute), more))
	require.Equal(t, []string{"classification=suspicious", "tag=bad"}, feedState(t, b, "test")["192.0.2.9/32"])
}
