package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/gohttp"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/correlator"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/exporters"
	"github.com/periscope-apm/periscope/exporters/otlp"
	"github.com/periscope-apm/periscope/internal/beat"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
	"github.com/periscope-apm/periscope/metrics"
	"github.com/periscope-apm/periscope/span"
)

// The user-space pipeline as Run wires it, fed with ring records as the
// collectors read them: records → decoders → correlator → span → RED
// histograms and the OTLP trace exporter → OTLP bytes. One request (one
// span) per iteration, rotating over three sources:
//   - an HTTPS server's request and response as OpenSSL data records,
//   - a Go net/http server request as gohttp start and end records (each
//     connection served by its own goroutine, as net/http does),
//   - a plaintext HTTP server's request and response as sockets data records.

// Ring record layouts (bpf/periscope.h, collectors/gohttp): the decoders
// check every length, so a drift here fails TestPipeline.
const (
	bindPlaintext = 1 // BIND_PLAINTEXT
	afInet        = 2
	gohttpServer  = 1 // events.RequestServer
	headerAbsent  = 2 // gohttp headerAbsent
)

type recordHeader struct {
	TS             uint64
	Type, PID, TID uint32
	Pad            uint32
}

type tupleRecord struct {
	Family, LocalPort, RemotePort, Pad uint16
	LocalAddr, RemoteAddr              [16]byte
}

type dataRecord struct {
	Hdr                          recordHeader
	Conn                         uint64
	Dir, Size, Captured, TailLen uint32
	FD                           int32
	Goroutine, Seq, Flags        uint32
	Tail                         [128]byte
}

type bindRecord struct {
	Hdr   recordHeader
	Conn  uint64
	FD    int32
	Flags uint32
	Tuple tupleRecord
}

type startRecord struct {
	Hdr                   recordHeader
	ID, Parent, Goroutine uint64
	Kind                  uint32
	FD                    int32
	TLS                   uint32
	Major, Minor          uint16
	Tuple                 tupleRecord
	HeaderLookup          uint32
	TraceparentLen, Pad2  uint16
	Traceparent           [64]byte
}

type endRecord struct {
	Hdr                               recordHeader
	ID                                uint64
	Kind, Status                      uint32
	RequestSize, ResponseSize         int64
	Error                             uint32
	MethodLen, PathLen, HostLen, QLen uint16
	Pad                               uint32
	Method                            [16]byte
	Path                              [256]byte
	Host                              [128]byte
	Query                             [128]byte
}

