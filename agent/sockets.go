package agent

import (
	"log/slog"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/openssl"
	"github.com/periscope-apm/periscope/collectors/sockets"
	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/otlpenv"
)

// newSocketsCollector returns the plaintext collector, or nil when it is
// disabled. Unless cfg.TraceExport, the OTLP export path's ports are
// ignored with cfg.IgnorePorts: a span exported over plaintext HTTP would
// otherwise become a span, exported in turn.
func newSocketsCollector(cfg config.Plaintext, sel discovery.Selector, ssl *openssl.Collector, sink events.Sink, ring func() *ktime.Progress, netHTTP *ebpf.Map, log *slog.Logger, reg prometheus.Registerer) (*sockets.Collector, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	ports, err := cfg.Ports()
	if err != nil {
		return nil, &UsageError{err}
	}
	if !cfg.TraceExport {
		ports = append(ports, otlpenv.ExportPorts()...)
	}
	return sockets.New(sockets.Config{
		PerProcess:   !sel.All(),
		CaptureBytes: cfg.CaptureBytes,
		IgnorePorts:  ports,
		Ring:         loader.Ring{RingBytes: cfg.RingBytes, Progress: ring()},
		SSL:          sslBinding(ssl),
		NetHTTPConns: netHTTP,
	}, sink, log, reg), nil
}

// sslBinding is the OpenSSL collector as the sockets collector's SSL
// binding, or nil (a nil *openssl.Collector must not become a non-nil
// interface).
func sslBinding(ssl *openssl.Collector) sockets.SSLBinding {
	if ssl == nil {
		return nil
	}
	return ssl
}

// execDecided is discovery's Decided for the sockets collector (nil when
// there is none): the records a new program sent before discovery decided
// on it wait for it there.
func execDecided(sock *sockets.Collector) func(discovery.Exec) {
	if sock == nil {
		return nil
	}
	return sock.ExecDecided
}

// preselect decides on every running process by its executable before
// discovery's first scan, which reads each one whole and may take seconds:
// meanwhile the sockets collector holds the records of undecided processes
// (and gives up on them after a while).
func preselect(sock *sockets.Collector, sel discovery.Selector, log *slog.Logger) {
	if sock == nil || sel.All() {
		return
	}
	procs, err := discovery.Programs("/proc")
	if err != nil {
		log.Warn("first look at the running processes", "err", err)
		return
	}
	for _, p := range procs {
		p.Selected = sel.Match(p.Exe)
		sock.ProcessUpdated(p, nil)
	}
}
