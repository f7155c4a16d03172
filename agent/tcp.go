package agent

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"

	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/tcp"
	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/exporters/otlpmetric"
	"github.com/periscope-apm/periscope/metrics"
)

// newTCPCollector returns the TCP collector. Its retransmissions go to the
// retransmission counters (exported on /metrics, and over OTLP when mp is
// not nil) and to the correlator, which puts them on spans.
func newTCPCollector(cfg config.TCP, corr events.Sink, procs metrics.ProcessResolver, mp *otlpmetric.Metrics, log *slog.Logger, reg prometheus.Registerer) (*tcp.Collector, error) {
	counts := metrics.NewRetransmits(metrics.RetransmitsConfig{MaxPeers: cfg.MaxPeers}, procs)
	if err := reg.Register(counts); err != nil {
		return nil, fmt.Errorf("register retransmission metrics: %w", err)
	}
	if mp != nil {
		if _, err := counts.RegisterOTel(mp.Meter(meterName, metric.WithInstrumentationVersion(Version()))); err != nil {
			return nil, err
		}
	}
	return tcp.New(tcp.Config{
		Prefer: tcp.Hook(cfg.Hook),
		Fail:   tcp.Hook(cfg.FailHook),
		Ring:   loader.Ring{RingBytes: cfg.RingBytes},
	}, retransmitSink{Sink: corr, counts: counts}, log, reg), nil
}

// retransmitSink hands retransmissions to the counters and to the
// correlator, and every other event to the correlator.
type retransmitSink struct {
	events.Sink
	counts *metrics.Retransmits
}

func (s retransmitSink) Retransmit(r events.Retransmit) {
	s.counts.Add(r)
	s.Sink.Retransmit(r)
}
