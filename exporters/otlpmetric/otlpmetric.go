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
	"strconv"
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

	"github.com/periscope-apm/periscope/internal/otlpenv"
)

// envMetricsExporter is read by this package itself; internal/otlpenv
// reads the endpoint and protocol, the SDK exporter the rest of
// OTEL_EXPORTER_OTLP_*.
const envMetricsExporter = "OTEL_METRICS_EXPORTER"

// Protocols accepted in OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL.
const (
	ProtocolGRPC         = otlpenv.GRPC
	ProtocolHTTPProtobuf = otlpenv.HTTPProtobuf
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
	return otlpenv.EndpointSet(otlpenv.Metrics)
}

// Protocol returns the protocol selected by
// OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
// else grpc; any other value than grpc or http/protobuf is an error that
// names the variable.
func Protocol() (string, error) { return otlpenv.Protocol(otlpenv.Metrics) }

// Config configures New.
type Config struct {
	// ServiceVersion is the agent's version, on the resource.
	ServiceVersion string
	// Host are host attributes for the agent's resource beside host.name
	// (host.id, host.arch, os.type, os.description).
	Host []attribute.KeyValue
	// Logger receives failed exports (at most one line per 30 s). Nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives periscope_export_failures_total{exporter=
	// "otlp_metrics"}. Nil registers nothing.
	Registerer prometheus.Registerer
	// Workloads, when not nil, gives metrics whose resource is the
	// workload they are about (one ResourceMetrics each), exported on the
	// same period as the meter provider's. delta asks for the change since
	// the previous call instead of cumulative values.
	Workloads func(delta bool) []*metricdata.ResourceMetrics
}

// Metrics is the OTLP metrics pipeline: a meter provider for the agent's
// own instruments (its resource is the agent) and the periodic export of
// the per-workload metrics.
type Metrics struct {
	*sdkmetric.MeterProvider
	exp      *loggingExporter
	interval time.Duration
	timeout  time.Duration
	base     context.Context // cancelled when Shutdown runs out of time
	cancel   context.CancelFunc
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once

	mu        sync.Mutex
	workloads []func(delta bool) []*metricdata.ResourceMetrics
}

// New returns the metrics pipeline, exporting periodically over OTLP. The
// meter provider's resource describes the agent (service.name "periscope",
// host.name, OTEL_RESOURCE_ATTRIBUTES); the processes its metrics are about
// are in their data points' attributes. Shut it down to send the last
// values.
func New(ctx context.Context, cfg Config) (*Metrics, error) {
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
		resource.NewSchemaless(append([]attribute.KeyValue{
			attribute.String("service.name", "periscope"), attribute.String("service.version", cfg.ServiceVersion),
		}, cfg.Host...)...),
		envResource(ctx, cfg.Logger),
	)
	if err != nil {
		res = resource.Default()
	}
	logged := &loggingExporter{Exporter: exp, log: cfg.Logger, failures: failures}
	m := &Metrics{
		MeterProvider: sdkmetric.NewMeterProvider(
			sdkmetric.WithResource(res),
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(logged)),
		),
		exp:      logged,
		interval: envMillis(envInterval, defaultInterval),
		timeout:  envMillis(envTimeout, defaultTimeout),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.base, m.cancel = context.WithCancel(context.Background())
	if cfg.Workloads != nil {
		m.AddWorkloads(cfg.Workloads)
	}
	go m.run()
	cfg.Logger.Info("exporting metrics over OTLP", "protocol", proto, "interval", m.interval)
	return m, nil
}

// Export periods, as the SDK's periodic reader reads them.
const (
	envInterval     = "OTEL_METRIC_EXPORT_INTERVAL"
	envTimeout      = "OTEL_METRIC_EXPORT_TIMEOUT"
	defaultInterval = time.Minute
	defaultTimeout  = 30 * time.Second
)

// envMillis reads a positive number of milliseconds from key.
func envMillis(key string, def time.Duration) time.Duration {
	v, err := strconv.Atoi(strings.TrimSpace(os.Getenv(key)))
	if err != nil || v <= 0 {
		return def
	}
	return time.Duration(v) * time.Millisecond
}

// AddWorkloads adds a source of per-workload metrics (see
// Config.Workloads), exported from the next period on.
func (m *Metrics) AddWorkloads(f func(delta bool) []*metricdata.ResourceMetrics) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workloads = append(m.workloads, f)
}

// run exports the workload metrics every interval until Shutdown.
func (m *Metrics) run() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(m.base, m.timeout)
			m.pushWorkloads(ctx)
			cancel()
		}
	}
}

// pushWorkloads exports the workload metrics, one request per workload.
func (m *Metrics) pushWorkloads(ctx context.Context) {
	m.mu.Lock()
	sources := m.workloads
	m.mu.Unlock()
	delta := m.exp.Temporality(sdkmetric.InstrumentKindHistogram) == metricdata.DeltaTemporality
	for _, source := range sources {
		for _, rm := range source(delta) {
			if ctx.Err() != nil {
				return
			}
			_ = m.exp.Export(ctx, rm) // counted and logged by loggingExporter
		}
	}
}

// Shutdown exports the last workload metrics, then flushes and stops the
// meter provider and the exporter, all within ctx: an export in flight to
// an unreachable backend is abandoned when ctx is done.
//
// The OTLP exporters serialise Export calls, and an export of the SDK's own
// reader may hold that lock while gRPC waits up to its 20 s connect timeout
// for a silent backend, deaf to our context. So the work runs in the
// background and Shutdown returns when ctx is done, whatever it waits on.
func (m *Metrics) Shutdown(ctx context.Context) error {
	var err error
	m.once.Do(func() {
		close(m.stop)
		res := make(chan error, 1)
		go func() {
			defer m.cancel()
			select {
			case <-m.done:
			case <-ctx.Done():
				m.cancel()
				<-m.done
			}
			if ctx.Err() == nil {
				m.pushWorkloads(ctx)
			}
			res <- m.MeterProvider.Shutdown(ctx)
		}()
		select {
		case err = <-res:
		case <-ctx.Done():
			m.cancel()
			err = fmt.Errorf("otlp metrics: shutdown: %w", context.Cause(ctx))
		}
	})
	return err
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
