package otlpenv

import (
	"slices"
	"strings"
	"testing"
)

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		signal           Signal
		general, special string
		want, errName    string
	}{
		{Traces, "", "", GRPC, ""},
		{Traces, "http/protobuf", "", HTTPProtobuf, ""},
		{Traces, "http/protobuf", "grpc", GRPC, ""},
		{Metrics, "grpc", "http/protobuf", HTTPProtobuf, ""},
		{Metrics, " grpc ", "", GRPC, ""},
		{Traces, "grpc", "http/json", "", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{Metrics, "GRPC", "", "", "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.general)
		t.Setenv("OTEL_EXPORTER_OTLP_"+string(tc.signal)+"_PROTOCOL", tc.special)
		got, err := Protocol(tc.signal)
		if tc.errName != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errName+"=") {
				t.Errorf("%s %q/%q: error %v, want one naming %s", tc.signal, tc.general, tc.special, err, tc.errName)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q/%q = %q, %v; want %q", tc.signal, tc.general, tc.special, got, err, tc.want)
		}
	}
}

func TestEndpointSet(t *testing.T) {
	for _, tc := range []struct {
		signal                   Signal
		general, traces, metrics string
		want                     bool
	}{
		{Traces, "", "", "", false},
		{Traces, "http://c:4317", "", "", true},
		{Metrics, "", "", "http://c:4318/v1/metrics", true},
		{Metrics, "  ", "", "", false},
		{Traces, "", "", "http://c:4318/v1/metrics", false}, // the other signal's
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.general)
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tc.traces)
		t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", tc.metrics)
		if got := EndpointSet(tc.signal); got != tc.want {
			t.Errorf("%s with %q/%q/%q: %v, want %v", tc.signal, tc.general, tc.traces, tc.metrics, got, tc.want)
		}
	}
}

func TestExportPorts(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.example:14318/v1/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://metrics:9999")
	got := ExportPorts()
	want := []uint16{4317, 4318, 14318, 9999}
	if !slices.Equal(got, want) {
		t.Errorf("ExportPorts() = %v, want %v", got, want)
	}
}
