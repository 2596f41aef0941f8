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
	seqLost      *prometheus.CounterVec
	seqLate      *prometheus.CounterVec
	seqResets    *prometheus.CounterVec
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
		seqLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_sequence_lost_total",
			Help: "Loss upstream of the collector seen as gaps in the exporters' sequence numbers, by exporter and version: flow records for netflow_v5 and ipfix, datagrams for netflow_v9 and sflow_v5."},
			[]string{"exporter", "version"}),
		seqLate: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_sequence_late_total",
			Help: "Datagrams whose sequence number was behind the stream's (reordered or duplicated), by exporter and version."},
			[]string{"exporter", "version"}),
		seqResets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "muninn_flow_sequence_resets_total",
			Help: "Sequence streams that restarted (exporter restart, or a jump too far to be loss), by exporter and version; no loss is counted for them."},
			[]string{"exporter", "version"}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "muninn_flow_flush_seconds",
			Help: "Duration of one write of aggregated flows.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{m.datagrams, m.dropped, m.records, m.flushes, m.events, m.lost, m.seqLost, m.seqLate, m.seqResets, m.flushSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("flow: metrics: %w", err)
		}
	}
	return m, nil
}

// Metric returns one of the collector's counters for tests and the
// benchmark: name is datagrams (labels protocol, result), dropped
// (protocol), records (result), flushes (result), events (kind),
// sequence_lost, sequence_late or sequence_resets (exporter, version); any
// other name is muninn_flow_records_lost_total.
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
	case "sequence_lost":
		return c.m.seqLost.WithLabelValues(labels...)
	case "sequence_late":
		return c.m.seqLate.WithLabelValues(labels...)
	case "sequence_resets":
		return c.m.seqResets.WithLabelValues(labels...)
	}
	return c.m.lost
}
