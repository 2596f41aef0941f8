package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker"
)

// startClient runs a real River client on the test database and returns a
// channel of finished jobs.
func startClient(t *testing.T, b testBundle) (*river.Client[pgxTx], <-chan *river.Event) {
	t.Helper()
	rc, err := worker.NewClient(b.deps, true)
	require.NoError(t, err)
	events, cancel := rc.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	t.Cleanup(cancel)
	ctx, stop := context.WithCancel(context.Background())
	require.NoError(t, rc.Start(ctx))
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = rc.Stop(sctx)
		stop()
	})
	return rc, events
}

// waitFor returns the first finished job of kind, failing after a minute.
func waitFor(t *testing.T, events <-chan *river.Event, kind string) *river.Event {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-events:
			if ev.Job.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s job finished within a minute", kind)
		}
	}
}

func TestRiverScheduleRefreshesDueFeeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.set("r", []byte("192.0.2.1\n192.0.2.2\n"))
	b.putFeed(t, store.Feed{Name: "r", Format: "list", Tag: "r", Enabled: true})
	b.putFeed(t, store.Feed{Name: "off", Format: "list", Tag: "off"})
	_, events := startClient(t, b)

	// The periodic schedule job runs on start and enqueues the due feed.
	ev := waitFor(t, events, worker.FeedRefreshArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	require.Len(t, b.stored(t, "r"), 2)
	runs, err := b.st.FeedRuns(b.ctx, "off", 10)
	require.NoError(t, err)
	require.Empty(t, runs)
}

func TestRiverRefreshIsUniquePerFeed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc, err := worker.NewClient(b.deps, false)
	require.NoError(t, err)
	first, err := rc.Insert(b.ctx, worker.FeedRefreshArgs{Name: "x"}, nil)
	require.NoError(t, err)
	require.False(t, first.UniqueSkippedAsDuplicate)
	again, err := rc.Insert(b.ctx, worker.FeedRefreshArgs{Name: "x", Force: true}, nil)
	require.NoError(t, err)
	require.True(t, again.UniqueSkippedAsDuplicate)
	other, err := rc.Insert(b.ctx, worker.FeedRefreshArgs{Name: "y"}, nil)
	require.NoError(t, err)
	require.False(t, other.UniqueSkippedAsDuplicate)

	sum, err := b.st.JobSummary(b.ctx, 5)
	require.NoError(t, err)
	require.Equal(t, []store.JobCount{{Kind: "feed_refresh", State: "available", Count: 2}}, sum.Counts)
}

func TestRiverFailedRefreshShowsInJobSummary(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putFeed(t, store.Feed{Name: "gone", Format: "list", Tag: "gone"}) // the server has no such file: 404
	rc, events := startClient(t, b)
	_, err := rc.Insert(b.ctx, worker.FeedRefreshArgs{Name: "gone"}, &river.InsertOpts{MaxAttempts: 1})
	require.NoError(t, err)
	ev := waitFor(t, events, worker.FeedRefreshArgs{}.Kind())
	require.Equal(t, river.EventKindJobFailed, ev.Kind)

	sum, err := b.st.JobSummary(b.ctx, 10)
	require.NoError(t, err)
	require.Len(t, sum.Failures, 1)
	require.Equal(t, "feed_refresh", sum.Failures[0].Kind)
	require.Equal(t, "discarded", sum.Failures[0].State)
	require.Contains(t, sum.Failures[0].Error, "404")
	require.JSONEq(t, `{"name":"gone"}`, string(sum.Failures[0].Args))
	runs, err := b.st.FeedRuns(b.ctx, "gone", 5)
	require.NoError(t, err)
	require.Equal(t, store.RunFailed, runs[0].Status)
}
