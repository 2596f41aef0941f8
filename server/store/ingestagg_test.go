package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// storedRows is every prefix and assertion under network, the prefix named
// by its last byte, in one comparable string per row.
func storedRows(t *testing.T, st *store.Store, network netip.Prefix) []string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `
		SELECT p.prefix, p.first_seen, p.last_seen, p.sightings, coalesce(a.source, ''), coalesce(a.kind, ''), coalesce(a.value, ''),
		       a.first_seen, a.last_seen, a.expires_at, coalesce(a.created_by, '')
		FROM prefixes p LEFT JOIN assertions a ON a.prefix_id = p.id
		WHERE p.prefix <<= $1 ORDER BY p.prefix, a.kind, a.source, a.value`, network)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var (
			p                       netip.Prefix
			pFirst, pLast           time.Time
			n                       int64
			source, kind, value, by string
			aFirst, aLast, aExp     *time.Time
		)
		require.NoError(t, rows.Scan(&p, &pFirst, &pLast, &n, &source, &kind, &value, &aFirst, &aLast, &aExp, &by))
		f := func(t *time.Time) string {
			if t == nil {
				return "-"
			}
			return t.UTC().Format(time.RFC3339)
		}
		out = append(out, fmt.Sprintf(".%d %s %s %d | %s %s %s %s %s %s %s", p.Addr().As4()[3], f(&pFirst), f(&pLast), n,
			source, kind, value, f(aFirst), f(aLast), f(aExp), by))
	}
	require.NoError(t, rows.Err())
	return out
}

// One aggregated merge of a batch stores exactly what merging its
// observations one at a time does, and so does the observation log's merge:
// random observations of a few addresses, sources, tags (one with a default
// TTL), classifications, notes and expiries, their times on a 2-minute grid
// (so no repeat falls under the one-minute grain), in random order.
func TestIngestBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	require.NoError(t, st.PutTag(ctx, store.Tag{Name: "ttl-tag", DefaultTTL: 3 * time.Hour}, "test"))
	seed := time.Now().UnixNano()
	if v := os.Getenv("MUNINN_INGEST_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (replay with MUNINN_INGEST_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	t0 := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC) // the grid crosses midnight
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	var base []store.Observation
	for range 300 {
		o := store.Observation{
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{0, 0, 0, byte(1 + rng.IntN(6))}), 32),
			Source: pick("ingest:a", "ingest:b", "log:fw1"),
			SeenAt: t0.Add(time.Duration(rng.IntN(90)) * 2 * time.Minute),
		}
		for _, tag := range []string{"scanner", "ttl-tag", "bruteforce"} {
			if rng.IntN(3) == 0 {
				o.Tags = append(o.Tags, tag)
			}
		}
		if rng.IntN(2) == 0 {
			o.Classification = pick("malicious", "suspicious", "benign")
		}
		if rng.IntN(4) == 0 {
			o.Note = pick("first note", "second note")
		}
		if rng.IntN(3) == 0 {
			exp := o.SeenAt.Add(time.Duration(10+rng.IntN(20)) * 2 * time.Minute)
			o.ExpiresAt = &exp
		}
		base = append(base, o)
	}
	in := func(network string) []store.Observation {
		n := netip.MustParsePrefix(network).Addr().As4()
		out := make([]store.Observation, len(base))
		for i, o := range base {
			a := o.Prefix.Addr().As4()
			o.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{n[0], n[1], n[2], a[3]}), 32)
			out[i] = o
		}
		return out
	}
	require.NoError(t, st.Ingest(ctx, in("198.51.100.0/24"), "test"))
	for _, o := range in("203.0.113.0/24") {
		require.NoError(t, st.Ingest(ctx, []store.Observation{o}, "test"))
	}
	require.NoError(t, st.AppendObservations(ctx, in("192.0.2.0/24"), "test"))
	require.NoError(t, st.Flush(ctx))

	batch := storedRows(t, st, netip.MustParsePrefix("198.51.100.0/24"))
	require.NotEmpty(t, batch)
	require.Equal(t, storedRows(t, st, netip.MustParsePrefix("203.0.113.0/24")), batch, "one by one")
	require.Equal(t, storedRows(t, st, netip.MustParsePrefix("192.0.2.0/24")), batch, "through the log")

	// Every observation counted once per side in the daily counts.
	want := map[string]int64{}
	for _, o := range base {
		want[o.SeenAt.Format("2006-01-02")+" "+o.Source] += 3
	}
	rows, err := st.Pool().Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD') || ' ' || source, sightings FROM sighting_counts`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
		k string
		n int64
	}, error) {
		var v struct {
			k string
			n int64
		}
		return v, r.Scan(&v.k, &v.n)
	})
	require.NoError(t, err)
	gotMap := map[string]int64{}
	for _, g := range got {
		gotMap[g.k] = g.n
	}
	require.Equal(t, want, gotMap)
}

