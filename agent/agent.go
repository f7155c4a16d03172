// Package agent wires the pipeline together: discovery and collectors feed
// the correlator, which feeds the exporters; it also serves /metrics and
// /status. cmd/periscope is a thin shell around Run and Check.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/gohttp"
	"github.com/periscope-apm/periscope/collectors/gotls"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/openssl"
	"github.com/periscope-apm/periscope/collectors/syscalls"
	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/correlator"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/exporters"
	"github.com/periscope-apm/periscope/exporters/console"
	"github.com/periscope-apm/periscope/exporters/otlp"
	"github.com/periscope-apm/periscope/exporters/otlpmetric"
	"github.com/periscope-apm/periscope/internal/preopen"
	"github.com/periscope-apm/periscope/internal/redact"
	"github.com/periscope-apm/periscope/internal/tracefs"
	"github.com/periscope-apm/periscope/metadata"
	"github.com/periscope-apm/periscope/span"
	"github.com/periscope-apm/periscope/symbols"
)

// UsageError is a configuration the agent cannot run with (exit status 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// shutdownTimeout bounds the shutdown, from the signal: draining the event
// readers, detaching, and flushing spans and metrics, all exporters
// together, so that an unreachable backend delays the exit by this much
// once, not once per exporter. The flush gets at least minFlush.
const (
	shutdownTimeout = 10 * time.Second
	minFlush        = time.Second
)

// flushFunc flushes and stops an exporter at exit.
type flushFunc struct {
	what string
	fn   func(context.Context) error
}

// flushAll runs the flushes concurrently until shutdownTimeout after
// *stopAt (the signal; zero: now): a backend that does not answer delays
// the exit once, and does not take the time of the others (the console).
func flushAll(log *slog.Logger, flushes *[]flushFunc, stopAt *time.Time) {
	deadline := time.Now().Add(minFlush)
	if stopAt.IsZero() {
		deadline = time.Now().Add(shutdownTimeout)
	} else if d := stopAt.Add(shutdownTimeout); d.After(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range *flushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.fn(ctx); err != nil {
				log.Warn("flush "+f.what+" at exit", "err", err)
			}
		}()
	}
	wg.Wait()
}

