package exporters

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a span is dropped, the values of the reason label of
// periscope_spans_dropped_total.
const (
	ReasonQueueFull    = "queue_full"
	ReasonExportFailed = "export_failed"
	ReasonSampledOut   = "sampled_out"
)

// SpanMetrics are one exporter's self metrics. Every exporter registers the
// same metric names with its own exporter label, so several exporters can
// share one registry.
type SpanMetrics struct {
	// Exported counts spans the backend (or writer) accepted.
	Exported prometheus.Counter
	// QueueFull counts spans dropped because the exporter's queue was full.
	QueueFull prometheus.Counter
	// ExportFailed counts spans lost in failed exports.
	ExportFailed prometheus.Counter
	// SampledOut counts spans dropped by the sampler.
	SampledOut prometheus.Counter
	// Failures counts failed export operations (batches or writes).
	Failures prometheus.Counter
}

// Gauges are read at scrape time. QueueLen is required; a nil InFlight or
// QueueBytes registers no gauge.
type Gauges struct {
	QueueLen   func() int // spans in the queue, not yet sent
	InFlight   func() int // spans in export requests sent and not yet answered
	QueueBytes func() int // encoded bytes of the spans in the queue
}

// NewSpanMetrics creates the self metrics of the exporter called name and
// registers them with reg, along with the gauges g. A nil reg registers
// nothing.
//
// Metrics:
//
//	periscope_spans_exported_total{exporter}
//	periscope_spans_dropped_total{exporter,reason="queue_full|export_failed|sampled_out"}
//	periscope_export_failures_total{exporter}
//	periscope_exporter_queue_length{exporter}
//	periscope_exporter_queue_bytes{exporter}
//	periscope_exporter_spans_in_flight{exporter}
//
// A span given to an exporter is, at any time, exported, dropped (by
// reason), in the queue, or in flight: in an export request sent and not
// yet answered (OpenTelemetry's otel.sdk.exporter.span.inflight).
func NewSpanMetrics(reg prometheus.Registerer, name string, g Gauges) (*SpanMetrics, error) {
	labels := prometheus.Labels{"exporter": name}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "periscope_spans_dropped_total",
		Help:        "Spans dropped by an exporter, by reason.",
		ConstLabels: labels,
	}, []string{"reason"})
	exported := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "periscope_spans_exported_total",
		Help:        "Spans successfully exported.",
		ConstLabels: labels,
	})
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "periscope_export_failures_total",
		Help:        "Failed export operations (batches or writes).",
		ConstLabels: labels,
	})
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "periscope_exporter_queue_length",
		Help:        "Spans waiting in an exporter's queue, not yet sent.",
		ConstLabels: labels,
	}, func() float64 { return float64(g.QueueLen()) })

	m := &SpanMetrics{
		Exported:     exported,
		QueueFull:    dropped.WithLabelValues(ReasonQueueFull),
		ExportFailed: dropped.WithLabelValues(ReasonExportFailed),
		SampledOut:   dropped.WithLabelValues(ReasonSampledOut),
		Failures:     failures,
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{exported, dropped, failures, queue}
	for _, o := range []struct {
		read       func() int
		name, help string
	}{
		{g.QueueBytes, "periscope_exporter_queue_bytes", "Encoded bytes of the spans waiting in an exporter's queue."},
		{g.InFlight, "periscope_exporter_spans_in_flight", "Spans in export requests sent and not yet answered."},
	} {
		if o.read != nil {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: o.name, Help: o.help, ConstLabels: labels},
				func() float64 { return float64(o.read()) }))
		}
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register metrics of exporter %q: %w", name, err)
		}
	}
	return m, nil
}
