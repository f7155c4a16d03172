package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/span"
)

func rpcSpan(p *span.Process, kind span.Kind, method, status string, d time.Duration) *span.Span {
	start := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	attrs := []attribute.KeyValue{
		attribute.String("rpc.system.name", "grpc"),
		attribute.String("rpc.method", method),
		attribute.String("rpc.response.status_code", status),
		attribute.String("server.address", "10.0.0.1"),
		attribute.Int("server.port", 50051),
		attribute.Int("periscope.rpc.request.message_count", 1),
	}
	if kind == span.Client && status != "OK" {
		attrs = append(attrs, attribute.String("error.type", status))
	}
	return &span.Span{Kind: kind, Name: method, Start: start, End: start.Add(d), Process: p, Attributes: attrs}
}

// TestRPCDurations: gRPC spans record into rpc.server.call.duration and
// rpc.client.call.duration, labelled by the RPC attributes only.
func TestRPCDurations(t *testing.T) {
	h, _, reg := newTestHTTP(t, 100)
	h.Export(rpcSpan(nginx, span.Server, "pkg.Svc/Get", "OK", 3*time.Millisecond))
	h.Export(rpcSpan(nginx, span.Server, "pkg.Svc/Get", "NOT_FOUND", 3*time.Millisecond))
	h.Export(rpcSpan(curl, span.Client, "pkg.Svc/Get", "NOT_FOUND", 30*time.Millisecond))

	if n := testutil.CollectAndCount(h, RPCServerDurationPromName); n != 2 {
		t.Errorf("%d server series, want 2 (OK, NOT_FOUND)", n)
	}
	if n := testutil.CollectAndCount(h, RPCClientDurationPromName); n != 1 {
		t.Errorf("%d client series, want 1", n)
	}
	if n := testutil.CollectAndCount(h, ServerDurationPromName, ClientDurationPromName); n != 0 {
		t.Errorf("%d HTTP series from RPC spans", n)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range promFamily(t, fams, RPCServerDurationPromName).Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["rpc_system_name"] != "grpc" || labels["rpc_method"] != "pkg.Svc/Get" || labels["server_address"] != "" ||
			labels["periscope_rpc_request_message_count"] != "" || m.Histogram.GetSampleCount() != 1 {
			t.Errorf("server series %v count %d", labels, m.Histogram.GetSampleCount())
		}
	}

	rms := h.ResourceMetrics(instrumentation.Scope{Name: "test"}, false)
	names := map[string]bool{}
	for _, rm := range rms {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			names[m.Name] = true
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if v, _ := p.Attributes.Value("rpc.system.name"); v.AsString() != "grpc" {
					t.Errorf("%s point without rpc.system.name: %v", m.Name, p.Attributes.ToSlice())
				}
			}
		}
	}
	if !names[RPCServerDurationName] || !names[RPCClientDurationName] || len(names) != 2 {
		t.Errorf("OTLP metrics %v", names)
	}
}