// Run runs the agent until ctx is done, then detaches every probe, flushes
// the exporters and returns nil.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return &UsageError{err}
	}
	// A bad OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL is a usage error even
	// when no endpoint is set, and is reported before anything is loaded.
	if _, err := otlp.Protocol(); err != nil {
		return &UsageError{err}
	}
	if _, err := otlpmetric.Protocol(); err != nil {
		return &UsageError{err}
	}
	if err := requireCapabilities(); err != nil {
		return err
	}
	setMaxProcs(log, cfg.MaxProcs)
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	if dir, mounted, err := tracefs.Ensure(); err != nil {
		return err
	} else if mounted {
		log.Info("mounted tracefs", "dir", dir)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(promcollectors.NewGoCollector(), promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}))
	host := metadata.HostAttributes(ctx)
	if err := registerTargetInfo(reg, host); err != nil {
		return err
	}

	// Spans and metrics are flushed last, after the collectors are closed
	// (so the last values are exported), all at once (flushAll).
	var flushes []flushFunc
	var stopAt time.Time
	defer flushAll(log, &flushes, &stopAt)

	exp, err := newExporters(ctx, cfg, log, reg, stdout)
	if err != nil {
		return err
	}
	flushes = append(flushes, flushFunc{"spans", exp.Shutdown})

	red, err := newRequestMetrics(cfg.Metrics, reg)
	if err != nil {
		return fmt.Errorf("request metrics: %w", err)
	}
	if red != nil {
		exp = exporters.NewMulti(exp, red)
	}
	mp, err := newMeterProvider(ctx, log, reg, red, host)
	if err != nil {
		return err
	}
	if mp != nil {
		flushes = append(flushes, flushFunc{"metrics", mp.Shutdown})
	}

	procs := metadata.NewProcesses(metadata.ProcessesConfig{
		Args: redact.NewArgs(redact.ArgsConfig{
			Names:   cfg.Processes.SensitiveArgs,
			Headers: cfg.HTTP.SensitiveHeaders,
		}),
		OmitArgs: cfg.Processes.CommandArgs == "off",
		Host:     host,
	})
	resolver, pods, stopKube, err := newKubeResolver(ctx, cfg.Kube, procs, log, reg)
	if err != nil {
		return err
	}
	defer stopKube()
	lk, err := newLinker(cfg.Linking, cfg.Kube, log, reg)
	if err != nil {
		return err
	}
	// The connections Go programs had open when probed (their requests
	// were maybe counted from the middle): cross-node linking gives them
	// no ordinals.
	opened := preopen.New("/proc")
	corr, err := correlator.New(correlator.Config{
		IdleTimeout:          cfg.HTTP.IdleTimeout,
		CaptureQuery:         cfg.HTTP.CaptureQuery,
		SensitiveQueryParams: cfg.HTTP.SensitiveQueryParams,
		CaptureHeaders:       cfg.HTTP.CaptureHeaders,
		SensitiveHeaders:     cfg.HTTP.SensitiveHeaders,
		RoutePatterns:        cfg.Metrics.RoutePatterns,
		BindGrace:            correlator.DefaultBindGrace,
		Linker:               lk.correlatorLinker(),
		LinkWait:             cfg.Linking.Wait,
		FromStart:            opened.FromStart,
	}, exp, resolver, log, reg)
	if err != nil {
		return err
	}
	stopLinker, err := lk.start(ctx, corr, pods)
	if err != nil {
		return err
	}
	defer stopLinker()
	corrCtx, stopCorr := context.WithCancel(context.Background())
	defer stopCorr()
	go corr.Run(corrCtx)

	sel := cfg.Processes.Selector()
	sink := execSink{Sink: corr, procs: procs}
	analyzer := newAnalyzer(cfg.Symbols, log, reg)
	var cols []collectors.Collector
	var netHTTP *ebpf.Map // net/http's sockets, learnt by gohttp, left alone by gotls and sockets
	if cfg.GoHTTP.Enabled {
		if netHTTP, err = gohttp.NewNetHTTPConns(); err != nil {
			return err
		}
		defer netHTTP.Close()
	}
	if cfg.OpenSSL.Enabled {
		cols = append(cols, openssl.New(openssl.Config{
			PerProcess: !sel.All(),
			Ring:       loader.Ring{RingBytes: cfg.OpenSSL.RingBytes, Progress: corr.Ring()},
			Analyzer:   analyzer,
		}, sink, log, reg))
	}
	// The agent's one pair of syscall programs runs what every collector
	// needs from syscalls, on their maps: it is loaded after them, as the
	// sockets collector's programs (started last) or on its own.
	var started []collectors.Collector
	var tracker *discovery.Tracker
	hooks := func() syscalls.Hooks {
		return append(syscalls.Hooks{tracker.SyscallHook()}, syscalls.HooksOf(started)...)
	}
	sock, err := newSocketsCollector(cfg.Plaintext, sel, hooks, sink, corr.Ring, netHTTP, log, reg)
	if err != nil {
		return err
	}
	if cfg.GoHTTP.Enabled {
		gcfg := gohttp.Config{PerProcess: !sel.All(), Ring: loader.Ring{RingBytes: cfg.GoHTTP.RingBytes, Progress: corr.Ring()}, Analyzer: analyzer,
			NetHTTPConns: netHTTP, Watched: watched(opened, log)}
		if sock != nil {
			// Go net/http requests are seen whole: their sockets' bytes
			// would make the same spans again.
			gcfg.Probed = func(pid uint32) {
				if err := sock.SkipPID(pid, true); err != nil {
					log.Warn("leave a Go process to the gohttp collector", "pid", pid, "err", err)
				}
			}
		}
		cols = append(cols, gohttp.New(gcfg, sink, log, reg))
	}
	if cfg.GoTLS.Enabled {
		cols = append(cols, gotls.New(gotls.Config{
			PerProcess:   !sel.All(),
			Ring:         loader.Ring{RingBytes: cfg.GoTLS.RingBytes, Progress: corr.Ring()},
			Analyzer:     analyzer,
			LeaveNetHTTP: cfg.GoHTTP.Enabled,
			NetHTTPConns: netHTTP,
			Watched:      watched(opened, log),
		}, sink, log, reg))
	}
	if cfg.TCP.Enabled {
		c, err := newTCPCollector(cfg.TCP, corr, resolver, mp, log, reg)
		if err != nil {
			return err
		}
		cols = append(cols, c)
	}
	if sock != nil {
		cols = append(cols, sock)
	}
	tracker = discovery.New(discovery.Config{
		Selector: sel,
		OnExec: func(e discovery.Exec) {
			procs.Exec(e.PID, e.Path, e.Argv, e.KTime)
			if sock != nil {
				sock.Select(e.PID)
			}
		},
		Decided:  processNames{procs}.execDecided(execDecided(sock)),
		Progress: procs.Discovery(),
	}, log, reg)
	// Discovery's process programs first: an exec is in its ring before
	// any collector's marks it (discovery.Tracker.Attach).
	if err := tracker.Attach(); err != nil {
		return fmt.Errorf("start process discovery: %w", err)
	}
	defer tracker.Close()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	defer func() {
		for _, c := range started {
			if err := c.Close(); err != nil {
				log.Warn("detach collector", "collector", c.Name(), "err", err)
			}
		}
	}()
	restoreGC := lowGCDuringStart()
	defer restoreGC()
	for _, c := range cols {
		if err := c.Start(runCtx); err != nil {
			return fmt.Errorf("start collector %s: %w", c.Name(), err)
		}
		started = append(started, c)
		dropStartPages(log) // before the next collector maps its rings
	}
	syscallPath, stopPair, err := startSyscallPair(sock, hooks, log)
	if err != nil {
		return err
	}
	defer stopPair()

	exits, err := startProcessMetrics(runCtx, cfg.ProcessMetrics, started, resolver, mp, log, reg)
	if err != nil {
		return err
	}

	preselect(sock, sel, log)
	tracker.Subscribe(processNames{procs})
	for _, c := range started {
		if o, ok := c.(discovery.Observer); ok {
			tracker.Subscribe(o)
		}
	}
	if exits != nil {
		tracker.Subscribe(exits)
	}
	tracker.Subscribe(opened)
	if err := tracker.Start(runCtx); err != nil {
		return fmt.Errorf("start process discovery: %w", err)
	}

	restoreGC()
	restoreGC = func() {}
	dropStartPages(log)
	reg.MustRegister(newInstrumented(started))
	st := &status{tracker: tracker, collectors: started, syscalls: syscallPath}
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return &UsageError{fmt.Errorf("metrics_addr: %w", err)}
		}
		mux := newMux(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), st, cfg.Pprof)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
		log.Info("serving /metrics and /status", "addr", ln.Addr().String())
	}
	st.setReady()
	log.Info("agent running", "collectors", len(started), "processes", len(tracker.Processes()))

	<-ctx.Done()
	stopAt = time.Now()
	log.Info("stopping: detaching probes and flushing spans")
	waitReaders(started, log)
	corr.Flush()
	return nil
}

