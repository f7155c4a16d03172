package otlp

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/span"
)

// benchClient is a transport that takes each request as fast as it can:
// with marshal, it encodes the request as the gRPC codec would (into a
// reused buffer), which is the transport's share of the CPU per span.
type benchClient struct {
	marshal bool
	buf     []byte
	bytes   atomic.Int64
}

func (c *benchClient) Start(context.Context) error { return nil }
func (c *benchClient) Stop(context.Context) error  { return nil }
func (c *benchClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	if !c.marshal {
		return nil
	}
	var err error
	c.buf, err = proto.MarshalOptions{}.MarshalAppend(c.buf[:0], &coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	c.bytes.Add(int64(len(c.buf)))
	return err
}

// BenchmarkExport: the exporter's CPU per span, from Export to the request
// handed to the transport (discard), and with the transport's protobuf
// encoding of the request (marshal). One op is one span: of makeSpans' mix
// (server span with 6 attributes, client span with a string slice and an
// event, error span with a bool and a float), or (http) of the shape the
// agent exports most, an nginx server span and a curl client span of 14
// string and integer attributes each.
// Every span must be exported: a drop would make the op cheaper. The
// producer stays at most two batches ahead of the sender, as in the agent's
// steady state (a deep backlog would allocate batches instead of reusing
// them). cpu-ns/span is the process's CPU time (both goroutines, getrusage)
// per span.
func BenchmarkExport(b *testing.B) {
	for _, tc := range []struct {
		name    string
		marshal bool
		spans   []*span.Span
	}{
		{"discard", false, makeSpans(3*1024, 12)},
		{"marshal", true, makeSpans(3*1024, 12)},
		{"http", true, httpSpans(3 * 1024)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &benchClient{marshal: tc.marshal}
			reg := prometheus.NewRegistry()
			// MaxInFlight 1: one sender, so the buffer of benchClient
			// is used by one goroutine.
			e, err := New(context.Background(), Config{Registerer: reg, Client: c, MaxInFlight: 1, BatchTimeout: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			spans := tc.spans
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				e.Export(spans[i%len(spans)])
				if i%256 == 255 {
					for e.queued.Load() > 2*DefaultBatchSize {
						time.Sleep(20 * time.Microsecond)
					}
				}
			}
			if err := e.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/span")
			full := metricB(b, reg, "periscope_spans_dropped_total")
			exported := metricB(b, reg, "periscope_spans_exported_total")
			if full != 0 || exported != float64(b.N) {
				b.Fatalf("exported %v of %d spans, dropped %v", exported, b.N, full)
			}
		})
	}
}

// metricB sums a counter. The benchmark file uses nothing of the other
// test files, so that export-ab.sh can build it against older commits
// (whose tests' helpers differ).
func metricB(b *testing.B, reg *prometheus.Registry, name string) float64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// httpSpans returns n spans as the agent builds them for curl fetching
// from nginx over TLS: pairs of a server span and its client parent.
func httpSpans(n int) []*span.Span {
	nginx := &span.Process{PID: 21448, ServiceName: "nginx"}
	curl := &span.Process{PID: 21525, ServiceName: "curl"}
	start := time.Date(2026, 12, 6, 22, 29, 4, 469483824, time.UTC)
	out := make([]*span.Span, 0, n)
	for i := 0; len(out) < n; i++ {
		tid := trace.TraceID{0x5b, byte(i), byte(i >> 8), 0xf1, 0x56, 0x2d, 0x19, 0x45, 0xc2, 0xa9, 0x9f, 0xfe, 0x42, 0x24, 0x8e, 0xcd}
		cid, sid := trace.SpanID{0x47, byte(i), byte(i >> 8), 1}, trace.SpanID{0x13, byte(i), byte(i >> 8), 2}
		path := fmt.Sprintf("/index.html?round=1&n=%d", i)
		common := []attribute.KeyValue{
			attribute.Int("http.request.body.size", 0),
			attribute.String("http.request.method", "GET"),
			attribute.Int("http.response.body.size", 40),
			attribute.Int("http.response.status_code", 200),
			attribute.String("network.peer.address", "127.0.0.1"),
			attribute.String("network.protocol.version", "1.1"),
			attribute.String("server.address", "127.0.0.1"),
			attribute.Int("server.port", 44673),
			attribute.String("url.path", "/index.html"),
			attribute.String("url.scheme", "https"),
			attribute.String("user_agent.original", "curl/7.88.1"),
		}
		client := &span.Span{TraceID: tid, SpanID: cid, Kind: span.Client, Name: "GET /index.html",
			Start: start, End: start.Add(185 * time.Microsecond), Process: curl,
			Attributes: append(slices.Clone(common),
				attribute.Int("network.peer.port", 44673),
				attribute.String("url.full", "https://127.0.0.1:44673"+path),
				attribute.String("url.template", "/index.html"))}
		server := &span.Span{TraceID: tid, SpanID: sid, ParentSpanID: cid, RemoteParent: true, Kind: span.Server,
			Name: "GET /index.html", Start: start.Add(67 * time.Microsecond), End: start.Add(101 * time.Microsecond),
			Process: nginx,
			Attributes: append(slices.Clone(common),
				attribute.String("client.address", "127.0.0.1"),
				attribute.Int("client.port", 57822+i%1000),
				attribute.String("http.route", "/index.html"))}
		out = append(out, client, server)
		start = start.Add(500 * time.Microsecond)
	}
	return out[:n]
}

// BenchmarkAppendSpan: the encoding alone, one goroutine, into a reused
// buffer (the part of BenchmarkExport that depends on the span's content).
func BenchmarkAppendSpan(b *testing.B) {
	for _, tc := range []struct {
		name  string
		spans []*span.Span
	}{{"mix", makeSpans(3*1024, 12)}, {"http", httpSpans(3 * 1024)}} {
		b.Run(tc.name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for i := range b.N {
				if i%512 == 0 {
					buf = buf[:0]
				}
				buf = appendSpan(buf, tc.spans[i%len(tc.spans)])
			}
		})
	}
}
