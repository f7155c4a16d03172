package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/exporters/otlpmetric"
	"github.com/periscope-apm/periscope/metrics"
)

// startProcessMetrics starts reading the resource usage of the processes
// the collectors have probes on, every cfg.Interval until ctx is done:
// per workload on /metrics, per process over OTLP when mp is not nil. It
// returns the observer that tells it of exits (nil when disabled).
func startProcessMetrics(ctx context.Context, cfg config.ProcessMetrics, cols []collectors.Collector, procs metrics.ProcessResolver, mp *otlpmetric.Metrics, log *slog.Logger, reg prometheus.Registerer) (discovery.Observer, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	pm, err := metrics.NewProcessMetrics(metrics.ProcessMetricsConfig{Interval: cfg.Interval, Expiry: cfg.Expiry},
		func() []uint32 { return tracedPIDs(cols) }, procs, metrics.NewProcReader(""), reg)
	if err != nil {
		return nil, fmt.Errorf("process metrics: %w", err)
	}
	if err := reg.Register(pm); err != nil {
		return nil, fmt.Errorf("process metrics: %w", err)
	}
	if mp != nil {
		scope := instrumentation.Scope{Name: meterName, Version: Version()}
		mp.AddWorkloads(func(delta bool) []*metricdata.ResourceMetrics { return pm.ResourceMetrics(scope, delta) })
	}
	go pm.Run(ctx)
	log.Info("reading resource metrics of traced processes", "interval", cfg.Interval)
	return processExits{pm}, nil
}

// tracedPIDs lists the processes some collector has probes on.
func tracedPIDs(cols []collectors.Collector) []uint32 {
	var pids []uint32
	for _, c := range cols {
		for _, a := range collectors.AttachmentsOf(c) {
			pids = append(pids, a.Users...)
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// processExits tells the process metrics of exits as discovery sees them.
type processExits struct{ pm *metrics.ProcessMetrics }

func (processExits) ProcessUpdated(discovery.Process, []discovery.Mapping) {}

func (e processExits) ProcessExited(pid uint32, at time.Time) { e.pm.ProcessExited(pid, at) }

// registerTargetInfo exports the agent's resource on /metrics the way the
// OpenTelemetry Prometheus compatibility rules put a resource there: a
// target_info gauge of 1 whose labels are the resource's attributes
// (service.name, service.version, host.name, and host).
func registerTargetInfo(reg prometheus.Registerer, host []attribute.KeyValue) error {
	labels := prometheus.Labels{"service_name": "periscope", "service_version": Version()}
	if name, err := os.Hostname(); err == nil {
		labels["host_name"] = name
	}
	for _, a := range host {
		labels[strings.ReplaceAll(string(a.Key), ".", "_")] = a.Value.Emit()
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "target_info",
		Help:        "Target metadata: the agent's resource attributes as labels.",
		ConstLabels: labels,
	})
	g.Set(1)
	return reg.Register(g)
}
