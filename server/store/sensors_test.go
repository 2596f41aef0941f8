package store_test

import (
	"context"
	"net/netip"
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