func encode(fields ...any) []byte {
	var b bytes.Buffer
	for _, f := range fields {
		if err := binary.Write(&b, binary.NativeEndian, f); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

func tupleOf(local, remote string) tupleRecord {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	t := tupleRecord{Family: afInet, LocalPort: l.Port(), RemotePort: r.Port()}
	copy(t.LocalAddr[:], l.Addr().AsSlice())
	copy(t.RemoteAddr[:], r.Addr().AsSlice())
	return t
}

func dataRec(pid uint32, conn uint64, dir events.Direction, payload string) []byte {
	return encode(dataRecord{
		Hdr:  recordHeader{Type: wire.EventData, PID: pid, TID: pid},
		Conn: conn, Dir: uint32(dir), Size: uint32(len(payload)), Captured: uint32(len(payload)), FD: 7,
	}, []byte(payload))
}

func bindRec(pid uint32, conn uint64, flags uint32, t tupleRecord) []byte {
	return encode(bindRecord{Hdr: recordHeader{Type: wire.EventBind, PID: pid, TID: pid}, Conn: conn, FD: 7, Flags: flags, Tuple: t})
}

// startRec is a Go server request's start on socket fd, served by
// goroutine g (net/http: one goroutine per connection).
func startRec(pid uint32, fd int32, g uint64, t tupleRecord) []byte {
	return encode(startRecord{
		Hdr:  recordHeader{Type: wire.EventRequestStart, PID: pid, TID: pid},
		Kind: gohttpServer, FD: fd, Goroutine: g, Major: 1, Minor: 1, Tuple: t, HeaderLookup: headerAbsent,
	})
}

func endRec(pid uint32, method, path, host string) []byte {
	r := endRecord{
		Hdr:  recordHeader{Type: wire.EventRequestEnd, PID: pid, TID: pid},
		Kind: gohttpServer, Status: 200, RequestSize: 0, ResponseSize: 13,
		MethodLen: uint16(len(method)), PathLen: uint16(len(path)), HostLen: uint16(len(host)),
	}
	copy(r.Method[:], method)
	copy(r.Path[:], path)
	copy(r.Host[:], host)
	return encode(r)
}

const (
	pidTLS, pidGo, pidPlain = 1001, 1002, 1003
	connsPerSource          = 8
	httpResponse            = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
)

// pipeline is the agent's user-space pipeline with its exporter sending to
// client.
type pipeline struct {
	wiring
	goh     *gohttp.Collector
	ts      uint64
	setup   [][]byte // bind records, replayed once
	tls     [connsPerSource][][]byte
	plain   [connsPerSource][][]byte
	goStart [connsPerSource][]byte
	goEnd   []byte
	nextID  uint64
	// sources is how many of the three sources request rotates over:
	// 3 all, 1 the Go net/http server only (the path of make bench
	// MODE=go).
	sources int
	// rate paces the requests (per second; 0: as fast as they go), for a
	// profile like the agent's under load: exports and garbage
	// collections as far apart as there.
	rate int
	// rings, when set (withRings), are the progress of the agent's rings
	// as the correlator knows them: records are stamped with the clock,
	// every span of a server on loopback is held until the rings are read
	// past its end, and Run's tick lets the held spans out, as in the
	// agent. Without them nothing is held: the spans leave as they end.
	rings []*ktime.Progress
	clock ktime.MonoClock // the records' stamps with rings (no system call)
}

// ringsBatch is how many requests make one read of the ring (withRings):
// the Go server's records of some 20 µs each, about what a reader finds
// at a drain under make bench MODE=go.
const ringsBatch = 64

// withRings gives the correlator the agent's three rings (Go net/http,
// the busy one, then OpenSSL and crypto/tls, which carry nothing under
// make bench MODE=go) and runs its Run until the benchmark ends. The idle
// rings are read as their readers read them: found empty at each beat of
// their timer (collectors/loader.DefaultPollInterval), and moved on to then.
func (p *pipeline) withRings(tb testing.TB) {
	for range 3 {
		p.rings = append(p.rings, p.corr.Ring())
	}
	p.clock = ktime.NewMonoClock()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = p.corr.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		p.idleRings(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// idleRings reads the idle rings (all but the first) at every beat until
// ctx is done, as their readers do: an empty ring holds the time its
// reader looked (internal/ring's watermark).
func (p *pipeline) idleRings(ctx context.Context) {
	t := beat.NewTicker(loader.DefaultPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, r := range p.rings[1:] {
				r.Advance(p.clock.Now())
				r.Caught()
			}
			t.Rearm()
		}
	}
}

// readRings records that the busy ring has been read up to at, as its
// reader's watermark does after a drain, and says so (internal/ring).
func (p *pipeline) readRings(at uint64) {
	p.rings[0].Advance(at)
	p.rings[0].Caught()
}

type procs map[uint32]*span.Process

func (p procs) Process(pid uint32) *span.Process { return p[pid] }

func process(pid uint32, name string) *span.Process {
	return &span.Process{PID: pid, ServiceName: name, Attributes: []attribute.KeyValue{
		attribute.Int64("process.pid", int64(pid)),
		attribute.String("process.executable.name", name),
		attribute.String("host.name", "node-1"),
	}}
}

// wiring is the agent's user-space pipeline as Run wires it: the
// correlator exporting to the OTLP exporter (sending to a test client) and
// the RED metrics, fed by the collectors' record decoder.
type wiring struct {
	corr    *correlator.Correlator
	exp     span.Exporter
	reg     *prometheus.Registry
	records collectors.Records
}

func newWiring(tb testing.TB, client otlptrace.Client, resolver procs) wiring {
	tb.Helper()
	reg := prometheus.NewRegistry()
	o, err := otlp.New(context.Background(), otlp.Config{Registerer: reg, Client: client})
	if err != nil {
		tb.Fatal(err)
	}
	red, err := metrics.NewHTTP(metrics.HTTPConfig{}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	exp := exporters.NewMulti(o, red)
	corr, err := correlator.New(correlator.Config{BindGrace: correlator.DefaultBindGrace}, exp, resolver, nil, reg)
	if err != nil {
		tb.Fatal(err)
	}
	read := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "read"}, []string{"type"})
	return wiring{corr: corr, exp: exp, reg: reg, records: collectors.Records{Sink: corr, Clock: ktime.NewClock(), Read: read}}
}

func newPipeline(tb testing.TB, client otlptrace.Client) *pipeline {
	tb.Helper()
	resolver := procs{pidTLS: process(pidTLS, "nginx"), pidGo: process(pidGo, "hello-go"), pidPlain: process(pidPlain, "python3")}
	p := &pipeline{wiring: newWiring(tb, client, resolver), ts: 1e12, sources: 3}
	p.goh = gohttp.New(gohttp.Config{}, p.corr, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	for i := range connsPerSource {
		port := 50000 + i
		tlsConn, plainConn := uint64(0x7f0000+i), uint64(0x8f0000+i)
		p.setup = append(p.setup,
			bindRec(pidTLS, tlsConn, 0, tupleOf("127.0.0.1:443", fmt.Sprintf("127.0.0.1:%d", port))),
			bindRec(pidPlain, plainConn, bindPlaintext, tupleOf("127.0.0.1:8000", fmt.Sprintf("127.0.0.1:%d", port))))
		p.tls[i] = [][]byte{
			dataRec(pidTLS, tlsConn, events.Read, fmt.Sprintf("GET /users/%d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n", 1000+i)),
			dataRec(pidTLS, tlsConn, events.Write, httpResponse),
		}
		p.plain[i] = [][]byte{
			dataRec(pidPlain, plainConn, events.Read, fmt.Sprintf("POST /api/orders/%d/items HTTP/1.1\r\nHost: shop.local:8000\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}", 77+i)),
			dataRec(pidPlain, plainConn, events.Write, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
		}
		p.goStart[i] = startRec(pidGo, int32(10+i), 0xc000100000+uint64(i)<<12, tupleOf("127.0.0.1:8443", fmt.Sprintf("127.0.0.1:%d", port)))
	}
	p.goEnd = endRec(pidGo, "GET", "/hello", "localhost:8443")
	for _, rec := range p.setup {
		p.stamp(rec)
		p.records.Decode(rec)
	}
	return p
}

func (p *pipeline) stamp(rec []byte) {
	p.ts += 1000
	if p.rings != nil {
		p.ts = p.clock.Now() // the rings' progress is on this clock
	}
	binary.NativeEndian.PutUint64(rec, p.ts)
}

// offID is where a gohttp start or end record holds the request's ID.
const offID = 24

// request replays the records of request i.
func (p *pipeline) request(i int) {
	if p.sources == 1 {
		i = 3*i + 1 // the Go server's requests only
	}
	c := (i / 3) % connsPerSource
	switch i % 3 {
	case 0:
		for _, rec := range p.tls[c] {
			p.stamp(rec)
			p.records.Decode(rec)
		}
	case 1:
		p.nextID++
		binary.NativeEndian.PutUint64(p.goStart[c][offID:], p.nextID)
		binary.NativeEndian.PutUint64(p.goEnd[offID:], p.nextID)
		p.stamp(p.goStart[c])
		p.goh.Decode(p.goStart[c])
		p.stamp(p.goEnd)
		p.goh.Decode(p.goEnd)
	case 2:
		for _, rec := range p.plain[c] {
			p.stamp(rec)
			p.records.Decode(rec)
		}
	}
}

// countingClient is an OTLP transport that marshals each request with the
// gRPC client's codec and counts the spans and bytes, sending nothing.
type countingClient struct {
	mu    sync.Mutex
	codec encoding.CodecV2
	spans atomic.Int64
	bytes atomic.Int64
	// keep says to keep the last request in last (TestPipeline), keepAll
	// every request in all (TestPipelineRedis).
	keep, keepAll bool
	last          []byte
	all           [][]byte
}

func (c *countingClient) Start(context.Context) error { return nil }
func (c *countingClient) Stop(context.Context) error  { return nil }

func (c *countingClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	bs, err := c.codec.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err != nil {
		return err
	}
	if c.keep || c.keepAll {
		c.last = bs.Materialize()
	}
	if c.keepAll {
		c.all = append(c.all, c.last)
	}
	c.bytes.Add(int64(bs.Len()))
	bs.Free()
	c.spans.Add(int64(countSpans(rss)))
	return nil
}

func countSpans(rss []*tracepb.ResourceSpans) int {
	n := 0
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans) + encodedSpans(ss.ProtoReflect().GetUnknown())
		}
	}
	return n
}

// encodedSpans counts the spans (field 2) among a ScopeSpans' unknown
// fields: the exporter hands its spans over encoded.
func encodedSpans(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return -1
		}
		m := protowire.ConsumeFieldValue(num, typ, b[l:])
		if m < 0 {
			return -1
		}
		if num == 2 {
			n++
		}
		b = b[l+m:]
	}
	return n
}

