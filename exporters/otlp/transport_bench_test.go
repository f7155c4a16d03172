package otlp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// envReceiver makes the test binary a receiver process (TestMain): the
// transport benchmark sends to it, so that the benchmark's CPU time is the
// exporter's and its gRPC client's only, as in the agent, and not the
// receiver's too.
const envReceiver = "PERISCOPE_OTLP_BENCH_RECEIVER"

func TestMain(m *testing.M) {
	if os.Getenv(envReceiver) == "1" {
		if err := serveDiscard(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// discardCodec reads any request without decoding it and writes every
// response as the empty message (ExportTraceServiceResponse with no
// partial success).
type discardCodec struct{}

func (discardCodec) Name() string                         { return "proto" }
func (discardCodec) Marshal(any) (mem.BufferSlice, error) { return nil, nil }
func (discardCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

// serveDiscard accepts OTLP/gRPC exports on a loopback port, which it
// writes to out, and answers each with success until in is closed.
func serveDiscard(in io.Reader, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(discardCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var req struct{}
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			return stream.SendMsg(&req)
		}))
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	if _, err := fmt.Fprintln(out, ln.Addr()); err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	_, err = io.Copy(io.Discard, in)
	return err
}

// startReceiver runs the test binary as a receiver process and returns its
// address; it stops when the benchmark ends.
func startReceiver(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envReceiver+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("receiver process: %v", err)
	}
	return strings.TrimSpace(addr)
}

// BenchmarkTransport: the exporter with its real gRPC client (configured
// from OTEL_* as in the agent) sending to a receiver in another process,
// for the CPU per span of what the agent pays for the export, transport
// included: cpu-ns/span is this process's CPU time per span (the
// receiver's is not in it, unlike in the agent package's
// BenchmarkPipeline/grpc*). Spans are the http shape of BenchmarkExport,
// as fast as they go (unpaced) or paced at 25,000 per second (the Go
// server's rate under make bench MODE=go: a sleep every 64 spans), in
// batches of several sizes; switches/kspan counts the process's context
// switches per 1,000 spans (its threads parked and woken). pacing-only is
// the paced loop without the exporter: the CPU the pacing's own sleeps and
// wake-ups cost, to take off the paced figures.
func BenchmarkTransport(b *testing.B) {
	const rate = 25000
	b.Run(fmt.Sprintf("pacing-only/rate=%d", rate), func(b *testing.B) {
		cpu0, cs0 := cpuTime(), contextSwitches()
		b.ResetTimer()
		pace(b.N, rate, func(int) {})
		b.StopTimer()
		reportSince(b, cpu0, cs0)
	})
	for _, batch := range []int{512, DefaultBatchSize, 2 * DefaultBatchSize} {
		b.Run(fmt.Sprintf("batch=%d/unpaced", batch), func(b *testing.B) { benchTransport(b, batch, 0) })
		b.Run(fmt.Sprintf("batch=%d/rate=%d", batch, rate), func(b *testing.B) { benchTransport(b, batch, rate) })
	}
}

// contextSwitches is how many times this process's threads have left the
// CPU (voluntarily or not): a thread parked for want of work and woken for
// a goroutine hand-off counts once.
func contextSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}

// reportSince reports the CPU time per span and the context switches per
// 1,000 spans since cpu0 and cs0.
func reportSince(b *testing.B, cpu0 time.Duration, cs0 int64) {
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/span")
	b.ReportMetric(float64(contextSwitches()-cs0)*1000/float64(b.N), "switches/kspan")
}

// pace calls fn n times, at most rate times per second (0: unpaced),
// sleeping every 64 calls as the agent package's BenchmarkPipeline does.
func pace(n, rate int, fn func(i int)) {
	start := time.Now()
	for i := range n {
		fn(i)
		if rate > 0 && i%64 == 63 {
			if d := time.Until(start.Add(time.Duration(i+1) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
	}
}

func benchTransport(b *testing.B, batch, rate int) {
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+startReceiver(b))
	reg := prometheus.NewRegistry()
	e, err := New(context.Background(), Config{Registerer: reg, BatchSize: batch})
	if err != nil {
		b.Fatal(err)
	}
	spans := httpSpans(3 * 1024)
	b.ReportAllocs()
	cpu0, cs0 := cpuTime(), contextSwitches()
	b.ResetTimer()
	pace(b.N, rate, func(i int) {
		e.Export(spans[i%len(spans)])
		// Well inside the queue: every span is exported, none dropped.
		for i%256 == 255 && e.queued.Load() > int64(4*batch) {
			time.Sleep(50 * time.Microsecond)
		}
	})
	if err := e.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportSince(b, cpu0, cs0)
	if exported := metricB(b, reg, "periscope_spans_exported_total"); exported != float64(b.N) {
		b.Fatalf("exported %v of %d spans", exported, b.N)
	}
}
