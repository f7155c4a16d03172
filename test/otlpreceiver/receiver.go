package otlpreceiver

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Receiver is a running OTLP receiver. Its methods are safe for concurrent
// use.
type Receiver struct {
	grpcServer *grpc.Server
	grpcAddr   string
	httpServer *http.Server
	httpAddr   string
	stopOnce   sync.Once

	mu             sync.Mutex
	spans          []Span
	metrics        []Metric
	changed        chan struct{} // closed and replaced on every change
	failCode       codes.Code
	traceRequests  int
	metricRequests int
}

// Start starts a receiver listening on 127.0.0.1 on two free ports, one for
// gRPC and one for HTTP, and stops it when the test ends.
func Start(t testing.TB) *Receiver { return StartOn(t, "127.0.0.1") }

// StartOn is Start listening on host: "0.0.0.0" for agents in other
// network namespaces of the machine (Endpoint then names 0.0.0.0: build
// their endpoint from Port).
func StartOn(t testing.TB, host string) *Receiver {
	t.Helper()
	r, err := start(host)
	if err != nil {
		t.Fatalf("otlpreceiver: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

func start(host string) (*Receiver, error) {
	grpcLis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen for gRPC: %w", err)
	}
	httpLis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		grpcLis.Close()
		return nil, fmt.Errorf("listen for HTTP: %w", err)
	}
	r := &Receiver{
		grpcServer: grpc.NewServer(),
		grpcAddr:   grpcLis.Addr().String(),
		httpAddr:   httpLis.Addr().String(),
		changed:    make(chan struct{}),
	}
	coltracepb.RegisterTraceServiceServer(r.grpcServer, traceService{r: r})
	colmetricpb.RegisterMetricsServiceServer(r.grpcServer, metricsService{r: r})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveTraces)
	mux.HandleFunc("POST /v1/metrics", r.serveMetrics)
	r.httpServer = &http.Server{Handler: mux}

	go r.grpcServer.Serve(grpcLis)
	go r.httpServer.Serve(httpLis)
	return r, nil
}

// Stop stops both servers and closes their connections. It is idempotent;
// Start registers it as a test cleanup.
func (r *Receiver) Stop() {
	r.stopOnce.Do(func() {
		r.grpcServer.Stop()
		r.httpServer.Close()
	})
}

// Endpoint is the gRPC endpoint as a URL, "http://127.0.0.1:PORT": the form
// OTEL_EXPORTER_OTLP_ENDPOINT takes (the http scheme means no TLS).
func (r *Receiver) Endpoint() string { return "http://" + r.grpcAddr }

// Addr is the gRPC listener's "127.0.0.1:PORT".
func (r *Receiver) Addr() string { return r.grpcAddr }

// Port is the gRPC listener's port.
func (r *Receiver) Port() string {
	_, port, _ := net.SplitHostPort(r.grpcAddr)
	return port
}

// HTTPEndpoint is the base URL of the OTLP/HTTP listener,
// "http://127.0.0.1:PORT"; it serves /v1/traces and /v1/metrics.
func (r *Receiver) HTTPEndpoint() string { return "http://" + r.httpAddr }

// Fail makes every following export request fail with code (over HTTP:
// 503 for Unavailable, 429 for ResourceExhausted, 400 for InvalidArgument,
// else 500). codes.OK makes it accept requests again. Failed requests store
// nothing.
func (r *Receiver) Fail(code codes.Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failCode = code
}

// Requests returns how many trace and metrics export requests arrived,
// failed ones included.
func (r *Receiver) Requests() (traces, metrics int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.traceRequests, r.metricRequests
}

// Spans returns the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Metrics returns the metric data points received so far, in arrival order.
func (r *Receiver) Metrics() []Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Metric(nil), r.metrics...)
}

// Reset forgets everything received and the request counts.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans, r.metrics = nil, nil
	r.traceRequests, r.metricRequests = 0, 0
	r.notifyLocked()
}

