package alert_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time         { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) set(t time.Time)        { c.t.Store(t.UnixNano()) }
func newClock(t time.Time) *clock       { c := &clock{}; c.set(t); return c }
func quiet() *slog.Logger               { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func pfx(s string) netip.Prefix         { return netip.MustParsePrefix(s) }
func expAt(t time.Time) *time.Time      { return &t }
func kindOf(k string) store.EventFilter { return store.EventFilter{Kind: k} }

// step catches ix up and returns the marks between the snapshot before
// and after.
func step(t *testing.T, ix *index.Index, prev *index.Snap, w alert.Wanted) (*index.Snap, []store.Mark) {
	t.Helper()
	require.NoError(t, ix.CatchUp(context.Background()))
	cur := ix.Snapshot()
	return cur, alert.Diff(prev, cur, w)
}

// TestTagTransitionsAreOneEventAcrossProcesses: two indexes on one
// database (two serve processes) compare the views of changed prefixes
// through the resolver, grouped differently; the database stores one
// event per transition of a wanted tag or classification, none for what
// no rule asks for, and a new one when a tag that expired comes back.
func TestTagTransitionsAreOneEventAcrossProcesses(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	ix1 := indextest.Start(t, st, quiet(), clk.now)
	ix2 := indextest.Start(t, st, quiet(), clk.now)
	for _, r := range []store.AlertRule{
		{Name: "scanners", Kind: store.EventAddressTag, Filters: store.AlertFilters{Tag: "scanner"}, Enabled: true},
		{Name: "bad", Kind: store.EventAddressClassification, Filters: store.AlertFilters{Classification: "malicious", Country: "NL"}, Enabled: true},
	} {
		_, _, err := st.PutAlertRule(ctx, r, "test")
		require.NoError(t, err)
	}
	rules, err := st.AlertRules(ctx)
	require.NoError(t, err)
	w := alert.WantedBy(rules)
	require.Equal(t, alert.Wanted{Tags: map[string]bool{"scanner": true}, Classifications: map[string]bool{"malicious": true}}, w)

	p1, p2 := ix1.Snapshot(), ix2.Snapshot()
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: pfx("203.0.113.9/32"), Source: "ingest:scan", Tags: []string{"scanner", "other"}, SeenAt: t0, ExpiresAt: expAt(t0.Add(time.Hour))},
		{Prefix: pfx("198.51.100.0/24"), Source: "ingest:feedx", Classification: "malicious", SeenAt: t0},
	}, "test"))
	var m1 []store.Mark
	p1, m1 = step(t, ix1, p1, w)
	seq := p1.Seq()
	require.Equal(t, []store.Mark{
		{Subject: "198.51.100.0/24", Mark: "classification:malicious", Present: true, Seq: seq, At: t0, Event: store.Event{At: t0, Kind: store.EventAddressClassification,
			SubjectType: "prefix", Subject: "198.51.100.0/24", Details: map[string]any{"classification": "malicious", "source": "ingest:feedx", "prefix": "198.51.100.0/24"}}},
		{Subject: "203.0.113.9", Mark: "tag:scanner", Present: true, Seq: seq, At: t0, Event: store.Event{At: t0, Kind: store.EventAddressTag,
			SubjectType: "address", Subject: "203.0.113.9", Details: map[string]any{"tag": "scanner", "source": "ingest:scan", "prefix": "203.0.113.9/32"}}},
	}, m1)

	// The second process has not caught up yet; both report concurrently
	// once it has: one event each.
	var m2 []store.Mark
	p2, m2 = step(t, ix2, p2, w)
	require.Equal(t, m1, m2)
	var wg sync.WaitGroup
	stored, errs := make([]int, 2), make([]error, 2)
	for i, ms := range [][]store.Mark{m1, m2} {
		wg.Add(1)
		go func() { defer wg.Done(); stored[i], errs[i] = st.ReportMarks(ctx, ms) }()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Equal(t, 2, stored[0]+stored[1])
	n, err := st.ReportMarks(ctx, m1)
	require.NoError(t, err)
	require.Zero(t, n, "a report again stores nothing")

	// The tag expires; process 1 sees it go and come back; process 2 only
	// sees it present before and after (one change of grouping).
	clk.set(t0.Add(2 * time.Hour))
	ix1.Expire()
	p1, m1 = step(t, ix1, p1, w)
	require.Equal(t, []store.Mark{{Subject: "203.0.113.9", Mark: "tag:scanner", Present: false, Seq: seq, At: t0.Add(2 * time.Hour), Event: store.Event{At: t0.Add(2 * time.Hour), SubjectType: "address", Subject: "203.0.113.9"}}}, m1)
	n, err = st.ReportMarks(ctx, m1)
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: pfx("203.0.113.9/32"), Source: "ingest:scan", Tags: []string{"scanner"}, SeenAt: t0.Add(2 * time.Hour), ExpiresAt: expAt(t0.Add(3 * time.Hour))},
	}, "test"))
	_, m1 = step(t, ix1, p1, w)
	require.Len(t, m1, 1)
	require.True(t, m1[0].Present)
	n, err = st.ReportMarks(ctx, m1)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the tag came back: a new transition")
	_, m2 = step(t, ix2, p2, w)
	require.Empty(t, m2, "process 2 saw the tag present before and after")

	evs, err := st.ListEvents(ctx, kindOf(store.EventAddressTag))
	require.NoError(t, err)
	require.Len(t, evs, 2)
	for _, ev := range evs {
		require.Equal(t, "203.0.113.9", ev.Subject)
		require.Equal(t, "scanner", ev.Details["tag"])
	}
	evs, err = st.ListEvents(ctx, kindOf(store.EventAddressClassification))
	require.NoError(t, err)
	require.Len(t, evs, 1)

	// The rule's other filters match the prefix event through the
	// resolver's facts (country from the geo network).
	_, err = st.ReplaceGeoNetworks(ctx, "test", func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: pfx("198.51.100.0/22"), Country: "NL", ASN: 64500, ASOrg: "Example Net"}, nil)
	})
	require.NoError(t, err)
	require.NoError(t, ix1.CatchUp(ctx))
	target, ok := alert.Target(evs[0])
	require.True(t, ok)
	require.Equal(t, pfx("198.51.100.0/24"), target)
	for _, facts := range []alert.FactsFunc{alert.FromStore(st, clk.now), alert.FromIndex(nil, st, clk.now)} {
		f, err := facts(ctx, target)
		require.NoError(t, err)
		require.Equal(t, alert.Facts{Known: true, Classification: "malicious", Tags: []string{}, Country: "NL", ASN: 64500, ASOrg: "Example Net",
			Reasons: []string{"classification malicious from ingest:feedx on 198.51.100.0/24"}}, f)
		for _, r := range rules {
			if r.Name == "bad" {
				require.True(t, alert.Matches(r, evs[0], f))
				r.Filters.Country = "DE"
				require.False(t, alert.Matches(r, evs[0], f))
			}
		}
	}
	require.Equal(t, alert.SnapFacts(ix1.Snapshot(), target), mustFacts(t, alert.FromStore(st, clk.now), target), "index and store answer alike")
}

