// Package otlpmetric exports the agent's OpenTelemetry metrics over OTLP.
// Everything about the transport comes from the standard environment
// variables (OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT, _HEADERS, _PROTOCOL,
// _INSECURE, _TIMEOUT, _CERTIFICATE, _COMPRESSION,
// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE) and the export period
// from OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT.
package otlpmetric

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Environment variables read by this package itself.
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envMetricsProtocol = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	envMetricsExporter = "OTEL_METRICS_EXPORTER"
)

// Protocols accepted in OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// failureLogInterval is the shortest time between two logs of failed
// exports.
const failureLogInterval = 30 * time.Second

// Enabled reports whether metrics go to an OTLP endpoint: one is set in
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, and
// OTEL_METRICS_EXPORTER is not "none".
func Enabled() bool {
	if strings.TrimSpace(os.Getenv(envMetricsExporter)) == "none" {
		return false
	}
	return strings.TrimSpace(os.Getenv(envEndpoint)) != "" ||
		strings.TrimSpace(os.Getenv(envMetricsEndpoint)) != ""
}

// Protocol returns the protocol selected by
// OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
// else grpc; any other value than grpc or http/protobuf is an error that
// names the variable.
func Protocol() (string, error) {
	for _, key := range []string{envMetricsProtocol, envProtocol} {
		v := strings.TrimSpace(os.Getenv(key))
		if v == "" {
			continue
		}
		switch v {
		case ProtocolGRPC, ProtocolHTTPProtobuf:
			return v, nil
		}
		return "", fmt.Errorf("%s=%q: unsupported OTLP protocol (want %q or %q)", key, v, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
	return ProtocolGRPC, nil
}

// Config configures New.
type Config struct {
	// ServiceVersion is the agent's version, on the resource.
	ServiceVersion string
	// Logger receives failed exports (at most one line per 30 s). Nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives periscope_export_failures_total{exporter=
	// "otlp_metrics"}. Nil registers nothing.
	Registerer prometheus.Registerer
}

// New returns a meter provider that exports periodically over OTLP. Its
// resource describes the agent (service.name "periscope", host.name,
// OTEL_RESOURCE_ATTRIBUTES); the processes a metric is about are in its
// data points' attributes. Shut it down to send the last values.
func New(ctx context.Context, cfg Config) (*sdkmetric.MeterProvider, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	proto, err := Protocol()
	if err != nil {
		return nil, fmt.Errorf("otlp metrics: %w", err)
	}
	var exp sdkmetric.Exporter
	switch proto {
	case ProtocolGRPC:
		exp, err = otlpmetricgrpc.New(ctx)
	case ProtocolHTTPProtobuf:
		exp, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp metrics: create %s exporter: %w", proto, err)
	}
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "periscope_export_failures_total",
		Help:        "Failed export operations (batches or writes).",
		ConstLabels: prometheus.Labels{"exporter": "otlp_metrics"},
	})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(failures); err != nil {
			return nil, fmt.Errorf("otlp metrics: register self metrics: %w", err)
		}
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", "periscope"), attribute.String("service.version", cfg.ServiceVersion)),
		envResource(ctx, cfg.Logger),
	)
	if err != nil {
		res = resource.Default()
	}
	logged := &loggingExporter{Exporter: exp, log: cfg.Logger, failures: failures}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(logged)),
	)
	cfg.Logger.Info("exporting metrics over OTLP", "protocol", proto)
	return mp, nil
}

func envResource(ctx context.Context, log *slog.Logger) *resource.Resource {
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithHost())
	if err != nil {
		log.Warn("OTLP metrics: reading resource attributes from the environment", "error", err)
	}
	if res == nil {
		res = resource.Empty()
	}
	return res
}

// loggingExporter counts and logs failed exports itself, instead of the
// OpenTelemetry SDK's process-wide error handler.
type loggingExporter struct {
	sdkmetric.Exporter
	log      *slog.Logger
	failures prometheus.Counter

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

func (e *loggingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	if err == nil {
		return nil
	}
	e.failures.Inc()
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.lastLog) >= failureLogInterval {
		e.log.Warn("OTLP metrics export failed", "err", err, "suppressed", e.suppressed)
		e.lastLog, e.suppressed = now, 0
	} else {
		e.suppressed++
	}
	return nil
}