// countingReceiver is an OTLP gRPC trace service that counts the spans it
// receives without decoding them (rawCodec): the benchmark's CPU is then
// the agent's and the gRPC transport's, not a receiver's unmarshalling
// (77 allocations per span).
type countingReceiver struct {
	spans atomic.Int64
}

// traceService is the OTLP trace service's one method, served by a
// countingReceiver.
var traceService = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req rawRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			srv.(*countingReceiver).spans.Add(int64(req.spans))
			return rawRequest{}, nil
		},
	}},
}

// rawRequest is an export request as rawCodec reads it: its spans' count.
type rawRequest struct{ spans int }

// rawCodec is a server codec that counts a request's spans by walking its
// bytes (copied into a buffer it keeps: gRPC's shared pool would clear and
// page-fault a new one at each request, a receiver's cost), and writes
// every response as the empty message.
type rawCodec struct {
	mu  sync.Mutex
	buf []byte
}

func (*rawCodec) Name() string                         { return "proto" }
func (*rawCodec) Marshal(any) (mem.BufferSlice, error) { return nil, nil }

func (c *rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*rawRequest)
	if !ok {
		return fmt.Errorf("rawCodec: unmarshal into %T", v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = c.buf[:0]
	for _, b := range data {
		c.buf = append(c.buf, b.ReadOnlyData()...)
	}
	req.spans = 0
	// ExportTraceServiceRequest.resource_spans (1) → ResourceSpans.scope_spans (2) → ScopeSpans.spans (2).
	return eachField(c.buf, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { req.spans++; return nil })
		})
	})
}

