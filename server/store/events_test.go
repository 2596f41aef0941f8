package store_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
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

// TestIngestWithEventsIsOneTransaction: a sighting and its event are stored
// together or not at all; PrefixChain reads them back for the resolver.
func TestIngestWithEventsIsOneTransaction(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	obs := []store.Observation{{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Source: "bouncer:fw1", Tags: []string{"honeypot"}, SeenAt: now, ExpiresAt: &exp}}
	bad := []store.Event{{At: now, Kind: "Bad Kind", SubjectType: "address", Subject: "203.0.113.9"}}
	require.Error(t, st.IngestWithEvents(ctx, obs, "bouncer:fw1", bad))
	chain, geo, err := st.PrefixChain(ctx, now, netip.MustParsePrefix("203.0.113.9/32"))
	require.NoError(t, err)
	require.Empty(t, chain, "the refused event took its sighting with it")
	require.Nil(t, geo)

	good := []store.Event{{At: now, Kind: store.EventHoneypot, SubjectType: "address", Subject: "203.0.113.9", Details: map[string]any{"port": 23}}}
	require.NoError(t, st.IngestWithEvents(ctx, obs, "bouncer:fw1", good))
	chain, _, err = st.PrefixChain(ctx, now, netip.MustParsePrefix("::ffff:203.0.113.9/128"))
	require.NoError(t, err)
	require.Len(t, chain, 1)
	require.Equal(t, netip.MustParsePrefix("203.0.113.9/32"), chain[0].Prefix)
	require.Equal(t, int64(1), chain[0].Sightings)
	require.Len(t, chain[0].Assertions, 1)
	require.Equal(t, resolve.Assertion{Kind: resolve.KindTag, Source: "bouncer:fw1", Value: "honeypot", FirstSeen: now, LastSeen: now, ExpiresAt: &exp}, chain[0].Assertions[0])
	evs, err := st.ListEvents(ctx, store.EventFilter{Kind: store.EventHoneypot})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, map[string]any{"port": float64(23)}, evs[0].Details)
}
