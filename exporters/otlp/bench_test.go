package otlp

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
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
// encoding of the request (marshal). One op is one span of makeSpans' mix
// (server span with 6 attributes, client span with an event, error span).
// Every span must be exported: a drop would make the op cheaper. The
// producer stays at most two batches ahead of the sender, as in the agent's
// steady state (a deep backlog would allocate batches instead of reusing
// them). cpu-ns/span is the process's CPU time (both goroutines, getrusage)
// per span.
func BenchmarkExport(b *testing.B) {
	for _, tc := range []struct {
		name    string
		marshal bool
	}{{"discard", false}, {"marshal", true}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &benchClient{marshal: tc.marshal}
			reg := prometheus.NewRegistry()
			// MaxInFlight 1: one sender, so the buffer of benchClient
			// is used by one goroutine.
			e, err := New(context.Background(), Config{Registerer: reg, Client: c, MaxInFlight: 1, BatchTimeout: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			spans := makeSpans(3*1024, 12)
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
