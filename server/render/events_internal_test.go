package render

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/store"
)

func TestRenderEventsReportNewGuardRemovalsAndSizeCrossings(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	dns := guard.Removed{Prefix: netip.MustParsePrefix("9.9.9.9/32"), Rule: 1, Reason: "public resolver"}
	root := guard.Removed{Prefix: netip.MustParsePrefix("198.41.0.4/32"), Rule: 1, Reason: "root server"}
	prev := &Render{GuardRemoved: []guard.Removed{dns}, Rules: []Rule{{V4: []string{"203.0.113.0/24"}}}}
	next := &Render{GuardRemoved: []guard.Removed{dns, root}, Rules: []Rule{{V4: []string{"203.0.113.0/24", "198.51.100.0/24"}, V6: []string{"2001:db8::/32"}}}}

	require.Equal(t, []store.Event{
		{At: now, Kind: store.EventGuardRemoved, SubjectType: "prefix", Subject: "198.41.0.4/32", Details: map[string]any{"ruleset": "edge", "rule": 1, "reason": "root server"}},
		{At: now, Kind: store.EventRenderSize, SubjectType: "ruleset", Subject: "edge", Details: map[string]any{"elements": 3, "limit": 2}},
	}, renderEvents("edge", prev, next, 2, now))
	// Still over the limit, nothing new removed: no event.
	require.Empty(t, renderEvents("edge", next, next, 2, now))
	// No limit: removals only.
	require.Len(t, renderEvents("edge", nil, next, 0, now), 2)
}
