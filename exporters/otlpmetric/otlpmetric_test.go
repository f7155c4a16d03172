package otlpmetric

import (
	"context"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The endpoint and protocol variables (internal/otlpenv reads them).
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envMetricsProtocol = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{envEndpoint: "http://127.0.0.1:4317"}, true},
		{map[string]string{envMetricsEndpoint: "http://127.0.0.1:4317/v1/metrics"}, true},
		{map[string]string{envEndpoint: "http://127.0.0.1:4317", envMetricsExporter: "none"}, false},
		{map[string]string{envEndpoint: "  "}, false},
	} {
		for _, k := range []string{envEndpoint, envMetricsEndpoint, envMetricsExporter} {
			t.Setenv(k, tc.env[k])
		}
		if got := Enabled(); got != tc.want {
			t.Errorf("Enabled() with %v = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		general, metrics string
		want, errName    string
	}{
		{"", "", ProtocolGRPC, ""},
		{"http/protobuf", "", ProtocolHTTPProtobuf, ""},
		{"http/protobuf", "grpc", ProtocolGRPC, ""},
		{"", "http/json", "", envMetricsProtocol},
		{"carrier-pigeon", "", "", envProtocol},
	} {
		t.Setenv(envProtocol, tc.general)
		t.Setenv(envMetricsProtocol, tc.metrics)
		got, err := Protocol()
		if tc.errName != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errName) {
				t.Errorf("Protocol() with %q/%q: error %v, want one naming %s", tc.general, tc.metrics, err, tc.errName)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Protocol() with %q/%q = %q, %v; want %q", tc.general, tc.metrics, got, err, tc.want)
		}
	}
}

func TestNewAndShutdown(t *testing.T) {
	t.Setenv(envEndpoint, "http://127.0.0.1:1") // nothing listens: exports fail, quietly
	t.Setenv(envProtocol, "")
	t.Setenv(envMetricsProtocol, "")
	reg := prometheus.NewRegistry()
	mp, err := New(context.Background(), Config{ServiceVersion: "test", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	_ = mp.Shutdown(ctx)
	if _, err := New(context.Background(), Config{Registerer: reg}); err == nil {
		t.Error("a second provider registered the same self metric")
	}
}

// TestShutdownBoundedByContext: with a backend that accepts connections
// and never answers, Shutdown returns when its context is done, even while
// a periodic export of the workload metrics is in flight.
func TestShutdownBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	t.Setenv(envEndpoint, "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv(envInterval, "10")
	t.Setenv(envTimeout, "60000")
	pushed := make(chan struct{}, 1)
	workloads := func(bool) []*metricdata.ResourceMetrics {
		select {
		case pushed <- struct{}{}:
		default:
		}
		return []*metricdata.ResourceMetrics{{Resource: resource.Empty()}}
	}
	m, err := New(context.Background(), Config{Registerer: prometheus.NewRegistry(), Workloads: workloads})
	if err != nil {
		t.Fatal(err)
	}
	<-pushed // an export is in flight (or about to be)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = m.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 300 ms context", d)
	}
}