func mustFacts(t *testing.T, fn alert.FactsFunc, p netip.Prefix) alert.Facts {
	t.Helper()
	f, err := fn(context.Background(), p)
	require.NoError(t, err)
	return f
}

// TestWatchMarksStoresTheEvent: WatchMarks, as serve runs it, stores one
// address.tag event when a wanted tag appears, and the message reads it.
func TestWatchMarksStoresTheEvent(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx, cancel := context.WithCancel(context.Background())
	ix := indextest.Start(t, st, quiet(), nil)
	_, _, err := st.PutAlertRule(ctx, store.AlertRule{Name: "scanners", Kind: store.EventAddressTag, Filters: store.AlertFilters{Tag: "scanner"}, Enabled: true}, "test")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); alert.WatchMarks(ctx, ix, st, quiet()) }()
	t.Cleanup(func() { cancel(); <-done })
	now := time.Now()
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: pfx("203.0.113.9/32"), Source: "bouncer:fw1", Tags: []string{"scanner", "honeypot"}, SeenAt: now, ExpiresAt: expAt(now.Add(time.Hour))},
	}, "test"))
	var evs []store.Event
	require.Eventually(t, func() bool {
		evs, err = st.ListEvents(ctx, kindOf(store.EventAddressTag))
		require.NoError(t, err)
		return len(evs) > 0
	}, 20*time.Second, 10*time.Millisecond)
	require.Len(t, evs, 1)
	require.Equal(t, "address", evs[0].SubjectType)
	require.Equal(t, "203.0.113.9", evs[0].Subject)
	require.Equal(t, map[string]any{"tag": "scanner", "source": "bouncer:fw1", "prefix": "203.0.113.9/32"}, evs[0].Details)
	m, err := alert.Compose(ctx, evs, alert.FromStore(st, time.Now), "https://muninn.example")
	require.NoError(t, err)
	require.Equal(t, "[muninn] address.tag: 203.0.113.9 got tag scanner from bouncer:fw1", m.Title)
	require.Equal(t, "address.tag: 203.0.113.9 got tag scanner from bouncer:fw1\n"+
		"at: "+evs[0].At.UTC().Format("2006-01-02 15:04:05Z")+"\n"+
		"classification: unknown\n"+
		"tags: honeypot, scanner\n"+
		"reason: tag honeypot from bouncer:fw1 on 203.0.113.9/32\n"+
		"reason: tag scanner from bouncer:fw1 on 203.0.113.9/32\n"+
		"https://muninn.example/ui/ips/203.0.113.9", m.Body)
}
