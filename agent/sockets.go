package agent

import (
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/sockets"
	"github.com/periscope-apm/periscope/collectors/syscalls"
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
func newSocketsCollector(cfg config.Plaintext, sel discovery.Selector, hooks func() syscalls.Hooks, sink events.Sink, ring func() *ktime.Progress, netHTTP *ebpf.Map, log *slog.Logger, reg prometheus.Registerer) (*sockets.Collector, error) {
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
		CallSlots:    cfg.CallSlots,
		Hooks:        hooks,
		NetHTTPConns: netHTTP,
	}, sink, log, reg), nil
}

// startSyscallPair starts the agent's pair of syscall programs on its own
// when the sockets collector, whose programs are the pair when it runs, is
// off. It returns the pair's attach path and what detaches it.
func startSyscallPair(sock *sockets.Collector, hooks func() syscalls.Hooks, log *slog.Logger) (string, func(), error) {
	if sock != nil {
		return sock.SyscallPath(), func() {}, nil
	}
	p := syscalls.NewPair(hooks(), log)
	if err := p.Start(); err != nil {
		return "", nil, fmt.Errorf("start the syscall programs: %w", err)
	}
	return p.AttachPath(), func() {
		if err := p.Close(); err != nil {
			log.Warn("detach the syscall programs", "err", err)
		}
	}, nil
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
