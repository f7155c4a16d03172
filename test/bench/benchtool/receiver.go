package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // OTEL_EXPORTER_OTLP_COMPRESSION=gzip
	"google.golang.org/protobuf/encoding/protowire"
)

// The counting OTLP receiver: `benchtool receive` runs in a process of its
// own (the agent's exports cross a real gRPC connection, as to a
// collector), accepts OTLP/gRPC trace exports, keeps nothing but counts,
// and serves them as JSON on a local HTTP address. The driver reads the
// counts before and after each round.

// recvCounts is what the receiver counted since it started.
type recvCounts struct {
	Exports       uint64 `json:"exports"`        // Export calls
	ResourceSpans uint64 `json:"resource_spans"` // ResourceSpans entries
	Spans         uint64 `json:"spans"`
	ServerSpans   uint64 `json:"server_spans"` // SPAN_KIND_SERVER
	Bytes         uint64 `json:"bytes"`        // protobuf size of the requests, uncompressed
}

func (c recvCounts) sub(d recvCounts) recvCounts {
	return recvCounts{c.Exports - d.Exports, c.ResourceSpans - d.ResourceSpans, c.Spans - d.Spans, c.ServerSpans - d.ServerSpans, c.Bytes - d.Bytes}
}

// countingTraceServer counts what arrives. It never decodes a request into
// protobuf structs: exportCodec walks the wire bytes (protowire), so that
// receiving costs a fraction of what building and sending cost the agent.
type countingTraceServer struct {
	exports, resources, spans, server, bytes atomic.Uint64
}

func (s *countingTraceServer) add(c recvCounts) {
	s.exports.Add(c.Exports)
	s.resources.Add(c.ResourceSpans)
	s.spans.Add(c.Spans)
	s.server.Add(c.ServerSpans)
	s.bytes.Add(c.Bytes)
}

func (s *countingTraceServer) counts() recvCounts {
	return recvCounts{s.exports.Load(), s.resources.Load(), s.spans.Load(), s.server.Load(), s.bytes.Load()}
}

// traceServiceDesc is OTLP's TraceService/Export, served with
// exportCodec: the request is decoded into its counts, the response is an
// empty ExportTraceServiceResponse (zero bytes).
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var c recvCounts
			if err := dec(&c); err != nil {
				return nil, err
			}
			srv.(*countingTraceServer).add(c)
			return emptyResponse{}, nil
		},
	}},
	Metadata: "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

type emptyResponse struct{}

// exportCodec unmarshals an ExportTraceServiceRequest into recvCounts.
type exportCodec struct{}

func (exportCodec) Name() string { return "proto" }

func (exportCodec) Marshal(v any) ([]byte, error) {
	if _, ok := v.(emptyResponse); ok {
		return nil, nil
	}
	return nil, fmt.Errorf("exportCodec cannot marshal %T", v)
}

func (exportCodec) Unmarshal(b []byte, v any) error {
	c, ok := v.(*recvCounts)
	if !ok {
		return fmt.Errorf("exportCodec cannot unmarshal into %T", v)
	}
	var err error
	*c, err = scanExport(b)
	return err
}

// OTLP field numbers (opentelemetry/proto/trace/v1/trace.proto and the
// collector's trace_service.proto).
const (
	fieldResourceSpans protowire.Number = 1 // ExportTraceServiceRequest
	fieldScopeSpans    protowire.Number = 2 // ResourceSpans
	fieldSpans         protowire.Number = 2 // ScopeSpans
	fieldSpanKind      protowire.Number = 6 // Span, an enum
	spanKindServer                      = 2
)