// WaitForSpans waits until at least n received spans satisfy filter (nil:
// all spans) and returns all that do, which may be more than n. When ctx
// ends first it returns those that matched and an error.
func (r *Receiver) WaitForSpans(ctx context.Context, n int, filter func(Span) bool) ([]Span, error) {
	return waitFor(ctx, r, n, filter, func() []Span { return r.spans })
}

// WaitForMetrics is WaitForSpans for metric data points.
func (r *Receiver) WaitForMetrics(ctx context.Context, n int, filter func(Metric) bool) ([]Metric, error) {
	return waitFor(ctx, r, n, filter, func() []Metric { return r.metrics })
}

func waitFor[T any](ctx context.Context, r *Receiver, n int, filter func(T) bool, items func() []T) ([]T, error) {
	for {
		r.mu.Lock()
		var matched []T
		for _, it := range items() {
			if filter == nil || filter(it) {
				matched = append(matched, it)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if len(matched) >= n {
			return matched, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return matched, fmt.Errorf("otlpreceiver: waiting for %d items, have %d: %w", n, len(matched), ctx.Err())
		}
	}
}

func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// acceptTraces records req unless the receiver is failing.
func (r *Receiver) acceptTraces(req *coltracepb.ExportTraceServiceRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.traceRequests++
	if r.failCode != codes.OK {
		return status.Error(r.failCode, "otlpreceiver: failing on purpose")
	}
	r.spans = append(r.spans, flattenSpans(req.GetResourceSpans())...)
	r.notifyLocked()
	return nil
}

func (r *Receiver) acceptMetrics(req *colmetricpb.ExportMetricsServiceRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metricRequests++
	if r.failCode != codes.OK {
		return status.Error(r.failCode, "otlpreceiver: failing on purpose")
	}
	r.metrics = append(r.metrics, flattenMetrics(req.GetResourceMetrics())...)
	r.notifyLocked()
	return nil
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if err := s.r.acceptTraces(req); err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type metricsService struct {
	colmetricpb.UnimplementedMetricsServiceServer
	r *Receiver
}

func (s metricsService) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	if err := s.r.acceptMetrics(req); err != nil {
		return nil, err
	}
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func (r *Receiver) serveTraces(w http.ResponseWriter, req *http.Request) {
	var msg coltracepb.ExportTraceServiceRequest
	serveHTTP(w, req, &msg, func() error { return r.acceptTraces(&msg) }, &coltracepb.ExportTraceServiceResponse{})
}

func (r *Receiver) serveMetrics(w http.ResponseWriter, req *http.Request) {
	var msg colmetricpb.ExportMetricsServiceRequest
	serveHTTP(w, req, &msg, func() error { return r.acceptMetrics(&msg) }, &colmetricpb.ExportMetricsServiceResponse{})
}

// maxBody bounds an HTTP request body after decompression.
const maxBody = 64 << 20

// serveHTTP decodes an OTLP/HTTP request into msg (protobuf or JSON,
// optionally gzip-compressed), calls accept, and writes resp in the
// request's encoding.
func serveHTTP(w http.ResponseWriter, req *http.Request, msg proto.Message, accept func() error, resp proto.Message) {
	var body io.Reader = req.Body
	if strings.EqualFold(req.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(io.LimitReader(body, maxBody))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	isJSON := strings.HasPrefix(req.Header.Get("Content-Type"), "application/json")
	if isJSON {
		err = protojson.Unmarshal(data, msg)
	} else {
		err = proto.Unmarshal(data, msg)
	}
	if err != nil {
		http.Error(w, "decode request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := accept(); err != nil {
		http.Error(w, err.Error(), httpStatus(status.Code(err)))
		return
	}
	var out []byte
	if isJSON {
		out, err = protojson.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
	} else {
		out, err = proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(out)
}

func httpStatus(c codes.Code) int {
	switch c {
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.InvalidArgument:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