// newAnalyzer returns the analyser of files the collectors share, with the
// symbol cache in cfg.CacheDir, or in memory only when that cannot be used.
func newAnalyzer(cfg config.Symbols, log *slog.Logger, reg prometheus.Registerer) *symbols.Analyzer {
	cache, err := symbols.NewCache(cfg.CacheDir, Version())
	if err != nil {
		log.Warn("symbol cache kept in memory only", "err", err)
		cache, _ = symbols.NewCache("", Version())
	}
	return symbols.NewAnalyzer(cache, cfg.AnalysisTimeout, reg)
}

// readerDrainTimeout bounds the wait for the collectors' event readers at
// shutdown.
const readerDrainTimeout = 5 * time.Second

// waitReaders waits until the collectors' event readers have handled what
// the kernel queued before the shutdown, so that the spans those events
// finish reach the exporters before they are flushed and shut down.
func waitReaders(cols []collectors.Collector, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range cols {
			c.Wait()
		}
	}()
	select {
	case <-done:
	case <-time.After(readerDrainTimeout):
		log.Warn("event readers still busy at shutdown; the last events may be lost", "waited", readerDrainTimeout)
	}
}

func newExporters(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer, stdout io.Writer) (span.Exporter, error) {
	var exps []span.Exporter
	if cfg.Console != "off" {
		c, err := console.New(cfg.Console, stdout, reg)
		if err != nil {
			return nil, &UsageError{err}
		}
		exps = append(exps, c)
	}
	if otlp.Enabled() {
		o, err := otlp.New(ctx, otlp.Config{Logger: log, Registerer: reg, ScopeVersion: Version()})
		if err != nil {
			return nil, &UsageError{fmt.Errorf("OTLP exporter: %w", err)}
		}
		exps = append(exps, o)
		log.Info("exporting spans over OTLP")
	}
	return exporters.NewMulti(exps...), nil
}

// watched records the connections a process has open once a Go
// collector's probes on it are in place (preopen).
func watched(t *preopen.Table, log *slog.Logger) func(pid uint32) {
	return func(pid uint32) {
		if err := t.Probed(pid); err != nil {
			log.Debug("read the connections of a probed process", "pid", pid, "err", err)
		}
	}
}