// scanExport counts the resource spans, spans and server spans of an
// encoded ExportTraceServiceRequest without decoding it.
func scanExport(b []byte) (recvCounts, error) {
	c := recvCounts{Exports: 1, Bytes: uint64(len(b))}
	err := eachField(b, fieldResourceSpans, func(rs []byte) error {
		c.ResourceSpans++
		return eachField(rs, fieldScopeSpans, func(ss []byte) error {
			return eachField(ss, fieldSpans, func(sp []byte) error {
				c.Spans++
				if kind, ok := varintField(sp, fieldSpanKind); ok && kind == spanKindServer {
					c.ServerSpans++
				}
				return nil
			})
		})
	})
	return c, err
}

// eachField calls f with the value of every length-delimited field num of
// the message b.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}

// varintField is the last varint field num of the message b.
func varintField(b []byte, num protowire.Number) (uint64, bool) {
	var v uint64
	found := false
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return v, found
		}
		b = b[l:]
		if n == num && typ == protowire.VarintType {
			x, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return v, found
			}
			v, found, b = x, true, b[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return v, found
		}
		b = b[l:]
	}
	return v, found
}

// receiveMain is `benchtool receive`: it prints "grpc=ADDR http=ADDR" once
// both listen, then serves until SIGTERM.
func receiveMain(args []string) int {
	fs := flag.NewFlagSet("benchtool receive", flag.ContinueOnError)
	grpcAddr := fs.String("grpc", "127.0.0.1:0", "OTLP/gRPC listen address")
	httpAddr := fs.String("http", "127.0.0.1:0", "counts (JSON) listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// One export at a time is plenty, and a big heap is cheaper than
	// collecting it: the receiver takes as little CPU as it can from the
	// cores the application and the agent share.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(400)
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receive:", err)
		return 1
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receive:", err)
		return 1
	}
	ts := &countingTraceServer{}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.ForceServerCodec(exportCodec{}))
	gs.RegisterService(&traceServiceDesc, ts)
	mux := http.NewServeMux()
	mux.HandleFunc("/counts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ts.counts())
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = gs.Serve(gl) }()
	go func() { _ = hs.Serve(hl) }()
	fmt.Printf("grpc=%s http=%s\n", gl.Addr(), hl.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	gs.Stop()
	_ = hs.Close()
	return 0
}

// receiver is the driver's handle on a `benchtool receive` process.
type receiver struct {
	cmd            *exec.Cmd
	grpcAddr, http string
	pidFile        string
	exited         chan struct{}
}

// startReceiver runs this executable as `benchtool receive` in its own
// process group (run.sh kills it through pidDir/receiver if we die).
func startReceiver(pidDir, logPath string, args ...string) (*receiver, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	r := &receiver{cmd: exec.Command(self, append([]string{"receive"}, args...)...), pidFile: filepath.Join(pidDir, "receiver"), exited: make(chan struct{})}
	r.cmd.Stderr = log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the OTLP receiver: %w", err)
	}
	_ = os.WriteFile(r.pidFile, []byte(strconv.Itoa(r.cmd.Process.Pid)+"\n"), 0o644)
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
	}()
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	select {
	case l := <-line:
		for _, f := range strings.Fields(l) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "grpc":
				r.grpcAddr = v
			case "http":
				r.http = v
			}
		}
	case <-time.After(15 * time.Second):
	}
	if r.grpcAddr == "" || r.http == "" {
		r.stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("the OTLP receiver did not start: %s", b)
	}
	return r, nil
}

func (r *receiver) pid() int { return r.cmd.Process.Pid }

// agentEnv points the agent's OTLP trace exporter at the receiver.
func (r *receiver) agentEnv() []string {
	return []string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" + r.grpcAddr,
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc",
	}
}

func (r *receiver) counts() (recvCounts, error) {
	var c recvCounts
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + r.http + "/counts")
	if err != nil {
		return c, fmt.Errorf("OTLP receiver counts: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return c, fmt.Errorf("OTLP receiver counts: %w", err)
	}
	return c, nil
}

func (r *receiver) stop() {
	if r == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-r.pid(), syscall.SIGKILL)
		<-r.exited
	}
	_ = os.Remove(r.pidFile)
}
