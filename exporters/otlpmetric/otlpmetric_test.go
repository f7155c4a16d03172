package otlpmetric

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
