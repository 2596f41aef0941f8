package httpserver

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

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
