package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func failures(addr string, at time.Time, n int) []store.SensorEvent {
	var evs []store.SensorEvent
	for i := range n {
		evs = append(evs, store.SensorEvent{Addr: netip.MustParseAddr(addr), Kind: "ssh-auth-failure", Host: "gw", Format: "sshd",
			At: at.Add(time.Duration(i) * time.Second), Line: "Failed password"})
	}
	return evs
}

func TestEscalatedTTL(t *testing.T) {
	t.Parallel()
	base, capped := 5*time.Minute, 30*24*time.Hour
	for n, want := range map[int]time.Duration{0: 5 * time.Minute, 1: 5 * time.Minute, 2: 20 * time.Minute, 3: 45 * time.Minute,
		10: 500 * time.Minute, 100: capped, 1 << 20: capped} {
		require.Equal(t, want, store.EscalatedTTL(base, capped, n), "n=%d", n)
	}
}

// TestRepeatOffenders: the second firing after the tag expired gets 4× the
// TTL, the third 9×; after the quiet period it starts over; while the tag
// lives nothing fires again.
func TestRepeatOffenders(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	t0 := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	fire := func(now time.Time) []store.Firing {
		fs, err := st.StoreSensorEvents(ctx, failures("203.0.113.20", now.Add(-10*time.Second), 5), "test", now)
		require.NoError(t, err)
		return fs
	}
	f := fire(t0)
	require.Len(t, f, 1)
	require.Equal(t, store.Firing{Detection: "ssh-bruteforce", Addr: netip.MustParseAddr("203.0.113.20"), Tag: "ssh-bruteforce",
		Fires: 1, TTL: 5 * time.Minute, ExpiresAt: t0.Add(5 * time.Minute)}, f[0])
	require.Empty(t, fire(t0.Add(time.Minute)), "the tag still lives")
	f = fire(t0.Add(6 * time.Minute))
	require.Equal(t, 2, f[0].Fires)
	require.Equal(t, 20*time.Minute, f[0].TTL)
	f = fire(t0.Add(30 * time.Minute))
	require.Equal(t, 3, f[0].Fires)
	require.Equal(t, 45*time.Minute, f[0].TTL)
	offs, err := st.OffendersOf(ctx, netip.MustParseAddr("203.0.113.20"), t0.Add(30*time.Minute))
	require.NoError(t, err)
	require.Equal(t, []store.Offender{{Detection: "ssh-bruteforce", Fires: 3, LastFired: offs[0].LastFired, ExpiresAt: offs[0].ExpiresAt,
		NextTTL: 80 * time.Minute}}, offs)
	f = fire(t0.Add(8 * 24 * time.Hour))
	require.Equal(t, 1, f[0].Fires, "after a quiet week the escalation starts over")
	require.Equal(t, 5*time.Minute, f[0].TTL)

	// Four failures are not enough.
	fs, err := st.StoreSensorEvents(ctx, failures("203.0.113.21", t0, 4), "test", t0)
	require.NoError(t, err)
	require.Empty(t, fs)
}