// Writers that submit at once, each a chain of batches, store exactly what
// one batch of all their observations does, with merges of the same
// prefixes running side by side (mergeWorkers) in whatever order: random
// observations as in TestIngestBatchEqualsOneByOne, on the same 2-minute
// grid. A lock on sighting_counts holds the first merge until a second one
// has started.
func TestIngestConcurrentWritersEqualOneBatch(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	two := store.ConcurrentMerges(st)
	seed := time.Now().UnixNano()
	if v := os.Getenv("MUNINN_INGEST_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (replay with MUNINN_INGEST_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	t0 := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	type obsAt struct {
		last byte
		o    store.Observation
	}
	var base []obsAt
	// Two classifications of one address from one source at one time tie,
	// and arrival decides a tie: each (address, source, time) comes once.
	type slot struct {
		last   byte
		source string
		at     time.Time
	}
	used := map[slot]bool{}
	for len(base) < 2000 {
		o := store.Observation{Source: pick("ingest:a", "ingest:b", "log:fw1"), SeenAt: t0.Add(time.Duration(rng.IntN(90)) * 2 * time.Minute)}
		last := byte(1 + rng.IntN(200))
		if k := (slot{last, o.Source, o.SeenAt}); used[k] {
			continue
		} else {
			used[k] = true
		}
		for _, tag := range []string{"scanner", "bruteforce"} {
			if rng.IntN(3) == 0 {
				o.Tags = append(o.Tags, tag)
			}
		}
		if rng.IntN(2) == 0 {
			o.Classification = pick("malicious", "suspicious", "benign")
		}
		if rng.IntN(3) == 0 {
			exp := o.SeenAt.Add(time.Duration(10+rng.IntN(20)) * 2 * time.Minute)
			o.ExpiresAt = &exp
		}
		base = append(base, obsAt{last, o})
	}
	in := func(network string, part []obsAt) []store.Observation {
		n := netip.MustParsePrefix(network).Addr().As4()
		out := make([]store.Observation, len(part))
		for i, b := range part {
			b.o.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{n[0], n[1], n[2], b.last}), 32)
			out[i] = b.o
		}
		return out
	}
	require.NoError(t, st.Ingest(ctx, in("198.51.100.0/24", base), "test"))

	hold, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer hold.Rollback(ctx) //nolint:errcheck // released below
	_, err = hold.Exec(ctx, `LOCK TABLE sighting_counts IN SHARE MODE`)
	require.NoError(t, err)

	const writers, batch = 6, 37
	errs := make(chan error, writers)
	for w := range writers {
		var part []obsAt
		for i := w; i < len(base); i += writers {
			part = append(part, base[i])
		}
		obs := in("203.0.113.0/24", part)
		go func() {
			var last *store.PendingIngest
			for off := 0; off < len(obs); off += batch {
				last = st.SubmitObservations(obs[off:min(off+batch, len(obs))], "test", last)
			}
			errs <- last.Wait(ctx)
		}()
	}
	<-two
	require.NoError(t, hold.Rollback(ctx))
	for range writers {
		require.NoError(t, <-errs)
	}
	one := storedRows(t, st, netip.MustParsePrefix("198.51.100.0/24"))
	require.NotEmpty(t, one)
	require.Equal(t, one, storedRows(t, st, netip.MustParsePrefix("203.0.113.0/24")))
}

