package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func eventsOf(t *testing.T, st *store.Store, kind string) []store.Event {
	t.Helper()
	evs, err := st.ListEvents(context.Background(), store.EventFilter{Kind: kind})
	require.NoError(t, err)
	return evs
}

func TestBouncerErrorBecomesOneEventPerNewError(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	b, err := st.CreateBouncer(ctx, "fw1", []string{}, store.HashSecret("k"), "test")
	require.NoError(t, err)
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, e := range []string{"", "nft: netlink: operation not permitted", "nft: netlink: operation not permitted", "", "disk full"} {
		_, err := st.TouchBouncer(ctx, b.ID, store.BouncerHeartbeat{LastError: e, Version: "1.0.0"}, now)
		require.NoError(t, err)
	}
	evs := eventsOf(t, st, store.EventBouncerError)
	require.Len(t, evs, 2)
	require.Equal(t, "fw1", evs[0].Subject)
	require.Equal(t, "disk full", evs[0].Details["error"])
	require.Equal(t, "nft: netlink: operation not permitted", evs[1].Details["error"])
}

func TestFeedRunFailedOrRefusedIsAnEvent(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	_, err := st.PutFeed(ctx, store.Feed{Name: "drop", URL: "https://feeds.example/drop.txt", Format: "list", Tag: "drop"}, "test")
	require.NoError(t, err)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, r := range []store.FeedRun{
		{Feed: "drop", StartedAt: at, FinishedAt: at, Status: store.RunOK},
		{Feed: "drop", StartedAt: at, FinishedAt: at, Status: store.RunFailed, Error: "HTTP 404"},
		{Feed: "drop", StartedAt: at, FinishedAt: at, Status: store.RunRefused, Error: "refresh would drop too many entries"},
	} {
		_, err := st.RecordFeedRun(ctx, r)
		require.NoError(t, err)
	}
	failed := eventsOf(t, st, store.EventFeedFailed)
	require.Len(t, failed, 1)
	require.Equal(t, "drop", failed[0].Subject)
	require.Equal(t, "HTTP 404", failed[0].Details["error"])
	held := eventsOf(t, st, store.EventFeedHeld)
	require.Len(t, held, 1)
	require.Equal(t, "refresh would drop too many entries", held[0].Details["error"])
}

func TestConditionReportsOnceUntilItEnds(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	ev := store.Event{At: now, Kind: store.EventBouncerSilent, SubjectType: "bouncer", Subject: "fw1"}
	for _, c := range []struct {
		holds, stored bool
	}{{true, true}, {true, false}, {false, false}, {true, true}} {
		stored, err := st.Condition(ctx, "bouncer.silent:fw1", c.holds, now, ev)
		require.NoError(t, err)
		require.Equal(t, c.stored, stored)
	}
	require.Len(t, eventsOf(t, st, store.EventBouncerSilent), 2)
}

func TestPruneEventsKeepsTheRetention(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	require.NoError(t, st.AppendEvents(ctx, []store.Event{
		{At: now.Add(-31 * 24 * time.Hour), Kind: "honeypot", SubjectType: "address", Subject: "192.0.2.1"},
		{At: now.Add(-29 * 24 * time.Hour), Kind: "honeypot", SubjectType: "address", Subject: "192.0.2.2"},
	}))
	n, err := st.PruneEvents(ctx, now, 30*24*time.Hour)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	evs := eventsOf(t, st, "honeypot")
	require.Len(t, evs, 1)
	require.Equal(t, "192.0.2.2", evs[0].Subject)
}

func TestAlertPendingSkipsAlertingsOwnEvents(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	require.NoError(t, st.AppendEvents(ctx, []store.Event{
		{Kind: "honeypot", SubjectType: "address", Subject: "192.0.2.1"},
		{Kind: store.EventAlertDeliveryFailed, SubjectType: "channel", Subject: "hook"},
	}))
	var taken []store.Event
	require.NoError(t, st.InAlertTx(ctx, func(tx *store.AlertTx) error {
		var err error
		taken, err = tx.TakePending(ctx, 10)
		return err
	}))
	require.Len(t, taken, 1)
	require.Equal(t, "honeypot", taken[0].Kind)
	require.NoError(t, st.InAlertTx(ctx, func(tx *store.AlertTx) error {
		var err error
		taken, err = tx.TakePending(ctx, 10)
		return err
	}))
	require.Empty(t, taken, "each event is taken once")
}