// TestDetectionCountsAcrossWriters: five failures sent by five concurrent
// writers (as from several serve processes) fire exactly once.
func TestDetectionCountsAcrossWriters(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	var all []store.Firing
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs, err := st.StoreSensorEvents(ctx, failures("203.0.113.22", now.Add(time.Duration(i)*time.Second-time.Minute), 1), "test", now)
			require.NoError(t, err)
			mu.Lock()
			all = append(all, fs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.Len(t, all, 1)
	evs, err := st.ListEvents(ctx, store.EventFilter{Kind: "detection", Subject: "203.0.113.22"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
}

func dnsAnswers(addr string, at time.Time, names ...string) []store.SensorEvent {
	var evs []store.SensorEvent
	for i, n := range names {
		evs = append(evs, store.SensorEvent{Addr: netip.MustParseAddr(addr), Kind: "dns-answer", Host: "gw", Format: "dnsmasq",
			At: at.Add(time.Duration(i) * time.Second), Line: "reply " + n + " is " + addr,
			DNS: &store.PassiveDNS{Name: n, Client: netip.MustParseAddr("192.168.1.10")}})
	}
	return evs
}

func passiveOf(t *testing.T, st *store.Store, addr string) []store.PassiveDNS {
	t.Helper()
	var got []store.PassiveDNS
	a := netip.MustParseAddr(addr)
	require.NoError(t, st.EnrichmentOf(context.Background(), []netip.Prefix{netip.PrefixFrom(a, 32)}, store.EnrichmentReader{
		RDAP:     func(store.RDAPFacts) error { return nil },
		Host:     func(netip.Addr, []store.Hostname) error { return nil },
		Attempts: func(netip.Addr, []store.EnrichAttempt) error { return nil },
		PassiveDNS: func(b netip.Addr, ps []store.PassiveDNS) error {
			require.Equal(t, a, b)
			got = ps
			return nil
		},
	}))
	return got
}

// TestPassiveDNSBounded: an address keeps its store.MaxPassiveDNS newest
// names (a later batch pushes the oldest out), every write records the
// address in the change feed for the index, and the prune removes names
// last seen before the retention, with a change for their address.
func TestPassiveDNSBounded(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	t0 := time.Date(2001, 3, 3, 10, 0, 0, 0, time.UTC)
	var names []string
	for i := range 25 {
		names = append(names, fmt.Sprintf("n%02d.example.net", i))
	}
	before, err := st.ChangesSince(ctx, 0, 1_000_000)
	require.NoError(t, err)
	_, err = st.StoreSensorEvents(ctx, dnsAnswers("198.51.100.40", t0, names[:15]...), "test", t0)
	require.NoError(t, err)
	_, err = st.StoreSensorEvents(ctx, dnsAnswers("198.51.100.40", t0.Add(time.Hour), names[15:]...), "test", t0)
	require.NoError(t, err)
	got := passiveOf(t, st, "198.51.100.40")
	require.Len(t, got, store.MaxPassiveDNS)
	require.Equal(t, store.PassiveDNS{Name: "n24.example.net", Client: netip.MustParseAddr("192.168.1.10"),
		FirstSeen: t0.Add(time.Hour + 9*time.Second), LastSeen: t0.Add(time.Hour + 9*time.Second), Seen: 1}, got[0])
	require.Equal(t, "n05.example.net", got[19].Name, "n00–n04 are the oldest and went")

	// Seen again: the count and last seen grow, first seen stays.
	_, err = st.StoreSensorEvents(ctx, dnsAnswers("198.51.100.40", t0.Add(2*time.Hour), "N05.example.net"), "test", t0)
	require.NoError(t, err)
	got = passiveOf(t, st, "198.51.100.40")
	require.Equal(t, store.PassiveDNS{Name: "n05.example.net", Client: netip.MustParseAddr("192.168.1.10"),
		FirstSeen: t0.Add(5 * time.Second), LastSeen: t0.Add(2 * time.Hour), Seen: 2}, got[0])

	after, err := st.ChangesSince(ctx, 0, 1_000_000)
	require.NoError(t, err)
	var enrich int
	for _, c := range after[len(before):] {
		if c.Scope == store.ChangeEnrich && slices.Contains(c.Prefixes, netip.MustParsePrefix("198.51.100.40/32")) {
			enrich++
		}
	}
	require.Equal(t, 3, enrich, "one enrichment change per write")

	n, err := st.PrunePassiveDNS(ctx, t0.Add(time.Hour+5*time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 14, n, "n06–n14 and n15–n19 were last seen before")
	got = passiveOf(t, st, "198.51.100.40")
	var left []string
	for _, p := range got {
		left = append(left, p.Name)
	}
	require.Equal(t, []string{"n05.example.net", "n24.example.net", "n23.example.net", "n22.example.net", "n21.example.net", "n20.example.net"}, left)
	last, err := st.ChangesSince(ctx, after[len(after)-1].Seq, 1000)
	require.NoError(t, err)
	require.NotEmpty(t, last)
	require.Equal(t, store.ChangeEnrich, last[0].Scope)
	require.Contains(t, last[0].Prefixes, netip.MustParsePrefix("198.51.100.40/32"))
}

// TestSensorEventsFoldBySecond: the events of one address, kind, host and
// format within one second of a batch are one row holding their count and
// the newest line; detections add the counts, across batches too.
func TestSensorEventsFoldBySecond(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	t0 := now.Add(-time.Minute)
	addr := netip.MustParseAddr("203.0.113.30")
	ev := func(at time.Duration, kind, host, line string) store.SensorEvent {
		return store.SensorEvent{Addr: addr, Kind: kind, Host: host, Format: "sshd", At: t0.Add(at), Line: line}
	}
	fs, err := st.StoreSensorEvents(ctx, []store.SensorEvent{
		ev(100*time.Millisecond, "ssh-auth-failure", "gw", "a"),
		ev(900*time.Millisecond, "ssh-auth-failure", "gw", "c"),
		ev(500*time.Millisecond, "ssh-auth-failure", "gw", "b"),
		ev(600*time.Millisecond, "ssh-invalid-user", "gw", "d"),
		ev(700*time.Millisecond, "ssh-auth-failure", "db", "e"),
	}, "test", now)
	require.NoError(t, err)
	require.Empty(t, fs, "4 failures (3 from gw, 1 from db): ssh-bruteforce needs 5; an invalid user is not one of its kinds")
	rows := func() []store.SensorLine {
		lines, err := st.SensorLinesOf(ctx, addr, 10)
		require.NoError(t, err)
		for i := range lines {
			lines[i].At = lines[i].At.UTC()
		}
		return lines
	}
	utc := t0.UTC()
	require.Equal(t, []store.SensorLine{
		{At: utc.Add(900 * time.Millisecond), Kind: "ssh-auth-failure", Host: "gw", Format: "sshd", Line: "c", Count: 3},
		{At: utc.Add(700 * time.Millisecond), Kind: "ssh-auth-failure", Host: "db", Format: "sshd", Line: "e", Count: 1},
		{At: utc.Add(600 * time.Millisecond), Kind: "ssh-invalid-user", Host: "gw", Format: "sshd", Line: "d", Count: 1},
	}, rows())

	// A fifth failure in a later batch, in a second already stored: its
	// own row, and the counts add up to the threshold.
	fs, err = st.StoreSensorEvents(ctx, []store.SensorEvent{ev(950*time.Millisecond, "ssh-auth-failure", "gw", "g")}, "test", now)
	require.NoError(t, err)
	require.Len(t, fs, 1)
	require.Equal(t, "ssh-bruteforce", fs[0].Detection)
	require.Equal(t, []store.SensorLine{
		{At: utc.Add(950 * time.Millisecond), Kind: "ssh-auth-failure", Host: "gw", Format: "sshd", Line: "g", Count: 1},
		{At: utc.Add(900 * time.Millisecond), Kind: "ssh-auth-failure", Host: "gw", Format: "sshd", Line: "c", Count: 3},
		{At: utc.Add(700 * time.Millisecond), Kind: "ssh-auth-failure", Host: "db", Format: "sshd", Line: "e", Count: 1},
		{At: utc.Add(600 * time.Millisecond), Kind: "ssh-invalid-user", Host: "gw", Format: "sshd", Line: "d", Count: 1},
	}, rows())
}

// TestDetectionIsNotASighting: five failures are five sightings; the
// firing they cause asserts its tag but adds no sighting, moves no
// last_seen and counts nothing in the daily counts (a trial saw 6
// sightings for 5 events).
func TestDetectionIsNotASighting(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	t0 := now.Add(-time.Hour)
	fs, err := st.StoreSensorEvents(ctx, failures("203.0.113.40", t0, 5), "test", now)
	require.NoError(t, err)
	require.Len(t, fs, 1)
	var (
		sightings           int64
		firstSeen, lastSeen time.Time
	)
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT sightings, first_seen, last_seen FROM prefixes WHERE prefix = '203.0.113.40/32'`).
		Scan(&sightings, &firstSeen, &lastSeen))
	require.EqualValues(t, 5, sightings)
	require.Equal(t, t0, firstSeen.UTC())
	require.Equal(t, t0.Add(4*time.Second), lastSeen.UTC(), "the last failure, not the firing")
	var tagged int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM assertions a JOIN prefixes p ON p.id = a.prefix_id
		WHERE p.prefix = '203.0.113.40/32' AND a.source = 'sensor:ssh-bruteforce' AND a.value = 'ssh-bruteforce'`).Scan(&tagged))
	require.Equal(t, 1, tagged)
	var sensorDaily int64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT coalesce(sum(sightings), 0) FROM sighting_counts WHERE source LIKE 'sensor:%'`).Scan(&sensorDaily))
	require.Zero(t, sensorDaily)
}
