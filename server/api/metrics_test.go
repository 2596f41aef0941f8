package api_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
)

// scrape reads /metrics as series ("name{labels}" as exposed) to values.
func (b *testBundle) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(b.srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	_, _ = io.Copy(io.Discard, resp.Body)
	return out
}

// /metrics had no ingest, render, bouncer, feed, pool or build figures: each
// is scraped after the thing it counts, with its exact value.
func TestMetricsSeries(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	st := storetest.Store(t)
	reg := prometheus.NewRegistry()
	wm := worker.NewMetrics(reg, st)
	b := setupRenderHub(t, st, clk.Now, func(d *httpserver.Deps) {
		d.Now, d.Registry, d.Observed, d.Version = clk.Now, reg, wm.Observed, "v1.2.3"
	})
	ctx := context.Background()

	m := b.scrape(t)
	var build []string
	for k, v := range m {
		if strings.HasPrefix(k, "muninn_build_info{") {
			build = append(build, k)
			require.Equal(t, 1.0, v)
		}
	}
	require.Len(t, build, 1)
	require.Regexp(t, `^muninn_build_info\{go_version="go1\.[^"]+",revision="[^"]+",version="v1\.2\.3"\}$`, build[0])
	require.Equal(t, float64(st.Pool().Stat().MaxConns()), m["muninn_db_pool_max_conns"])
	for _, k := range []string{"muninn_db_pool_acquired_conns", "muninn_db_pool_idle_conns", "muninn_db_pool_total_conns",
		"muninn_db_pool_acquire_waits_total", "muninn_db_pool_acquire_wait_seconds_total"} {
		require.Contains(t, m, k)
	}
	require.GreaterOrEqual(t, m["muninn_db_pool_total_conns"], m["muninn_db_pool_acquired_conns"]+m["muninn_db_pool_idle_conns"])
	for _, kind := range []string{"ingest", "bouncer", "feed"} {
		require.Equal(t, 0.0, m[`muninn_observations_ingested_total{kind="`+kind+`"}`], kind)
	}
	require.Equal(t, 1.0, m["muninn_bouncers_scrape_ok"])
	require.Equal(t, 1.0, m["muninn_feeds_scrape_ok"])

	// Ingest: two observations stored.
	b.ingest(t, `{"ip":"192.0.2.1","source":"s","tags":["scanner"]}`+"\n"+`{"ip":"192.0.2.2","source":"s"}`+"\n")
	require.Equal(t, 2.0, b.scrape(t)[`muninn_observations_ingested_total{kind="ingest"}`])

	// A render: its version, and how long it took.
	b.putRuleset(t, "ruleset edge\n  hook input\n  honeypot tcp 23\n  block tag scanner\n", http.StatusCreated)
	_, first, _ := b.getRender(t, "edge", "")
	m = b.scrape(t)
	require.Equal(t, float64(first.Version), m[`muninn_render_version{ruleset="edge"}`])
	require.Greater(t, m[`muninn_render_last_duration_seconds{ruleset="edge"}`], 0.0)

	// A bouncer: lag since its creation until it confirms, no last seen yet.
	key := b.createBouncer(t, "fw1", "edge")
	bs, err := st.Bouncers(ctx)
	require.NoError(t, err)
	m = b.scrape(t)
	require.Equal(t, max(0, clk.Now().Sub(bs[0].CreatedAt).Seconds()), m[`muninn_bouncer_lag_seconds{bouncer="fw1",ruleset="edge"}`])
	require.NotContains(t, m, `muninn_bouncer_last_seen_timestamp_seconds{bouncer="fw1"}`)
	c := bouncer.NewClient(b.srv.URL, key, nil)
	require.NoError(t, c.Heartbeat(ctx, bouncer.Heartbeat{Hostname: "fw1", Version: "test", Applied: map[string]int64{"edge": first.Version}}))
	m = b.scrape(t)
	require.Equal(t, 0.0, m[`muninn_bouncer_lag_seconds{bouncer="fw1",ruleset="edge"}`])
	require.Equal(t, float64(clk.Now().Unix()), m[`muninn_bouncer_last_seen_timestamp_seconds{bouncer="fw1"}`])
	clk.Add(90 * time.Second)
	require.Equal(t, 90.0, b.scrape(t)[`muninn_bouncer_lag_seconds{bouncer="fw1",ruleset="edge"}`], "a silent bouncer's lag grows")

	// A honeypot report: one observation of kind bouncer.
	status, _, body := b.report(t, key, hit{"198.51.100.7", "edge", 23, "tcp", clk.Now().Format(time.RFC3339)})
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	require.Equal(t, 1.0, b.scrape(t)[`muninn_observations_ingested_total{kind="bouncer"}`])

	// A feed: last success and entries of its refresh.
	_, err = st.PutFeed(ctx, store.Feed{Name: "drop", URL: "http://example.invalid/drop", Format: "list", Tag: "drop", Enabled: true, Schedule: time.Hour}, "test")
	require.NoError(t, err)
	m = b.scrape(t)
	require.Equal(t, 0.0, m[`muninn_feed_entries{feed="drop"}`])
	require.NotContains(t, m, `muninn_feed_last_success_timestamp_seconds{feed="drop"}`, "never refreshed")
	at := clk.Now()
	_, err = st.ApplyFeed(ctx, "drop", store.FeedUpdate{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/48")},
		StartedAt: at, Now: at, Lines: 2})
	require.NoError(t, err)
	m = b.scrape(t)
	require.Equal(t, 2.0, m[`muninn_feed_entries{feed="drop"}`])
	require.Equal(t, float64(at.Unix()), m[`muninn_feed_last_success_timestamp_seconds{feed="drop"}`])
}
