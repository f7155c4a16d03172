package otlp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/exporters"
	"github.com/periscope-apm/periscope/span"
)

// Defaults for the zero fields of Config. A batch of 2,048 spans: each
// export request costs a fixed 0.4–0.9 ms of CPU (the gRPC call, its
// goroutines' wake-ups, flow control), 0.8–1.7 µs per span in batches of
// 512 (BenchmarkPipeline/grpc-gohttp-25k: 0.82× the CPU per span of 512,
// test/bench/results-go16.md).
const (
	DefaultQueueSize          = 65536
	DefaultQueueBytes         = 16 << 20
	DefaultBatchSize          = 2048
	DefaultBatchTimeout       = time.Second
	DefaultMaxInFlight        = 4
	DefaultFailureLogInterval = 30 * time.Second
)

// Retry policy of one batch inside the SDK exporter. The whole of it is also
// bounded by OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT (10 s by default); after
// that the batch is dropped and counted.
const (
	retryInitialInterval = time.Second
	retryMaxInterval     = 5 * time.Second
	retryMaxElapsed      = 10 * time.Second
)

// Reconnection. gRPC's default backoff between connection attempts grows
// to 2 minutes, so after an outage the exporter came back seconds to
// minutes after the backend did. Attempts are at most reconnectMaxDelay
// apart (jittered ±20%, so that the agents of a cluster do not reconnect
// in step), and an export waits for the connection (within its timeout)
// instead of failing at once while it is down: it goes out as soon as the
// backend is back.
var reconnectBackoff = backoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   800 * time.Millisecond,
}

// drainPause is the pause between two batches while the queue holds more
// than a batch after an outage: the backlog goes out at up to BatchSize
// spans per drainPause (170,000 spans/s with the defaults, above the rate
// the agent sustains) instead of in one burst of the exporter's CPU taken
// from the applications.
const drainPause = 12 * time.Millisecond

// maxBatchBytes seals a batch before BatchSize spans when its encoded
// spans reach it: a request stays well under the 4 MiB a gRPC server
// (the OpenTelemetry Collector's default) accepts, whatever the spans
// carry.
const maxBatchBytes = 2 << 20

// maxRequestSize is the largest export request sent, otlptracegrpc's
// default limit, checked by the exporter (the spans of a request are
// encoded bytes already: sizing it costs little).
const maxRequestSize = 64 << 20

// Config configures an Exporter. The transport (endpoint, headers, TLS,
// timeout, compression, protocol) comes from the standard OTEL_* environment
// variables, not from here.
type Config struct {
	// QueueSize is how many spans may wait for export (not counting
	// those in flight); beyond it Export drops. Default DefaultQueueSize
	// (65,536 with four exports in flight kept a Redis server pipelining
	// 250,000 commands per second from dropping at the queue).
	QueueSize int
	// QueueBytes bounds the encoded bytes of the spans waiting for export
	// (what the queue holds in memory); beyond it Export drops. Default
	// DefaultQueueBytes.
	QueueBytes int
	// BatchSize is the most spans sent in one request. Default
	// DefaultBatchSize.
	BatchSize int
	// BatchTimeout is the longest a span waits for its batch to fill.
	// Default DefaultBatchTimeout.
	BatchTimeout time.Duration
	// MaxInFlight is the most export requests sent at once (over one
	// connection). One at a time caps the spans per second at BatchSize
	// per round trip, and a round trip to a backend on a busy node (or
	// across a network) takes milliseconds. Default DefaultMaxInFlight.
	MaxInFlight int
	// FailureLogInterval is the shortest time between two logs of failed
	// exports. Default DefaultFailureLogInterval.
	FailureLogInterval time.Duration
	// ScopeVersion is reported as the instrumentation scope's version
	// (the agent's version). Optional.
	ScopeVersion string
	// Logger receives warnings about failed exports and the environment.
	// Nil discards them.
	Logger *slog.Logger
	// Registerer receives the self metrics (exporter="otlp"). Nil registers
	// nothing.
	Registerer prometheus.Registerer
	// Client is the transport. Nil: otlptracegrpc's or otlptracehttp's
	// client, configured from the OTEL_* environment (the agent); set it
	// to send elsewhere (benchmarks).
	Client otlptrace.Client
}

