package otlpreceiver

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func integer(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

var res = &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "svc")}}

func traceRequest() *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: res,
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "scope", Version: "1"},
			Spans: []*tracepb.Span{{
				TraceId:           bytes.Repeat([]byte{0xab}, 16),
				SpanId:            bytes.Repeat([]byte{0xcd}, 8),
				ParentSpanId:      bytes.Repeat([]byte{0xef}, 8),
				Flags:             0x301,
				Name:              "GET /",
				Kind:              tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: 1e9,
				EndTimeUnixNano:   2e9,
				Attributes:        []*commonpb.KeyValue{integer("http.response.status_code", 503)},
				Events:            []*tracepb.Span_Event{{Name: "retransmit", TimeUnixNano: 15e8}},
				Status:            &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"},
			}},
		}},
	}}}
}

func TestGRPCTraces(t *testing.T) {
	r := Start(t)
	conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)

	r.Fail(codes.Unavailable)
	if _, err := client.Export(t.Context(), traceRequest()); status.Code(err) != codes.Unavailable {
		t.Fatalf("failing receiver answered %v", err)
	}
	r.Fail(codes.OK)
	if _, err := client.Export(t.Context(), traceRequest()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	spans, err := r.WaitForSpans(ctx, 1, func(s Span) bool { return s.ServiceName() == "svc" })
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 {
		t.Fatalf("got %d spans", len(spans))
	}
	s := spans[0]
	if s.TraceID != "abababababababababababababababab" || s.SpanID != "cdcdcdcdcdcdcdcd" || s.ParentSpanID != "efefefefefefefef" ||
		!s.RemoteParent || !s.ParentKnown || s.Kind != trace.SpanKindServer || s.Name != "GET /" ||
		s.Status != "ERROR" || s.StatusMessage != "boom" || s.Scope != "scope" || s.ScopeVersion != "1" ||
		s.Attributes["http.response.status_code"] != int64(503) || len(s.Events) != 1 ||
		!s.Events[0].Time.Equal(time.Unix(1, 5e8)) || !s.Start.Equal(time.Unix(1, 0)) || !s.End.Equal(time.Unix(2, 0)) {
		t.Errorf("flattened span: %+v", s)
	}
	if traces, _ := r.Requests(); traces != 2 {
		t.Errorf("Requests = %d, want 2 (the failed one counts)", traces)
	}

	short, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	if got, err := r.WaitForSpans(short, 2, nil); err == nil || len(got) != 1 {
		t.Errorf("WaitForSpans(2) = %d spans, %v; want 1 and a timeout", len(got), err)
	}
	r.Reset()
	if len(r.Spans()) != 0 {
		t.Error("Reset kept spans")
	}
}

func TestHTTPJSONTraces(t *testing.T) {
	r := Start(t)
	body, err := protojson.Marshal(traceRequest())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(r.HTTPEndpoint()+"/v1/traces", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(r.Spans()) != 1 {
		t.Errorf("HTTP JSON export: status %d, %d spans", resp.StatusCode, len(r.Spans()))
	}
	r.Fail(codes.Unavailable)
	resp, err = http.Post(r.HTTPEndpoint()+"/v1/traces", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || len(r.Spans()) != 1 {
		t.Errorf("failing HTTP export: status %d, %d spans", resp.StatusCode, len(r.Spans()))
	}
}

func TestMetrics(t *testing.T) {
	r := Start(t)
	conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	attrs := []*commonpb.KeyValue{str("http.route", "/users/{id}")}
	req := &colmetricpb.ExportMetricsServiceRequest{ResourceMetrics: []*metricpb.ResourceMetrics{{
		Resource: res,
		ScopeMetrics: []*metricpb.ScopeMetrics{{
			Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Metrics: []*metricpb.Metric{
				{Name: "http.server.request.duration", Unit: "s", Data: &metricpb.Metric_Histogram{Histogram: &metricpb.Histogram{
					AggregationTemporality: metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
					DataPoints: []*metricpb.HistogramDataPoint{{
						Attributes: attrs, TimeUnixNano: 3e9, Count: 3, Sum: new(0.6),
						ExplicitBounds: []float64{0.1, 0.5}, BucketCounts: []uint64{1, 1, 1},
					}},
				}}},
				{Name: "tcp.retransmits", Data: &metricpb.Metric_Sum{Sum: &metricpb.Sum{
					IsMonotonic:            true,
					AggregationTemporality: metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
					DataPoints: []*metricpb.NumberDataPoint{{
						Attributes: attrs, Value: &metricpb.NumberDataPoint_AsInt{AsInt: 7},
					}},
				}}},
				{Name: "queue", Data: &metricpb.Metric_Gauge{Gauge: &metricpb.Gauge{
					DataPoints: []*metricpb.NumberDataPoint{{Value: &metricpb.NumberDataPoint_AsDouble{AsDouble: 2.5}}},
				}}},
			},
		}},
	}}}
	if _, err := colmetricpb.NewMetricsServiceClient(conn).Export(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	ms := r.Metrics()
	if len(ms) != 3 {
		t.Fatalf("got %d data points, want 3", len(ms))
	}
	h, s, g := ms[0], ms[1], ms[2]
	if h.Type != "histogram" || h.Name != "http.server.request.duration" || h.Unit != "s" || h.Temporality != "cumulative" ||
		h.Count != 3 || h.Sum != 0.6 || len(h.Bounds) != 2 || len(h.BucketCounts) != 3 ||
		h.Attributes["http.route"] != "/users/{id}" || h.Resource["service.name"] != "svc" || !h.Time.Equal(time.Unix(3, 0)) {
		t.Errorf("histogram point: %+v", h)
	}
	if s.Type != "sum" || !s.Monotonic || s.Temporality != "delta" || s.Value != 7 {
		t.Errorf("sum point: %+v", s)
	}
	if g.Type != "gauge" || g.Value != 2.5 {
		t.Errorf("gauge point: %+v", g)
	}
	if _, metrics := r.Requests(); metrics != 1 {
		t.Errorf("metric requests = %d", metrics)
	}
}
