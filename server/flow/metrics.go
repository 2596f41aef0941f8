package flow

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	datagrams    *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	records      *prometheus.CounterVec
	flushes      *prometheus.CounterVec
	events       *prometheus.CounterVec
	lost         prometheus.Counter
	flushSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_datagrams_total",
			Help: "Flow datagrams received, by protocol (netflow, sflow) and result: decoded, error (malformed, truncated, or a v9/IPFIX data set whose template has not arrived), unknown_exporter."},
			[]string{"protocol", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_datagrams_dropped_total",
			Help: "Flow datagrams dropped unread because the decode queue was full (loss), by protocol."}, []string{"protocol"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_records_total",
			Help: "Decoded flow records of registered exporters, by result: aggregated (inside host and outside address), internal (both inside), transit (neither)."},
			[]string{"result"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_flushes_total",
			Help: "Writes of aggregated flows to the database, by result (ok, error)."}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_events_total",
			Help: "Events the flows caused, by kind."}, []string{"kind"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "muninn_flow_records_lost_total",
			Help: "Aggregated flow records lost because their write to the database failed."}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "muninn_flow_flush_seconds",
			Help: "Duration of one write of aggregated flows.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{m.datagrams, m.dropped, m.records, m.flushes, m.events, m.lost, m.flushSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("flow: metrics: %w", err)
		}
	}
	return m, nil
}

// Metric returns one of the collector's counters for tests and the
// benchmark: name is datagrams (labels protocol, result), dropped
// (protocol), records (result), flushes (result) or events (kind).
func (c *Collector) Metric(name string, labels ...string) prometheus.Collector {
	switch name {
	case "datagrams":
		return c.m.datagrams.WithLabelValues(labels...)
	case "dropped":
		return c.m.dropped.WithLabelValues(labels...)
	case "records":
		return c.m.records.WithLabelValues(labels...)
	case "flushes":
		return c.m.flushes.WithLabelValues(labels...)
	case "events":
		return c.m.events.WithLabelValues(labels...)
	}
	return c.m.lost
}