func (c *Config) setDefaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.FailureLogInterval <= 0 {
		c.FailureLogInterval = DefaultFailureLogInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Exporter sends spans to an OTLP backend. Create it with New.
//
// Export encodes each span at once into the batch being filled (under mu)
// and hands a full batch to the drain goroutine, which sends it: one
// hand-off per batch, not per span, and no span record kept past Export.
type Exporter struct {
	cfg     Config
	log     *slog.Logger
	client  otlptrace.Client
	sampler sampler
	metrics *exporters.SpanMetrics

	mu      sync.Mutex
	enc     *encoder // resources; used under mu
	filling *batch   // the batch Export adds to (mu)
	firstAt time.Time
	free    []*batch // sent batches kept for reuse (mu)
	// queued counts the spans waiting for export: in full batches not yet
	// taken by the drain goroutine and in the batch being filled. Export
	// drops past QueueSize, as a queue of that many spans would, or when
	// their encoded bytes (queuedBytes) reach QueueBytes.
	queued      atomic.Int64
	queuedBytes atomic.Int64
	// inFlight counts the spans of the batches a sender has taken: sent
	// and not yet answered (or failed). A span given to Export is always
	// exported, dropped and counted, queued, or in flight.
	inFlight atomic.Int64
	full     chan *batch   // full batches, to the drain goroutine
	kick     chan struct{} // a span went into an empty batch: time it
	// send hands sealed batches to the MaxInFlight sender goroutines
	// (unbuffered: the drain goroutine waits for a free sender, and the
	// batches behind stay queued); sending counts the senders, for
	// Shutdown to wait on.
	send    chan *batch
	sending sync.WaitGroup

	// runCtx bounds the exports of the drain goroutine; Shutdown cancels it
	// when its own context expires.
	runCtx    context.Context
	cancelRun context.CancelFunc
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	stopped   atomic.Bool

	clientOnce sync.Once
	clientErr  error

	// Failure logging state, shared by the exports in flight (logMu).
	logMu           sync.Mutex
	lastLog         time.Time
	lastRecoveryLog time.Time
	suppressed      int // failures since the last failure log
	failing         bool
	draining        bool // recovered from failures, backlog not sent yet
}

// maxFreeBatches bounds the sent batches kept for reuse.
const maxFreeBatches = 4

var _ span.Exporter = (*Exporter)(nil)

// New returns an exporter configured from cfg and the OTEL_* environment,
// and starts its drain goroutine, which Shutdown stops. ctx is used only
// while constructing. It fails when OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL is
// neither grpc nor http/protobuf or the SDK exporter cannot be built (bad
// certificate file, ...); no connection is made before the first export.
func New(ctx context.Context, cfg Config) (*Exporter, error) {
	cfg.setDefaults()
	proto, err := Protocol()
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	sm, err := samplerFromEnv()
	if err != nil {
		cfg.Logger.Warn("OTLP exporter: invalid sampler configuration", "error", err)
	}
	client := cfg.Client
	switch {
	case client != nil:
	case proto == ProtocolGRPC:
		client = otlptracegrpc.NewClient(otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
			Enabled:         true,
			InitialInterval: retryInitialInterval,
			MaxInterval:     retryMaxInterval,
			MaxElapsedTime:  retryMaxElapsed,
		}), otlptracegrpc.WithDialOption(
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: 5 * time.Second}),
			grpc.WithDefaultCallOptions(grpc.WaitForReady(true), grpc.ForceCodecV2(newRequestCodec())),
		), otlptracegrpc.WithMaxRequestSize(0)) // checked in export
	case proto == ProtocolHTTPProtobuf:
		client = otlptracehttp.NewClient(otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled:         true,
			InitialInterval: retryInitialInterval,
			MaxInterval:     retryMaxInterval,
			MaxElapsedTime:  retryMaxElapsed,
		}))
	}
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("otlp exporter: start %s client: %w", proto, err)
	}
	e, err := newExporter(cfg, client, sm, envResource(ctx, cfg.Logger))
	if err != nil {
		_ = client.Stop(ctx)
		return nil, err
	}
	cfg.Logger.Debug("OTLP exporter started", "protocol", proto, "sampler", sm.name,
		"queue_size", cfg.QueueSize, "batch_size", cfg.BatchSize)
	return e, nil
}