// A repeat within a minute costs no tag write: the tag keeps its
// last_seen, while the prefix's last_seen and sightings and a
// classification's last_seen stay exact. A change of value is written at
// once, and an older observation arriving late never overrides a newer
// value (the new-user trial's case: benign 03:00:00, benign 03:00:30, then
// malicious 03:00:10 in three bodies left "malicious").
func TestIngestRepeatsWithinTheGrain(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o := obs("198.51.100.9/32", "ingest:a", t0, "scanner")
	o.Classification = "suspicious"
	require.NoError(t, st.Ingest(ctx, []store.Observation{o}, "test"))
	o.SeenAt = t0.Add(30 * time.Second)
	require.NoError(t, st.Ingest(ctx, []store.Observation{o}, "test"))
	rows := storedRows(t, st, netip.MustParsePrefix("198.51.100.0/24"))
	require.Equal(t, []string{
		".9 2026-03-01T12:00:00Z 2026-03-01T12:00:30Z 2 | ingest:a classification suspicious 2026-03-01T12:00:00Z 2026-03-01T12:00:30Z - test",
		".9 2026-03-01T12:00:00Z 2026-03-01T12:00:30Z 2 | ingest:a tag scanner 2026-03-01T12:00:00Z 2026-03-01T12:00:00Z - test",
	}, rows)

	o.SeenAt, o.Classification = t0.Add(40*time.Second), "malicious"
	require.NoError(t, st.Ingest(ctx, []store.Observation{o}, "test"))
	o.SeenAt, o.Classification = t0.Add(70*time.Second), "malicious"
	require.NoError(t, st.Ingest(ctx, []store.Observation{o}, "test"))
	require.Equal(t, []string{
		".9 2026-03-01T12:00:00Z 2026-03-01T12:01:10Z 4 | ingest:a classification malicious 2026-03-01T12:00:00Z 2026-03-01T12:01:10Z - test",
		".9 2026-03-01T12:00:00Z 2026-03-01T12:01:10Z 4 | ingest:a tag scanner 2026-03-01T12:00:00Z 2026-03-01T12:01:10Z - test",
	}, storedRows(t, st, netip.MustParsePrefix("198.51.100.0/24")))

	at := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for _, kind := range []string{"classification", "note"} {
		p := "198.51.100.50/32"
		if kind == "note" {
			p = "198.51.100.51/32"
		}
		for _, step := range []struct {
			after time.Duration
			value string
		}{{0, "benign"}, {30 * time.Second, "benign"}, {10 * time.Second, "malicious"}} {
			o := obs(p, "ingest:e", at.Add(step.after))
			if kind == "note" {
				o.Note = step.value
			} else {
				o.Classification = step.value
			}
			require.NoError(t, st.Ingest(ctx, []store.Observation{o}, "test"))
		}
	}
	rows = storedRows(t, st, netip.MustParsePrefix("198.51.100.0/24"))
	require.Contains(t, rows, ".50 2026-12-01T03:00:00Z 2026-12-01T03:00:30Z 3 | ingest:e classification benign 2026-12-01T03:00:00Z 2026-12-01T03:00:30Z - test")
	require.Contains(t, rows, ".51 2026-12-01T03:00:00Z 2026-12-01T03:00:30Z 3 | ingest:e note benign 2026-12-01T03:00:00Z 2026-12-01T03:00:30Z - test")
}

// A batch submitted after one that the database refused is not stored
// (an upload's "stored through line N" stays true), while a batch of
// another writer merged in the same round is.
func TestSubmitAfterAFailedBatchIsNotStored(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	_, err := st.Pool().Exec(ctx, `
		CREATE FUNCTION fail_boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.source = 'ingest:boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER fail_boom BEFORE INSERT ON assertions FOR EACH ROW EXECUTE FUNCTION fail_boom();`)
	require.NoError(t, err)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for range 5 {
		first := st.SubmitObservations([]store.Observation{obs("198.51.100.1/32", "ingest:boom", t0, "x")}, "upload", nil)
		second := st.SubmitObservations([]store.Observation{obs("198.51.100.2/32", "ingest:ok", t0, "x")}, "upload", first)
		other := st.SubmitObservations([]store.Observation{obs("198.51.100.3/32", "ingest:ok", t0, "x")}, "other", nil)
		require.ErrorContains(t, first.Wait(ctx), "boom")
		err := second.Wait(ctx)
		require.ErrorContains(t, err, "an earlier batch failed")
		require.NoError(t, other.Wait(ctx))
		var stored []string
		for _, r := range storedRows(t, st, netip.MustParsePrefix("198.51.100.0/24")) {
			stored = append(stored, r[:2])
		}
		require.Equal(t, []string{".3"}, stored)
	}
	require.False(t, errors.Is(ctx.Err(), context.Canceled))
}

// A batch arrives while a merge worker makes a pass that finds nothing, so
// the other worker, woken for it, leaves it to that pass; the pass must
// hand it over when it leaves, or the batch waits for good (a one-by-one
// writer hung so in TestIngestBatchEqualsOneByOne, about once in 8,000
// batches under -race).
func TestIngestBatchArrivingDuringAnIdlePass(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	sighting := func(i byte) []store.Observation {
		return []store.Observation{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, i}), 32), Source: "ingest:w",
			SeenAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}}
	}
	require.NoError(t, st.Ingest(ctx, sighting(1), "test")) // the workers run; bare sightings insert no assertions
	var p *store.PendingIngest
	arrived := make(chan struct{})
	var backedOff <-chan struct{}
	backedOff = store.IdlePassHook(st, func() {
		p = st.SubmitObservations(sighting(2), "test", nil)
		<-backedOff // the other worker saw this pass running and left p to it
		close(arrived)
	})
	store.Kick(st)
	<-arrived
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, p.Wait(wctx), "the batch was never merged")
}
