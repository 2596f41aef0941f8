package store_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestAddrsLackingAndHostnames(t *testing.T) {
	t.Parallel()
	st, ctx := storetest.Store(t), context.Background()
	now := time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)
	var obs []store.Observation
	for _, p := range []string{"192.0.2.1/32", "2001:db8::1/128", "198.51.100.0/24", "192.0.2.2/32"} {
		obs = append(obs, store.Observation{Prefix: netip.MustParsePrefix(p), Source: "ingest:t", SeenAt: now})
	}
	require.NoError(t, st.Ingest(ctx, obs, "t"))
	a1, a2, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")

	got, err := st.AddrsLacking(ctx, store.EnrichPTR, now.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []netip.Addr{a1, a2, a6}, got, "networks are not looked up")

	require.NoError(t, st.PutHostnames(ctx, a1, "ptr", []string{"a.example.", "b.example."}, now))
	require.NoError(t, st.PutHostnames(ctx, a1, "ptr", []string{"a.example."}, now.Add(time.Minute)))
	require.NoError(t, st.RecordEnrichAttempt(ctx, store.EnrichPTR, a6, now, store.EnrichNotFound, "rdns: no PTR record"))
	got, err = st.AddrsLacking(ctx, store.EnrichPTR, now.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{a2}, got)
	// After the retry period the failed address is due again.
	got, err = st.AddrsLacking(ctx, store.EnrichPTR, now.Add(time.Hour), 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []netip.Addr{a2, a6}, got)

	require.NoError(t, st.PutRDAPNetwork(ctx, store.RDAPNetwork{Network: netip.MustParsePrefix("192.0.2.0/24"), Name: "NET", FetchedAt: now}))
	covered, err := st.RDAPCovers(ctx, a2)
	require.NoError(t, err)
	require.True(t, covered)
	got, err = st.AddrsLacking(ctx, store.EnrichRDAP, now.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{a6}, got)
}

func TestFeedsMigrationDownAndUp(t *testing.T) {
	t.Parallel()
	st, ctx := storetest.Store(t), context.Background()
	// Revert down to and including 0003 (later migrations may sit on top).
	for {
		v, err := st.MigrateDown(ctx)
		require.NoError(t, err)
		if v <= 3 {
			require.Equal(t, 3, v)
			break
		}
	}
	applied, err := st.Migrate(ctx)
	require.NoError(t, err)
	require.Contains(t, applied, 3)
}

func TestReplaceGeoNetworksIsAllOrNothing(t *testing.T) {
	t.Parallel()
	st, ctx := storetest.Store(t), context.Background()
	seq := func(nets []store.GeoNetwork, fail error) func(yield func(store.GeoNetwork, error) bool) {
		return func(yield func(store.GeoNetwork, error) bool) {
			for _, n := range nets {
				if !yield(n, nil) {
					return
				}
			}
			if fail != nil {
				yield(store.GeoNetwork{}, fail)
			}
		}
	}
	de := store.GeoNetwork{Network: netip.MustParsePrefix("192.0.2.0/24"), Country: "DE", Continent: "EU", ASN: 64500, ASOrg: "Example"}
	us := store.GeoNetwork{Network: netip.MustParsePrefix("198.51.100.0/24"), Country: "US", Continent: "NA"}
	n, err := st.ReplaceGeoNetworks(ctx, "test", seq([]store.GeoNetwork{de, de}, nil))
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "duplicates collapse")

	// A database that fails half-way leaves the old rows in place.
	_, err = st.ReplaceGeoNetworks(ctx, "test", seq([]store.GeoNetwork{us}, errors.New("corrupt file")))
	require.ErrorContains(t, err, "corrupt file")
	var country string
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT string_agg(country, ',') FROM geo_networks`).Scan(&country))
	require.Equal(t, "DE", country)

	n, err = st.ReplaceGeoNetworks(ctx, "test", seq([]store.GeoNetwork{us}, nil))
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT string_agg(country, ',') FROM geo_networks`).Scan(&country))
	require.Equal(t, "US", country)
}
