package agent

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/exporters/otlpmetric"
	"github.com/periscope-apm/periscope/metrics"
)

// meterName is the instrumentation scope of the agent's OpenTelemetry
// metrics.
const meterName = "github.com/periscope-apm/periscope"

// newRequestMetrics returns the RED metrics derived from spans, registered
// for /metrics, or nil when they are disabled.
func newRequestMetrics(cfg config.Metrics, reg prometheus.Registerer) (*metrics.HTTP, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	red, err := metrics.NewHTTP(metrics.HTTPConfig{MaxSeriesPerService: cfg.MaxSeriesPerService}, reg)
	if err != nil {
		return nil, err
	}
	if err := reg.Register(red); err != nil {
		return nil, err
	}
	return red, nil
}

// newMeterProvider returns the OTLP metrics pipeline, or nil when no OTLP
// endpoint is configured. red, when not nil, is exported with each
// workload as its resource.
func newMeterProvider(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, red *metrics.HTTP, host []attribute.KeyValue) (*otlpmetric.Metrics, error) {
	if !otlpmetric.Enabled() {
		return nil, nil
	}
	cfg := otlpmetric.Config{ServiceVersion: Version(), Host: host, Logger: log, Registerer: reg}
	if red != nil {
		scope := instrumentation.Scope{Name: meterName, Version: Version()}
		cfg.Workloads = func(delta bool) []*metricdata.ResourceMetrics { return red.ResourceMetrics(scope, delta) }
	}
	mp, err := otlpmetric.New(ctx, cfg)
	if err != nil {
		return nil, &UsageError{err}
	}
	return mp, nil
}
