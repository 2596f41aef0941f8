package render

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestDrainEndsParkedLongPolls(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	ctx := context.Background()
	changed := make(chan struct{})
	parked := make(chan bool)
	go func() { parked <- h.Await(ctx, changed) }()
	waited := make(chan *Snapshot)
	go func() { waited <- h.Wait(ctx, "edge", 0) }()
	require.Eventually(t, func() bool { return h.Parked() == 2 }, time.Minute, time.Millisecond)

	h.Drain()
	require.False(t, <-parked, "Await ends as at its deadline")
	require.Nil(t, <-waited, "Wait ends as at its deadline")
	require.Equal(t, 0, h.Parked())
	h.Drain() // a second Drain is a no-op
	require.False(t, h.Await(ctx, changed), "later long polls return at once")
	select {
	case <-h.Draining():
	default:
		t.Fatal("Draining is closed after Drain")
	}
}

// lockedBuf records log lines while the hub's goroutine logs.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHubBackoffResetsAfterGoodConnection kills the hub's listening
// connection repeatedly: after a session that counts as good, the reconnect
// waits the shortest backoff again; after sessions that do not, it doubles.
func TestHubBackoffResetsAfterGoodConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		good time.Duration
		want []string
	}{
		{"good sessions reset", time.Nanosecond, []string{"1s", "1s", "1s"}},
		{"short sessions double", time.Hour, []string{"1s", "2s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			st, err := store.Open(ctx, storetest.URL(t), 5, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			t.Cleanup(st.Close)
			logs := &lockedBuf{}
			h := NewHub(st, slog.New(slog.NewTextHandler(logs, nil)), time.Now, Options{Source: newMemSource(nil, nil)})
			h.goodSession = tc.good
			done := make(chan struct{})
			go func() { defer close(done); _ = h.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			require.True(t, h.WaitReady(ctx))
			re := regexp.MustCompile(`Lost the change listener; reconnecting\..* backoff=(\S+)`)
			for i := range tc.want {
				// Kill until the hub reports the loss: a backend terminated a
				// moment ago can still be listed as LISTENing while it exits,
				// so one kill that "succeeded" may not have hit the live
				// listener. No new listener exists during the backoff (≥ 1 s)
				// after the report, so this never kills twice per session.
				require.Eventually(t, func() bool {
					if n := len(re.FindAllString(logs.String(), -1)); n > i {
						return n == i+1
					}
					storetest.KillListeners(t, st)
					return len(re.FindAllString(logs.String(), -1)) == i+1
				}, time.Minute, 10*time.Millisecond)
			}
			var got []string
			for _, m := range re.FindAllStringSubmatch(logs.String(), -1) {
				got = append(got, m[1])
			}
			require.Equal(t, tc.want, got)
		})
	}
}
