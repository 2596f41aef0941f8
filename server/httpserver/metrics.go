package httpserver

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

type metrics struct {
	requests *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "muninn_http_request_duration_seconds",
		Help:    "HTTP requests by route pattern, method and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30},
	}, []string{"route", "method", "status"})}
	reg.MustRegister(m.requests)
	return m
}

func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		m.requests.WithLabelValues(routeOf(r), methodLabel(r.Method), strconv.Itoa(ww.Status())).Observe(time.Since(start).Seconds())
	})
}

// methodLabel bounds the method label: any client may send any method name,
// and each would otherwise be a new series kept forever.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// usageCollector exports the usage metrics CrowdSec bouncers push
// (POST /crowdsec/v1/usage-metrics), read from the store at each scrape so
// that every serve process reports the same totals.
type usageCollector struct {
	store *store.Store
	log   *slog.Logger
	desc  *prometheus.Desc
}

func newUsageCollector(st *store.Store, log *slog.Logger) *usageCollector {
	return &usageCollector{store: st, log: log, desc: prometheus.NewDesc("muninn_crowdsec_bouncer_usage_total",
		"Usage metrics pushed by CrowdSec bouncers (e.g. dropped packets and bytes per origin), summed over every push.",
		[]string{"bouncer", "name", "unit", "origin", "remediation"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bs, err := c.store.Bouncers(ctx)
	if err != nil {
		c.log.Warn("Could not read the bouncers' usage metrics.", "error", err)
		return
	}
	for _, b := range bs {
		for _, u := range b.Usage {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, u.Value, b.Name, u.Name, u.Unit, u.Origin, u.Remediation)
		}
	}
}

// stateCollector exports, at each scrape, what the database and this
// process's render hub say now: bouncers (last seen, lag per ruleset), feeds
// (last success, entries), the renders served (version, last render time),
// the database pool and the build. Bouncer, ruleset and feed names are
// created by admins, so the label sets stay as small as the configuration.
type stateCollector struct {
	store   *store.Store
	hub     *render.Hub
	log     *slog.Logger
	now     func() time.Time
	version string

	bouncerSeen, bouncerLag, bouncersUp  *prometheus.Desc
	feedSuccess, feedEntries, feedsUp    *prometheus.Desc
	renderVersion, renderDuration        *prometheus.Desc
	poolAcquired, poolIdle, poolTotal    *prometheus.Desc
	poolMax, poolWaits, poolWaitSeconds  *prometheus.Desc
	buildInfo                            *prometheus.Desc
	buildVersion, buildGo, buildRevision string
}

func newStateCollector(st *store.Store, hub *render.Hub, log *slog.Logger, now func() time.Time, version string) *stateCollector {
	c := &stateCollector{store: st, hub: hub, log: log, now: now,
		bouncerSeen: prometheus.NewDesc("muninn_bouncer_last_seen_timestamp_seconds",
			"When each bouncer last called the server (Unix time); absent until it has.", []string{"bouncer"}, nil),
		bouncerLag: prometheus.NewDesc("muninn_bouncer_lag_seconds",
			"Time since each bouncer last confirmed the version of each of its rulesets that was current then; grows while a bouncer is dead.", []string{"bouncer", "ruleset"}, nil),
		bouncersUp: prometheus.NewDesc("muninn_bouncers_scrape_ok",
			"1 when the bouncers could be read from the database at this scrape, else 0.", nil, nil),
		feedSuccess: prometheus.NewDesc("muninn_feed_last_success_timestamp_seconds",
			"When each feed was last refreshed successfully (Unix time); absent until it has been.", []string{"feed"}, nil),
		feedEntries: prometheus.NewDesc("muninn_feed_entries",
			"Entries of each feed's last successful refresh.", []string{"feed"}, nil),
		feedsUp: prometheus.NewDesc("muninn_feeds_scrape_ok",
			"1 when the feeds could be read from the database at this scrape, else 0.", nil, nil),
		renderVersion: prometheus.NewDesc("muninn_render_version",
			"Version of each ruleset's render this process serves.", []string{"ruleset"}, nil),
		renderDuration: prometheus.NewDesc("muninn_render_last_duration_seconds",
			"How long this process's last render of each ruleset took (compile and store).", []string{"ruleset"}, nil),
		poolAcquired: prometheus.NewDesc("muninn_db_pool_acquired_conns", "Database connections in use now.", nil, nil),
		poolIdle:     prometheus.NewDesc("muninn_db_pool_idle_conns", "Idle database connections now.", nil, nil),
		poolTotal:    prometheus.NewDesc("muninn_db_pool_total_conns", "Database connections open now (acquired, idle and being opened).", nil, nil),
		poolMax:      prometheus.NewDesc("muninn_db_pool_max_conns", "The pool's connection limit (MUNINN_DB_MAX_CONNS).", nil, nil),
		poolWaits: prometheus.NewDesc("muninn_db_pool_acquire_waits_total",
			"Acquisitions that had to wait for a connection (none was idle).", nil, nil),
		poolWaitSeconds: prometheus.NewDesc("muninn_db_pool_acquire_wait_seconds_total",
			"Time spent waiting for connections in acquisitions that waited.", nil, nil),
		buildInfo: prometheus.NewDesc("muninn_build_info",
			"Always 1; the labels name the build: muninn's version, the Go version and the VCS commit.", []string{"version", "go_version", "revision"}, nil),
	}
	c.buildVersion, c.buildGo, c.buildRevision = buildInfo(version)
	return c
}

// buildInfo reads the build's version (version when set, else the module's),
// Go version and commit from the binary.
func buildInfo(version string) (v, goVersion, revision string) {
	v, goVersion, revision = version, runtime.Version(), "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if v == "" {
		v = "unknown"
	}
	return v, goVersion, revision
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.bouncerSeen, c.bouncerLag, c.bouncersUp, c.feedSuccess, c.feedEntries, c.feedsUp,
		c.renderVersion, c.renderDuration, c.poolAcquired, c.poolIdle, c.poolTotal, c.poolMax, c.poolWaits, c.poolWaitSeconds, c.buildInfo} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A database that stalls costs this
// scrape the bouncer and feed figures (each says so in its *_scrape_ok), not
// the rest.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.buildInfo, 1, c.buildVersion, c.buildGo, c.buildRevision)
	ps := c.store.Pool().Stat()
	gauge(c.poolAcquired, float64(ps.AcquiredConns()))
	gauge(c.poolIdle, float64(ps.IdleConns()))
	gauge(c.poolTotal, float64(ps.TotalConns()))
	gauge(c.poolMax, float64(ps.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.poolWaits, prometheus.CounterValue, float64(ps.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.poolWaitSeconds, prometheus.CounterValue, ps.EmptyAcquireWaitTime().Seconds())
	for _, r := range c.hub.RenderStats() {
		gauge(c.renderVersion, float64(r.Version), r.Ruleset)
		gauge(c.renderDuration, r.Took.Seconds(), r.Ruleset)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := c.now()
	if bs, err := c.store.Bouncers(ctx); err != nil {
		c.log.Warn("Could not read the bouncers for the metrics.", "error", err)
		gauge(c.bouncersUp, 0)
	} else {
		gauge(c.bouncersUp, 1)
		for _, b := range bs {
			if b.LastSeen != nil {
				gauge(c.bouncerSeen, unixSeconds(*b.LastSeen), b.Name)
			}
			// Lag as the API reports it: only for a ruleset that has a render.
			for _, rs := range b.Rulesets {
				if c.hub.Latest(rs) != nil {
					gauge(c.bouncerLag, b.Lag(rs, now).Seconds(), b.Name, rs)
				}
			}
		}
	}
	if fs, err := c.store.Feeds(ctx); err != nil {
		c.log.Warn("Could not read the feeds for the metrics.", "error", err)
		gauge(c.feedsUp, 0)
	} else {
		gauge(c.feedsUp, 1)
		for _, f := range fs {
			if f.LastSuccess != nil {
				gauge(c.feedSuccess, unixSeconds(*f.LastSuccess), f.Name)
			}
			gauge(c.feedEntries, float64(f.Entries), f.Name)
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
