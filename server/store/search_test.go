package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// Search must return exactly what the plain reference statement returns, page by page.
func TestSearchAgreesWithReference(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	now := time.Now()
	var obs []store.Observation
	for i := range 60 {
		o := store.Observation{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32),
			Source: fmt.Sprintf("ingest:s%d", i%3), Tags: []string{fmt.Sprintf("t%d", i%4)}, SeenAt: now}
		if i%2 == 0 {
			o.Classification = "malicious"
		}
		obs = append(obs, o)
	}
	require.NoError(t, st.Ingest(ctx, obs, "test"))
	// A manual suppress hides t0 on one prefix, a manual classification wins on another.
	require.NoError(t, st.PutOverride(ctx, netip.MustParsePrefix("198.51.100.4/32"), store.Override{SuppressTags: []string{"t0"}}, "alice", now))
	require.NoError(t, st.PutOverride(ctx, netip.MustParsePrefix("198.51.100.6/32"), store.Override{Classification: "benign"}, "alice", now))
	within := netip.MustParsePrefix("198.51.100.0/27")
	for _, f := range []store.Filter{{}, {Tag: "t0"}, {Tag: "t1"}, {Classification: "malicious"}, {Classification: "benign"},
		{Classification: "unknown"}, {Within: &within}, {Tag: "t2", Within: &within}, {Source: "ingest:s1"}, {Source: "ingest:*"}} {
		var want, got []store.Item
		for after := int64(0); ; {
			page, err := st.ReferenceSearch(ctx, f, after, 7, now)
			require.NoError(t, err)
			want = append(want, page...)
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1].ID
		}
		for after := int64(0); ; {
			page, err := st.Search(ctx, f, after, 7, now)
			require.NoError(t, err)
			got = append(got, page...)
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1].ID
		}
		require.Equal(t, want, got, "%+v", f)
	}
	n, err := st.CountWithin(ctx, within, 10)
	require.NoError(t, err)
	require.Equal(t, 10, n)
}
