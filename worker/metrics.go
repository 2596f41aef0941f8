package worker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/muninn/muninn/server/store"
)

// Metrics are the workers' Prometheus metrics (muninn_jobs_*, muninn_feed_*)
// and the process's count of observations stored
// (muninn_observations_ingested_total, which the API adds to through
// Observed). A nil *Metrics records nothing.
type Metrics struct {
	worked   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	feedRuns *prometheus.CounterVec
	observed *prometheus.CounterVec
}

// Observation kinds: where stored observations came from (the label of
// muninn_observations_ingested_total; source names are anyone's choice, so
// the label is their kind).
const (
	ObservedIngest  = "ingest"  // POST /ingest
	ObservedBouncer = "bouncer" // bouncer honeypot reports
	ObservedFeed    = "feed"    // entries of a feed refresh applied
)

// NewMetrics registers the workers' metrics with reg, plus a collector that
// reads the queue's job counts by kind and state at scrape time.
func NewMetrics(reg prometheus.Registerer, st *store.Store) *Metrics {
	m := &Metrics{
		worked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muninn_jobs_worked_total", Help: "Jobs worked by this process, by kind and outcome (ok or error).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "muninn_jobs_duration_seconds", Help: "Time spent working one job, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		}, []string{"kind"}),
		feedRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muninn_feed_runs_total", Help: "Feed refreshes by feed and status (ok, not_modified, failed, refused).",
		}, []string{"feed", "status"}),
		observed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muninn_observations_ingested_total", Help: "Observations stored by this process, by source kind (ingest, bouncer, feed: the entries of each applied refresh).",
		}, []string{"kind"}),
	}
	for _, k := range []string{ObservedIngest, ObservedBouncer, ObservedFeed} {
		m.observed.WithLabelValues(k) // every kind is a series from the start, at 0
	}
	reg.MustRegister(m.worked, m.duration, m.feedRuns, m.observed, &jobsCollector{st: st})
	return m
}

// Observed counts n observations of kind (ObservedIngest, ...) stored.
func (m *Metrics) Observed(kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.observed.WithLabelValues(kind).Add(float64(n))
}

func (m *Metrics) feedRun(name, status string) {
	if m == nil || status == "" {
		return
	}
	m.feedRuns.WithLabelValues(name, status).Inc()
}

type metricsMiddleware struct {
	river.MiddlewareDefaults
	m *Metrics
}

func (m *Metrics) middleware() rivertype.Middleware { return &metricsMiddleware{m: m} }

// Work times the job and counts its outcome.
func (mw *metricsMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	start := time.Now()
	err := doInner(ctx)
	if mw.m != nil {
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		mw.m.worked.WithLabelValues(job.Kind, outcome).Inc()
		mw.m.duration.WithLabelValues(job.Kind).Observe(time.Since(start).Seconds())
	}
	return err
}

var (
	jobsDesc   = prometheus.NewDesc("muninn_jobs", "Jobs in the queue by kind and state (all processes).", []string{"kind", "state"}, nil)
	jobsUpDesc = prometheus.NewDesc("muninn_jobs_scrape_ok", "1 when muninn_jobs could be read from the database at this scrape, else 0.", nil, nil)
)

// jobsCollector reads counts from the queue table when scraped.
type jobsCollector struct{ st *store.Store }

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- jobsUpDesc
}

// Collect reads the queue, briefly: a database that stalls costs the scrape
// this collector's numbers (and says so), not every metric.
func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sum, err := c.st.JobSummary(ctx, 0)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(jobsUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(jobsUpDesc, prometheus.GaugeValue, 1)
	for _, k := range sum.Counts {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(k.Count), k.Kind, k.State)
	}
}
