package metrics

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/periscope-apm/periscope/span"
)

// Units of the resource metrics (UCUM, as the conventions give them).
const (
	unitSeconds       = "s"
	unitBytes         = "By"
	unitThreads       = "{thread}"
	unitFDs           = "{file_descriptor}"
	unitContextSwitch = "{context_switch}"
)

var (
	pointUser        = attribute.NewSet(attribute.String(attrCPUMode, "user"))
	pointSystem      = attribute.NewSet(attribute.String(attrCPUMode, "system"))
	pointVoluntary   = attribute.NewSet(attribute.String(attrContextSwitchType, "voluntary"))
	pointInvoluntary = attribute.NewSet(attribute.String(attrContextSwitchType, "involuntary"))
)

// ResourceMetrics returns the resource metrics for OTLP, one
// ResourceMetrics per process, whose resource is the process's (as on its
// spans: process.pid, process.executable.*, service.name, container.id,
// k8s.*, host.*). An exited process keeps its counters (CPU time, context
// switches) until the expiry, and has no gauges. With delta, counters hold
// the change since the previous delta call (processes without any are left
// out); the UpDownCounters are cumulative either way, as the SDK's delta
// temporality preference has them.
func (m *ProcessMetrics) ResourceMetrics(scope instrumentation.Scope, delta bool) []*metricdata.ResourceMetrics {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	out := make([]*metricdata.ResourceMetrics, 0, len(m.live)+len(m.exited))
	add := func(ps *procSeries) {
		ms := ps.metrics(delta, now)
		if len(ms) == 0 {
			return
		}
		out = append(out, &metricdata.ResourceMetrics{
			Resource:     processResource(ps.proc),
			ScopeMetrics: []metricdata.ScopeMetrics{{Scope: scope, Metrics: ms}},
		})
	}
	for _, ps := range m.live {
		add(ps)
	}
	for _, ps := range m.exited {
		add(ps)
	}
	return out
}

// metrics returns a process's metrics; nil when a delta export has
// nothing new.
func (ps *procSeries) metrics(delta bool, now time.Time) []metricdata.Metrics {
	c := ps.usage.counters()
	start := ps.usage.Started
	if start.IsZero() || start.After(ps.first) {
		start = ps.first
	}
	temporality := metricdata.CumulativeTemporality
	if delta {
		if ps.anySent && c == ps.sent {
			return nil
		}
		c.user -= ps.sent.user
		c.system -= ps.sent.system
		c.voluntary -= ps.sent.voluntary
		c.involuntary -= ps.sent.involuntary
		if ps.anySent {
			start = ps.sentAt
		}
		ps.sent, ps.sentAt, ps.anySent = ps.usage.counters(), ps.last, true
		temporality = metricdata.DeltaTemporality
	}
	at := ps.last
	ms := []metricdata.Metrics{
		{Name: CPUTimeName, Description: "Total CPU seconds broken down by different states.", Unit: unitSeconds,
			Data: metricdata.Sum[float64]{Temporality: temporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[float64]{
				{Attributes: pointUser, StartTime: start, Time: at, Value: c.user},
				{Attributes: pointSystem, StartTime: start, Time: at, Value: c.system},
			}}},
		{Name: ContextSwitchesName, Description: "Number of times the process has been context switched.", Unit: unitContextSwitch,
			Data: metricdata.Sum[int64]{Temporality: temporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
				{Attributes: pointVoluntary, StartTime: start, Time: at, Value: c.voluntary},
				{Attributes: pointInvoluntary, StartTime: start, Time: at, Value: c.involuntary},
			}}},
	}
	if !ps.exitAt.IsZero() {
		return ms
	}
	gauge := func(name, desc, unit string, v int64) metricdata.Metrics {
		return metricdata.Metrics{Name: name, Description: desc, Unit: unit, Data: metricdata.Sum[int64]{
			Temporality: metricdata.CumulativeTemporality,
			DataPoints:  []metricdata.DataPoint[int64]{{Attributes: *attribute.EmptySet(), StartTime: ps.first, Time: at, Value: v}},
		}}
	}
	return append(ms,
		gauge(MemoryUsageName, "The amount of physical memory in use.", unitBytes, int64(ps.usage.RSS)),
		gauge(MemoryVirtualName, "The amount of committed virtual memory.", unitBytes, int64(ps.usage.Virtual)),
		gauge(ThreadCountName, "Process threads count.", unitThreads, ps.usage.Threads),
		gauge(FDCountName, "Number of unix file descriptors in use by the process.", unitFDs, ps.usage.FDs),
	)
}

// processResource is the resource of a process, as its spans have it:
// process.pid when its attributes lack it, its attributes, service.name.
func processResource(p *span.Process) *resource.Resource {
	if p == nil {
		return resource.NewSchemaless(attribute.String("service.name", "unknown_service"))
	}
	kv := make([]attribute.KeyValue, 0, len(p.Attributes)+2)
	hasPID := false
	for _, a := range p.Attributes {
		hasPID = hasPID || a.Key == "process.pid"
	}
	if !hasPID {
		kv = append(kv, attribute.Int64("process.pid", int64(p.PID)))
	}
	kv = append(kv, p.Attributes...)
	name := p.ServiceName
	if name == "" {
		name = "unknown_service"
	}
	kv = append(kv, attribute.String("service.name", name))
	return resource.NewSchemaless(kv...)
}
