package metrics

import (
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/periscope-apm/periscope/span"
)

// ResourceMetrics returns the request duration histograms for OTLP, one
// ResourceMetrics per workload, whose identity is the resource (the same
// attributes that are labels on Prometheus). With delta, each point holds
// what was recorded since the previous delta call, and series that
// recorded nothing since are left out; otherwise points are cumulative
// since the series started.
func (h *HTTP) ResourceMetrics(scope instrumentation.Scope, delta bool) []*metricdata.ResourceMetrics {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweep(now)
	temporality := metricdata.CumulativeTemporality
	if delta {
		temporality = metricdata.DeltaTemporality
	}
	out := make([]*metricdata.ResourceMetrics, 0, len(h.byKey))
	for _, w := range h.byKey {
		var hists [nFamilies][2]metricdata.Histogram[float64]
		for k, x := range w.series {
			p, ok := x.point(k, now, delta)
			if !ok {
				continue
			}
			i := 0
			if k.kind == span.Client {
				i = 1
			}
			hists[k.family][i].DataPoints = append(hists[k.family][i].DataPoints, p)
		}
		var ms []metricdata.Metrics
		for f := range hists {
			for i := range hists[f] {
				if len(hists[f][i].DataPoints) == 0 {
					continue
				}
				hists[f][i].Temporality = temporality
				d := &histograms[f][i]
				ms = append(ms, metricdata.Metrics{Name: d.name, Description: d.description, Unit: DurationUnit, Data: hists[f][i]})
			}
		}
		if len(ms) == 0 {
			continue
		}
		out = append(out, &metricdata.ResourceMetrics{
			Resource:     w.resource(),
			ScopeMetrics: []metricdata.ScopeMetrics{{Scope: scope, Metrics: ms}},
		})
	}
	return out
}

// point is the data point of one series; false when a delta point would
// be empty.
func (x *durations) point(k httpKey, now time.Time, delta bool) (metricdata.HistogramDataPoint[float64], bool) {
	p := metricdata.HistogramDataPoint[float64]{
		Attributes:   k.pointAttributes(),
		StartTime:    x.start,
		Time:         now,
		Count:        x.count,
		Sum:          x.sum,
		Bounds:       x.bounds,
		BucketCounts: slices.Clone(x.counts),
		Min:          metricdata.NewExtrema(x.min),
		Max:          metricdata.NewExtrema(x.max),
	}
	if !delta {
		return p, true
	}
	prev := x.exported
	if prev == nil {
		prev = &durations{start: x.start, bounds: x.bounds, counts: make([]uint64, len(x.counts))}
	}
	if x.count == prev.count {
		return p, false
	}
	p.StartTime = prev.start
	p.Count -= prev.count
	p.Sum -= prev.sum
	for i := range p.BucketCounts {
		p.BucketCounts[i] -= prev.counts[i]
	}
	// The extremes of the interval alone are not kept.
	p.Min, p.Max = metricdata.Extrema[float64]{}, metricdata.Extrema[float64]{}
	x.exported = &durations{start: now, counts: slices.Clone(x.counts), count: x.count, sum: x.sum}
	return p, true
}

// resource is the OTLP resource of a workload.
func (w *workload) resource() *resource.Resource {
	kv := make([]attribute.KeyValue, 0, len(resourceKeys)+len(w.host))
	for i, k := range resourceKeys {
		if w.values[i] != "" {
			kv = append(kv, attribute.String(k, w.values[i]))
		}
	}
	kv = append(kv, w.host...)
	return resource.NewSchemaless(kv...)
}
