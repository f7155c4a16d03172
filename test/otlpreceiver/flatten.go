package otlpreceiver

import (
	"encoding/hex"
	"time"

	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Span is one received span with its resource and scope.
//
// Attribute values are as OTLP carries them: string, bool, int64, float64,
// []byte, []any (arrays) or map[string]any (key-value lists).
type Span struct {
	Resource     map[string]any
	Scope        string
	ScopeVersion string

	TraceID      string // 32 hex digits
	SpanID       string // 16 hex digits
	ParentSpanID string // 16 hex digits, "" for a root span
	// RemoteParent is the OTLP flag saying the parent came from another
	// process; ParentKnown says whether the sender set that flag at all.
	RemoteParent bool
	ParentKnown  bool
	Flags        uint32
	TraceState   string

	Kind          trace.SpanKind // the same numbering as OTLP's
	Name          string
	Start, End    time.Time
	Status        string // "UNSET", "OK" or "ERROR"
	StatusMessage string
	Attributes    map[string]any
	Events        []Event
	Links         int
}

// ServiceName returns the service.name resource attribute.
func (s Span) ServiceName() string {
	name, _ := s.Resource["service.name"].(string)
	return name
}

// Event is a received span event.
type Event struct {
	Name       string
	Time       time.Time
	Attributes map[string]any
}

// Metric is one received metric data point with its metric, resource and
// scope. Which value fields are set depends on Type.
type Metric struct {
	Resource    map[string]any
	Scope       string
	Name        string
	Description string
	Unit        string
	// Type is "gauge", "sum", "histogram", "exponential_histogram" or
	// "summary".
	Type string
	// Temporality is "cumulative" or "delta" for sums and histograms.
	Temporality string
	Monotonic   bool // sums only
	Attributes  map[string]any
	Start, Time time.Time

	// Value is a gauge's or sum's value (integers converted).
	Value float64
	// Count and Sum are set for histograms, exponential histograms and
	// summaries; Min and Max when the sender set them.
	Count    uint64
	Sum      float64
	Min, Max *float64
	// Bounds and BucketCounts are an explicit histogram's buckets:
	// len(BucketCounts) == len(Bounds)+1.
	Bounds       []float64
	BucketCounts []uint64
}

func flattenSpans(rss []*tracepb.ResourceSpans) []Span {
	var out []Span
	for _, rs := range rss {
		res := resourceAttrs(rs.GetResource())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				f := Span{
					Resource:      res,
					Scope:         ss.GetScope().GetName(),
					ScopeVersion:  ss.GetScope().GetVersion(),
					TraceID:       hex.EncodeToString(s.GetTraceId()),
					SpanID:        hex.EncodeToString(s.GetSpanId()),
					ParentSpanID:  hex.EncodeToString(s.GetParentSpanId()),
					Flags:         s.GetFlags(),
					TraceState:    s.GetTraceState(),
					Kind:          trace.SpanKind(s.GetKind()),
					Name:          s.GetName(),
					Start:         unixNano(s.GetStartTimeUnixNano()),
					End:           unixNano(s.GetEndTimeUnixNano()),
					Status:        statusName(s.GetStatus().GetCode()),
					StatusMessage: s.GetStatus().GetMessage(),
					Attributes:    attrs(s.GetAttributes()),
					Links:         len(s.GetLinks()),
				}
				f.ParentKnown = f.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) != 0
				f.RemoteParent = f.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK) != 0
				for _, ev := range s.GetEvents() {
					f.Events = append(f.Events, Event{
						Name:       ev.GetName(),
						Time:       unixNano(ev.GetTimeUnixNano()),
						Attributes: attrs(ev.GetAttributes()),
					})
				}
				out = append(out, f)
			}
		}
	}
	return out
}

func statusName(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "OK"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "ERROR"
	}
	return "UNSET"
}