// eachField calls fn with the bytes of each length-delimited field num of
// the message b.
func eachField(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		m := protowire.ConsumeFieldValue(n, typ, b[l:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if n == num && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[l:])
			if err := fn(v); err != nil {
				return err
			}
		}
		b = b[l+m:]
	}
	return nil
}

// maxBacklog is how far the benchmark lets the producer run ahead of the
// transport: well inside the exporter's queue, so that nothing is dropped
// and every span is measured all the way to bytes.
const maxBacklog = otlp.DefaultQueueSize / 2

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runPipeline replays n requests and waits until delivered reports every
// span, failing on a lost one.
func runPipeline(b *testing.B, p *pipeline, delivered func() int64) {
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	var mark uint64
	for i := range b.N {
		if p.rings != nil && i%ringsBatch == 0 {
			p.readRings(mark)
			mark = p.clock.Now()
		}
		p.request(i)
		if p.rate > 0 && i%64 == 63 {
			due := start.Add(time.Duration(i+1) * time.Second / time.Duration(p.rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		if i%256 == 255 {
			for int64(i+1)-delivered() > maxBacklog {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p.rings != nil {
		p.readRings(p.clock.Now())
	}
	p.corr.Flush() // the spans still held, as the agent does when it stops
	if err := p.exp.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	for delivered() < int64(b.N) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if got := delivered(); got != int64(b.N) {
		b.Fatalf("%d spans delivered, want %d", got, b.N)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/span")
}

// BenchmarkPipeline measures the user-space pipeline per span, to an
// in-process transport that marshals what the gRPC client would send
// (fake), and with the exporter's gRPC client to a counting receiver in the
// same process (grpc; its CPU includes the receiver's). ns/op is per span; cpu-ns/span is the
// process's CPU time (all goroutines) per span.
func BenchmarkPipeline(b *testing.B) {
	b.Run("fake", func(b *testing.B) {
		client := &countingClient{codec: encoding.GetCodecV2("proto")}
		p := newPipeline(b, client)
		runPipeline(b, p, client.spans.Load)
		b.ReportMetric(float64(client.bytes.Load())/float64(b.N), "bytes/span")
	})
	b.Run("fake-gohttp", func(b *testing.B) {
		client := &countingClient{codec: encoding.GetCodecV2("proto")}
		p := newPipeline(b, client)
		p.sources = 1
		runPipeline(b, p, client.spans.Load)
		b.ReportMetric(float64(client.bytes.Load())/float64(b.N), "bytes/span")
	})
	// The same as fake-gohttp-rings-25k without rings, paced alike: what
	// the pacing itself costs.
	b.Run("fake-gohttp-25k", func(b *testing.B) {
		client := &countingClient{codec: encoding.GetCodecV2("proto")}
		p := newPipeline(b, client)
		p.sources, p.rate = 1, 25000
		runPipeline(b, p, client.spans.Load)
	})
	// The Go server's requests as the agent sees them under make bench
	// MODE=go: stamped with the clock, read from rings whose progress the
	// correlator waits for, every span held until the rings pass it
	// (a server on loopback whose client may be traced too), at the
	// agent's rate.
	b.Run("fake-gohttp-rings-25k", func(b *testing.B) {
		client := &countingClient{codec: encoding.GetCodecV2("proto")}
		p := newPipeline(b, client)
		p.sources, p.rate = 1, 25000
		p.withRings(b)
		runPipeline(b, p, client.spans.Load)
	})
	// A redis-server's spans under redis-benchmark -t get,set -c 50 (no
	// pipelining) as the sockets collector sends them: one data record
	// per command read, one per reply written, and a ring whose progress
	// holds each loopback span as the agent's reader does.
	b.Run("fake-redis", func(b *testing.B) { runSockets(b, newSockClient(), "redis-getset-held") })
	b.Run("grpc", func(b *testing.B) { runGRPC(b, func(*pipeline) {}) })
	// The Go server's requests at 25,000 per second, about the agent's
	// rate under make bench MODE=go.
	b.Run("grpc-gohttp-25k", func(b *testing.B) {
		runGRPC(b, func(p *pipeline) { p.sources, p.rate = 1, 25000 })
	})
}

// runGRPC runs the pipeline, set up by setup, with the exporter's gRPC
// client sending to a counting receiver in the same process.
func runGRPC(b *testing.B, setup func(*pipeline)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(&rawCodec{}))
	recv := &countingReceiver{}
	srv.RegisterService(&traceService, recv)
	go srv.Serve(ln)
	defer srv.Stop()
	// The exporter's own gRPC client, from the environment as in the
	// agent.
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	p := newPipeline(b, nil)
	setup(p)
	runPipeline(b, p, recv.spans.Load)
}

// TestPipeline checks that the benchmark's records make the spans it
// claims to measure: each request one span, all of them exported.
func TestPipeline(t *testing.T) {
	client := &countingClient{codec: encoding.GetCodecV2("proto"), keep: true}
	p := newPipeline(t, client)
	const n = 300
	for i := range n {
		p.request(i)
	}
	if err := p.exp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := client.spans.Load(); got != n {
		t.Fatalf("%d spans exported, want %d", got, n)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(client.last, &req); err != nil {
		t.Fatal(err)
	}
	names := map[string]map[string]int{}
	for _, rs := range req.ResourceSpans {
		svc := serviceName(rs)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				if names[svc] == nil {
					names[svc] = map[string]int{}
				}
				names[svc][s.Name]++
				// Span records are pooled: a record reused before the
				// exporter encoded it would mix two requests' fields.
				for _, kv := range s.Attributes {
					if kv.Key == "http.request.method" && !strings.HasPrefix(s.Name, kv.Value.GetStringValue()+" ") {
						t.Errorf("%s span %q has method %q", svc, s.Name, kv.Value.GetStringValue())
					}
					if kv.Key == "url.path" && svc == "hello-go" && kv.Value.GetStringValue() != "/hello" {
						t.Errorf("%s span %q has url.path %q", svc, s.Name, kv.Value.GetStringValue())
					}
				}
			}
		}
	}
	want := map[string]map[string]int{
		"nginx":    {"GET /users/{id}": n / 3},
		"hello-go": {"GET /hello": n / 3},
		"python3":  {"POST /api/orders/{id}/items": n / 3},
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("spans by service and name %v, want %v", names, want)
	}
}

// TestPipelineRedis checks that BenchmarkPipeline's fake-redis records make
// the spans it claims to measure: one SERVER span per command, SETs then
// GETs as redis-benchmark sends them, each named and described as
// redis-server's spans are.
func TestPipelineRedis(t *testing.T) {
	client := &countingClient{codec: encoding.GetCodecV2("proto"), keepAll: true}
	p := newSockPipeline(t, client, "redis-getset-held")
	const n = 2*redisRun + 100 // SETs, GETs, SETs again
	for i := range n {
		p.round(i)
	}
	p.drain()
	if err := p.exp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := client.spans.Load(); got != n {
		t.Fatalf("%d spans exported, want %d", got, n)
	}
	got := map[string]int{}
	for _, bs := range client.all {
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(bs, &req); err != nil {
			t.Fatal(err)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					got[redisSpanKey(rs, s)]++
				}
			}
		}
	}
	// A database's SERVER span names its server, not its client.
	const attrs = "db.operation.name=%s db.query.text=%s db.system.name=redis server.address=127.0.0.1 server.port=6379"
	want := map[string]int{
		"redis-server SERVER SET 127.0.0.1:6379 " + fmt.Sprintf(attrs, "SET", "SET key:__rand_int__ ?"): redisRun + 100,
		"redis-server SERVER GET 127.0.0.1:6379 " + fmt.Sprintf(attrs, "GET", "GET key:__rand_int__"):   redisRun,
	}
	if len(got) != len(want) {
		t.Errorf("%d kinds of span, want %d", len(got), len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%d spans %q, want %d", got[k], k, w)
		}
	}
	for k, g := range got {
		if want[k] == 0 {
			t.Errorf("%d unexpected spans %q", g, k)
		}
	}
}

// redisSpanKey describes span s of resource rs: its service, kind, name,
// status when not unset, and attributes sorted by key.
func redisSpanKey(rs *tracepb.ResourceSpans, s *tracepb.Span) string {
	svc := serviceName(rs)
	kind := strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_")
	var kvs []string
	for _, kv := range s.Attributes {
		v := kv.Value.GetStringValue()
		if _, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
			v = fmt.Sprint(kv.Value.GetIntValue())
		}
		kvs = append(kvs, kv.Key+"="+v)
	}
	sort.Strings(kvs)
	key := svc + " " + kind + " " + s.Name + " " + strings.Join(kvs, " ")
	if s.Status != nil && s.Status.Code != tracepb.Status_STATUS_CODE_UNSET {
		key += " status=" + s.Status.Code.String()
	}
	if s.EndTimeUnixNano <= s.StartTimeUnixNano {
		key += " (ends before it starts)"
	}
	return key
}

// serviceName is the service.name of rs's resource ("" without one).
func serviceName(rs *tracepb.ResourceSpans) string {
	svc := ""
	for _, kv := range rs.Resource.Attributes {
		if kv.Key == "service.name" {
			svc = kv.Value.GetStringValue()
		}
	}
	return svc
}
