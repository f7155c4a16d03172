package otlpmetric

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// workloadSource returns one gauge point under a resource named service.
func workloadSource(service string) func(bool) []*metricdata.ResourceMetrics {
	return func(bool) []*metricdata.ResourceMetrics {
		return []*metricdata.ResourceMetrics{{
			Resource: resource.NewSchemaless(attribute.String("service.name", service)),
			ScopeMetrics: []metricdata.ScopeMetrics{{
				Scope: instrumentation.Scope{Name: "test"},
				Metrics: []metricdata.Metrics{{Name: "g", Data: metricdata.Gauge[int64]{
					DataPoints: []metricdata.DataPoint[int64]{{Time: time.Now(), Value: 1}},
				}}},
			}},
		}}
	}
}

// TestWorkloadSources: a source given to New and one added later are both
// exported; the agent's own resource carries the host attributes.
func TestWorkloadSources(t *testing.T) {
	recv := otlpreceiver.Start(t)
	t.Setenv(envEndpoint, recv.Endpoint())
	t.Setenv(envProtocol, "")
	t.Setenv(envMetricsProtocol, "")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv(envInterval, "100")
	m, err := New(context.Background(), Config{
		ServiceVersion: "test",
		Host:           []attribute.KeyValue{attribute.String("host.arch", "amd64"), attribute.String("os.type", "linux")},
		Registerer:     prometheus.NewRegistry(),
		Workloads:      workloadSource("first"),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.AddWorkloads(workloadSource("later"))
	c, err := m.Meter("test").Int64Counter("own")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"first", "later", "periscope"} {
		got, err := recv.WaitForMetrics(ctx, 1, func(x otlpreceiver.Metric) bool { return x.Resource["service.name"] == svc })
		if err != nil {
			t.Fatalf("no metric with service.name %s: %v", svc, err)
		}
		if svc == "periscope" && (got[0].Resource["host.arch"] != "amd64" || got[0].Resource["os.type"] != "linux") {
			t.Errorf("the agent's resource lacks the host attributes: %v", got[0].Resource)
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := m.Shutdown(sctx); err != nil {
		t.Error(err)
	}
}
