package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestEventsAppendAndList(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	require.NoError(t, st.AppendEvents(ctx, []store.Event{
		{At: at, Kind: "honeypot", SubjectType: "address", Subject: "203.0.113.9", Details: map[string]any{"port": "tcp/23"}},
		{At: at.Add(time.Second), Kind: "feed.failed", SubjectType: "feed", Subject: "spamhaus-drop"},
	}))
	all, err := st.ListEvents(ctx, store.EventFilter{})
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, "feed.failed", all[0].Kind)
	require.Equal(t, map[string]any{}, all[0].Details)
	require.Equal(t, map[string]any{"port": "tcp/23"}, all[1].Details)
	require.True(t, all[1].At.Equal(at))

	hp, err := st.ListEvents(ctx, store.EventFilter{Kind: "honeypot"})
	require.NoError(t, err)
	require.Len(t, hp, 1)
	require.Equal(t, "203.0.113.9", hp[0].Subject)

	older, err := st.ListEvents(ctx, store.EventFilter{Before: all[0].ID})
	require.NoError(t, err)
	require.Len(t, older, 1)
	require.Equal(t, all[1].ID, older[0].ID)

	require.Error(t, st.AppendEvents(ctx, []store.Event{{Kind: "Bad Kind", SubjectType: "address", Subject: "x"}}))
}