func flattenMetrics(rms []*metricpb.ResourceMetrics) []Metric {
	var out []Metric
	for _, rm := range rms {
		res := resourceAttrs(rm.GetResource())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				base := Metric{
					Resource:    res,
					Scope:       sm.GetScope().GetName(),
					Name:        m.GetName(),
					Description: m.GetDescription(),
					Unit:        m.GetUnit(),
				}
				out = appendPoints(out, base, m)
			}
		}
	}
	return out
}

func appendPoints(out []Metric, base Metric, m *metricpb.Metric) []Metric {
	switch d := m.GetData().(type) {
	case *metricpb.Metric_Gauge:
		base.Type = "gauge"
		for _, p := range d.Gauge.GetDataPoints() {
			out = append(out, numberPoint(base, p))
		}
	case *metricpb.Metric_Sum:
		base.Type = "sum"
		base.Temporality = temporality(d.Sum.GetAggregationTemporality())
		base.Monotonic = d.Sum.GetIsMonotonic()
		for _, p := range d.Sum.GetDataPoints() {
			out = append(out, numberPoint(base, p))
		}
	case *metricpb.Metric_Histogram:
		base.Type = "histogram"
		base.Temporality = temporality(d.Histogram.GetAggregationTemporality())
		for _, p := range d.Histogram.GetDataPoints() {
			f := base
			f.Attributes = attrs(p.GetAttributes())
			f.Start, f.Time = unixNano(p.GetStartTimeUnixNano()), unixNano(p.GetTimeUnixNano())
			f.Count, f.Sum = p.GetCount(), p.GetSum()
			if p.Min != nil {
				f.Min = new(p.GetMin())
			}
			if p.Max != nil {
				f.Max = new(p.GetMax())
			}
			f.Bounds = p.GetExplicitBounds()
			f.BucketCounts = p.GetBucketCounts()
			out = append(out, f)
		}
	case *metricpb.Metric_ExponentialHistogram:
		base.Type = "exponential_histogram"
		base.Temporality = temporality(d.ExponentialHistogram.GetAggregationTemporality())
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			f := base
			f.Attributes = attrs(p.GetAttributes())
			f.Start, f.Time = unixNano(p.GetStartTimeUnixNano()), unixNano(p.GetTimeUnixNano())
			f.Count, f.Sum = p.GetCount(), p.GetSum()
			if p.Min != nil {
				f.Min = new(p.GetMin())
			}
			if p.Max != nil {
				f.Max = new(p.GetMax())
			}
			out = append(out, f)
		}
	case *metricpb.Metric_Summary:
		base.Type = "summary"
		for _, p := range d.Summary.GetDataPoints() {
			f := base
			f.Attributes = attrs(p.GetAttributes())
			f.Start, f.Time = unixNano(p.GetStartTimeUnixNano()), unixNano(p.GetTimeUnixNano())
			f.Count, f.Sum = p.GetCount(), p.GetSum()
			out = append(out, f)
		}
	}
	return out
}

func numberPoint(base Metric, p *metricpb.NumberDataPoint) Metric {
	f := base
	f.Attributes = attrs(p.GetAttributes())
	f.Start, f.Time = unixNano(p.GetStartTimeUnixNano()), unixNano(p.GetTimeUnixNano())
	switch v := p.GetValue().(type) {
	case *metricpb.NumberDataPoint_AsDouble:
		f.Value = v.AsDouble
	case *metricpb.NumberDataPoint_AsInt:
		f.Value = float64(v.AsInt)
	}
	return f
}

func temporality(t metricpb.AggregationTemporality) string {
	switch t {
	case metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE:
		return "cumulative"
	case metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA:
		return "delta"
	}
	return ""
}

func resourceAttrs(r *resourcepb.Resource) map[string]any {
	return attrs(r.GetAttributes())
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

func anyValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		vals := x.ArrayValue.GetValues()
		out := make([]any, len(vals))
		for i, e := range vals {
			out[i] = anyValue(e)
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return attrs(x.KvlistValue.GetValues())
	}
	return nil
}

func unixNano(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns))
}