// newExporter wires an exporter around client; cfg must have its defaults.
func newExporter(cfg Config, client otlptrace.Client, sm sampler, env *resource.Resource) (*Exporter, error) {
	runCtx, cancel := context.WithCancel(context.Background())
	e := &Exporter{
		cfg:       cfg,
		log:       cfg.Logger,
		client:    client,
		sampler:   sm,
		enc:       newEncoder(env, cfg.ScopeVersion),
		filling:   &batch{},
		full:      make(chan *batch, maxQueuedBatches(cfg)),
		kick:      make(chan struct{}, 1),
		send:      make(chan *batch),
		runCtx:    runCtx,
		cancelRun: cancel,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	m, err := exporters.NewSpanMetrics(cfg.Registerer, "otlp", exporters.Gauges{
		QueueLen:   func() int { return int(e.queued.Load()) },
		InFlight:   func() int { return int(e.inFlight.Load()) },
		QueueBytes: func() int { return int(e.queuedBytes.Load()) },
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	e.metrics = m
	e.sending.Add(cfg.MaxInFlight)
	for range cfg.MaxInFlight {
		go e.sender()
	}
	go e.run()
	return e, nil
}

// Export encodes s into the batch being filled unless the sampler drops
// it; a full batch goes to the drain goroutine. When QueueSize spans are
// already waiting the span is dropped and counted. It never blocks on I/O
// (only on the encoding of a concurrent Export, or the drain goroutine
// taking a batch). Spans exported after Shutdown are ignored. s is not
// kept.
func (e *Exporter) Export(s *span.Span) {
	if s == nil || e.stopped.Load() {
		return
	}
	if !e.sampler.keep(s) {
		e.metrics.SampledOut.Inc()
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped.Load() {
		return
	}
	if e.queued.Load() >= int64(e.cfg.QueueSize) || e.queuedBytes.Load() >= int64(e.cfg.QueueBytes) {
		e.metrics.QueueFull.Inc()
		return
	}
	b := e.filling
	before := b.bytes
	e.enc.add(b, s)
	e.queued.Add(1)
	e.queuedBytes.Add(int64(b.bytes - before))
	if b.n == 1 {
		e.firstAt = time.Now()
		select {
		case e.kick <- struct{}{}:
		default: // already kicked
		}
	}
	if b.n >= e.cfg.BatchSize || b.bytes >= maxBatchBytes {
		e.sealLocked()
		select {
		case e.full <- b:
		default: // cannot happen: full holds maxQueuedBatches
			e.queued.Add(-int64(b.n))
			e.queuedBytes.Add(-int64(b.bytes))
			e.metrics.QueueFull.Add(float64(b.n))
			e.recycle(b)
		}
	}
}

// maxQueuedBatches is the most sealed batches the queue can hold: those
// sealed full (BatchSize spans each, QueueSize in all) and those sealed
// at maxBatchBytes (QueueBytes in all), and one more of each that the
// bounds, checked before a span is added, let through.
func maxQueuedBatches(cfg Config) int {
	return cfg.QueueSize/cfg.BatchSize + cfg.QueueBytes/maxBatchBytes + 2
}

// sealLocked ends the batch being filled and starts another; e.mu is held.
func (e *Exporter) sealLocked() *batch {
	b := e.filling
	b.seal()
	if n := len(e.free); n > 0 {
		e.filling, e.free = e.free[n-1], e.free[:n-1]
	} else {
		e.filling = &batch{}
	}
	return b
}

// recycle keeps a sent batch for reuse.
func (e *Exporter) recycle(b *batch) {
	b.reset()
	if len(e.free) < maxFreeBatches {
		e.free = append(e.free, b)
	}
}

// Shutdown exports what is queued, within ctx, then closes the connection.
// When ctx expires first, the export in flight is cancelled and the spans
// still queued are dropped and counted as failed.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.stopped.Store(true)
		close(e.stop)
	})
	var errs []error
	select {
	case <-e.done:
	case <-ctx.Done():
		e.cancelRun()
		<-e.done // quick now: exports are skipped once runCtx is done
		errs = append(errs, fmt.Errorf("otlp exporter: flush: %w", ctx.Err()))
	}
	e.cancelRun()
	e.clientOnce.Do(func() {
		// With ctx expired the client still closes its connection; its
		// error would only repeat the one above.
		if err := e.client.Stop(ctx); err != nil && (len(errs) == 0 || !errors.Is(err, ctx.Err())) {
			e.clientErr = fmt.Errorf("otlp exporter: close client: %w", err)
		}
	})
	errs = append(errs, e.clientErr)
	return errors.Join(errs...)
}

// run is the drain goroutine: it sends full batches, the batch being
// filled once its first span has waited BatchTimeout, and, at shutdown,
// everything left.
func (e *Exporter) run() {
	defer close(e.done)
	timer := time.NewTimer(e.cfg.BatchTimeout)
	timer.Stop()
	var timerC <-chan time.Time
	for {
		select {
		case b := <-e.full:
			e.dispatch(b)
		case <-e.kick:
			if timerC == nil {
				timer.Reset(e.cfg.BatchTimeout)
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			if wait := e.flushDue(); wait > 0 {
				timer.Reset(wait)
				timerC = timer.C
			}
		case <-e.stop:
			e.mu.Lock()
			b := e.sealLocked()
			e.mu.Unlock()
			for {
				select {
				case f := <-e.full:
					e.dispatch(f)
				default:
					e.dispatch(b)
					close(e.send)
					e.sending.Wait()
					return
				}
			}
		}
	}
}

// flushDue sends the batch being filled when its first span has waited
// BatchTimeout, and returns how long to wait before looking again (0:
// the batch is empty, a kick will say when it is not).
func (e *Exporter) flushDue() time.Duration {
	e.mu.Lock()
	if e.filling.n == 0 {
		e.mu.Unlock()
		return 0
	}
	if wait := e.cfg.BatchTimeout - time.Since(e.firstAt); wait > 0 {
		e.mu.Unlock()
		return wait
	}
	b := e.sealLocked()
	e.mu.Unlock()
	e.dispatch(b)
	return 0
}

// dispatch hands a sealed batch to a free sender (it waits for one: the
// batches behind it stay queued and counted), then paces the backlog.
func (e *Exporter) dispatch(b *batch) {
	e.send <- b
	e.pace()
}

// sender is one of the MaxInFlight goroutines that send batches, one at a
// time, until send is closed. A batch moves from queued to in flight when
// a sender takes it, and out of flight once it is counted exported or
// failed: the counts overlap for an instant, never leave a span out.
func (e *Exporter) sender() {
	defer e.sending.Done()
	for b := range e.send {
		e.inFlight.Add(int64(b.n))
		e.queued.Add(-int64(b.n))
		e.queuedBytes.Add(-int64(b.bytes))
		if b.n > 0 {
			e.export(b)
		}
		e.inFlight.Add(-int64(b.n))
		e.mu.Lock()
		e.recycle(b)
		e.mu.Unlock()
	}
}

// pace pauses after a batch while a backlog left by an outage is being
// sent (see drainPause), except at shutdown.
func (e *Exporter) pace() {
	e.logMu.Lock()
	draining := e.draining
	if draining && e.queued.Load() < int64(e.cfg.BatchSize) {
		e.draining, draining = false, false
	}
	e.logMu.Unlock()
	if !draining {
		return
	}
	t := time.NewTimer(drainPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.stop:
	}
}

// export sends the sealed batch b and accounts for the outcome.
func (e *Exporter) export(b *batch) {
	spans := b.n
	n := float64(spans)
	if err := e.runCtx.Err(); err != nil { // shutdown ran out of time
		e.metrics.Failures.Inc()
		e.metrics.ExportFailed.Add(n)
		return
	}
	var err error
	rss := b.rss
	if size := proto.Size(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss}); size > maxRequestSize {
		err = fmt.Errorf("request of %d bytes larger than the limit of %d", size, maxRequestSize)
	} else {
		err = e.client.UploadTraces(e.runCtx, rss)
	}
	if err != nil {
		e.metrics.Failures.Inc()
		e.metrics.ExportFailed.Add(n)
		e.noteFailure(fmt.Errorf("traces export: %w", err), spans)
		return
	}
	e.metrics.Exported.Add(n)
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if e.failing {
		e.failing = false
		e.draining = true
		if now := time.Now(); now.Sub(e.lastRecoveryLog) >= e.cfg.FailureLogInterval {
			e.log.Info("OTLP export recovered", "unlogged_failures", e.suppressed)
			e.lastRecoveryLog = now
		}
	}
}

// noteFailure logs a failed export, at most once per FailureLogInterval;
// the failures in between are counted in the next log. Recoveries are
// logged at most once per interval too, so a flapping backend cannot flood
// the log.
func (e *Exporter) noteFailure(err error, spans int) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.failing = true
	now := time.Now()
	if !e.lastLog.IsZero() && now.Sub(e.lastLog) < e.cfg.FailureLogInterval {
		e.suppressed++
		return
	}
	e.log.Warn("OTLP export failed, spans dropped",
		"error", err, "spans", spans, "suppressed_failures", e.suppressed,
		"next_report_after", e.cfg.FailureLogInterval)
	e.lastLog = now
	e.suppressed = 0
}
