package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/span"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// The endpoint and protocol variables (internal/otlpenv reads them).
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// otelEnv lists the variables that could change these tests' outcome.
var otelEnv = []string{
	envEndpoint, envTracesEndpoint, envProtocol, envTracesProtocol, envSampler, envSamplerArg,
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME",
}

// setEnv clears the OTEL_* environment for the test, then sets kv pairs.
func setEnv(t *testing.T, kv ...string) {
	t.Helper()
	for _, k := range otelEnv {
		t.Setenv(k, "")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

// logCounter is a slog handler counting records by level.
type logCounter struct{ warn, info atomic.Int64 }

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Level >= slog.LevelWarn:
		h.warn.Add(1)
	case r.Level >= slog.LevelInfo:
		h.info.Add(1)
	}
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

var (
	procA = &span.Process{PID: 4242, ServiceName: "nginx", Attributes: []attribute.KeyValue{
		attribute.String("host.name", "node-1"),
		attribute.String("process.executable.name", "nginx"),
		attribute.String("service.name", "overridden-by-ServiceName"),
	}}
	procB = &span.Process{PID: 77, ServiceName: "checkout", Attributes: []attribute.KeyValue{
		attribute.Int("process.pid", 77),
		attribute.String("container.id", "abc123"),
	}}
)

// makeSpans returns n spans over n/3 traces: a server span with a remote
// parent, a client child, and a root server span with an error.
func makeSpans(n int, seed uint64) []*span.Span {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	var out []*span.Span
	for i := 0; len(out) < n; i++ {
		var tid, rtid trace.TraceID
		var sid, pid, cid, rid trace.SpanID
		for j := range tid {
			tid[j], rtid[j] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		for _, id := range []*trace.SpanID{&sid, &pid, &cid, &rid} {
			for j := range id {
				id[j] = byte(rng.Uint32())
			}
		}
		start := base.Add(time.Duration(i) * time.Millisecond)
		server := &span.Span{
			TraceID: tid, SpanID: sid, ParentSpanID: pid, RemoteParent: true,
			Kind: span.Server, Name: "GET /users/{id}",
			Start: start, End: start.Add(1234 * time.Microsecond),
			Attributes: []attribute.KeyValue{
				attribute.String("http.request.method", "GET"),
				attribute.String("url.path", fmt.Sprintf("/users/%d", i)),
				attribute.String("http.route", "/users/{id}"),
				attribute.Int("http.response.status_code", 200),
				attribute.String("network.peer.address", "127.0.0.1"),
				attribute.Int("network.peer.port", 50000+i%1000),
			},
			Status: span.Unset, Process: procA,
		}
		client := &span.Span{
			TraceID: tid, SpanID: cid, ParentSpanID: sid,
			Kind: span.Client, Name: "POST",
			Start: start.Add(100 * time.Microsecond), End: start.Add(900 * time.Microsecond),
			Attributes: []attribute.KeyValue{
				attribute.String("http.request.method", "POST"),
				attribute.Int("http.response.status_code", 201),
				attribute.String("server.address", "payments"),
				attribute.Int("server.port", 8443),
				attribute.Int("tcp.retransmits", 1),
				attribute.StringSlice("tags", []string{"a", "b"}),
			},
			Events: []span.Event{{Name: "tcp.retransmit", Time: start.Add(300 * time.Microsecond),
				Attributes: []attribute.KeyValue{attribute.String("tcp.state", "ESTABLISHED")}}},
			Status: span.OK, Process: procA,
		}
		root := &span.Span{
			TraceID: rtid, SpanID: rid,
			Kind: span.Server, Name: "POST /orders",
			Start: start, End: start.Add(2 * time.Millisecond),
			Attributes: []attribute.KeyValue{
				attribute.Int("http.response.status_code", 500),
				attribute.Bool("flag", true),
				attribute.Float64("ratio", 0.25),
			},
			Status: span.Error, StatusMsg: "internal error", Process: procB,
		}
		out = append(out, server, client, root)
	}
	return out[:n]
}

func TestExportToReceiver(t *testing.T) {
	r := otlpreceiver.Start(t)
	setEnv(t, envEndpoint, r.Endpoint(),
		"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.name=agent-env")
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{BatchSize: 100, Registerer: reg, ScopeVersion: "v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	spans := makeSpans(999, 1)
	got := exportAll(t, e, r, spans)
	byID := map[string]otlpreceiver.Span{}
	for _, g := range got {
		if _, dup := byID[g.SpanID]; dup {
			t.Errorf("span %s received twice", g.SpanID)
		}
		byID[g.SpanID] = g
	}
	for _, s := range spans {
		g, ok := byID[s.SpanID.String()]
		if !ok {
			t.Errorf("span %s missing", s.SpanID)
			continue
		}
		checkSpan(t, g, s, map[string]any{"deployment.environment": "test"})
	}
	if traces, _ := r.Requests(); traces < 10 {
		t.Errorf("%d requests for %d spans in batches of 100", traces, len(spans))
	}
	if n := metric(t, reg, "periscope_spans_exported_total", nil); n != float64(len(spans)) {
		t.Errorf("exported counter = %v, want %d", n, len(spans))
	}
	if n := metric(t, reg, "periscope_spans_dropped_total", nil); n != 0 {
		t.Errorf("dropped counter = %v, want 0", n)
	}
}

// exportAll exports spans, shuts e down and returns what r received: all
// of them, or the test fails.
func exportAll(t *testing.T, e *Exporter, r *otlpreceiver.Receiver, spans []*span.Span) []otlpreceiver.Span {
	t.Helper()
	for _, s := range spans {
		e.Export(s)
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := r.Spans()
	if len(got) != len(spans) {
		t.Fatalf("receiver got %d spans, want %d", len(got), len(spans))
	}
	return got
}

func checkSpan(t *testing.T, g otlpreceiver.Span, s *span.Span, envRes map[string]any) {
	t.Helper()
	id := s.SpanID.String()
	wantParent, wantRemote := "", false
	if s.ParentSpanID.IsValid() {
		wantParent, wantRemote = s.ParentSpanID.String(), s.RemoteParent
	}
	wantStatus := map[span.StatusCode]string{span.Unset: "UNSET", span.OK: "OK", span.Error: "ERROR"}[s.Status]
	if g.TraceID != s.TraceID.String() || g.ParentSpanID != wantParent || g.RemoteParent != wantRemote || !g.ParentKnown {
		t.Errorf("span %s: trace %s parent %q remote %v (known %v), want trace %s parent %q remote %v",
			id, g.TraceID, g.ParentSpanID, g.RemoteParent, g.ParentKnown, s.TraceID, wantParent, wantRemote)
	}
	if g.Kind != s.Kind || g.Name != s.Name || g.Status != wantStatus || !g.Start.Equal(s.Start) || !g.End.Equal(s.End) {
		t.Errorf("span %s: kind %v name %q status %s %v–%v, want %v %q %s %v–%v",
			id, g.Kind, g.Name, g.Status, g.Start, g.End, s.Kind, s.Name, wantStatus, s.Start, s.End)
	}
	wantMsg := ""
	if s.Status == span.Error {
		wantMsg = s.StatusMsg
	}
	if g.StatusMessage != wantMsg {
		t.Errorf("span %s: status message %q, want %q", id, g.StatusMessage, wantMsg)
	}
	if g.Scope != ScopeName || g.ScopeVersion != "v0.1.0" {
		t.Errorf("span %s: scope %s@%s", id, g.Scope, g.ScopeVersion)
	}
	if want := otlpAttrs(s.Attributes); fmt.Sprint(g.Attributes) != fmt.Sprint(want) {
		t.Errorf("span %s: attributes %v, want %v", id, g.Attributes, want)
	}
	if len(g.Events) != len(s.Events) {
		t.Errorf("span %s: %d events, want %d", id, len(g.Events), len(s.Events))
	} else {
		for i, ev := range s.Events {
			ge := g.Events[i]
			if ge.Name != ev.Name || !ge.Time.Equal(ev.Time) || fmt.Sprint(ge.Attributes) != fmt.Sprint(otlpAttrs(ev.Attributes)) {
				t.Errorf("span %s: event %d = %+v, want %+v", id, i, ge, ev)
			}
		}
	}
	wantRes := map[string]any{"service.name": s.Process.ServiceName, "process.pid": int64(s.Process.PID)}
	for k, v := range envRes {
		wantRes[k] = v
	}
	for _, kv := range s.Process.Attributes {
		if kv.Key != "service.name" {
			wantRes[string(kv.Key)] = otlpValue(kv.Value)
		}
	}
	if fmt.Sprint(g.Resource) != fmt.Sprint(wantRes) {
		t.Errorf("span %s: resource %v, want %v", id, g.Resource, wantRes)
	}
}

// otlpAttrs is what the receiver returns for attrs: OTLP's value types.
func otlpAttrs(attrs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range attrs {
		m[string(kv.Key)] = otlpValue(kv.Value)
	}
	return m
}

func otlpValue(v attribute.Value) any {
	if v.Type() == attribute.STRINGSLICE {
		var out []any
		for _, s := range v.AsStringSlice() {
			out = append(out, s)
		}
		return out
	}
	return v.AsInterface()
}

func TestHTTPProtobuf(t *testing.T) {
	r := otlpreceiver.Start(t)
	// The traces variable wins over the general one.
	setEnv(t, envProtocol, "grpc", envTracesProtocol, "http/protobuf",
		envEndpoint, r.HTTPEndpoint(), "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	e, err := New(t.Context(), Config{ScopeVersion: "v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	spans := makeSpans(30, 2)
	for _, s := range spans {
		e.Export(s)
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := r.Spans()
	if len(got) != len(spans) {
		t.Fatalf("got %d spans over HTTP, want %d", len(got), len(spans))
	}
	for i := range spans {
		checkSpan(t, findSpan(t, got, spans[i].SpanID), spans[i], nil)
	}
}

func findSpan(t *testing.T, got []otlpreceiver.Span, id trace.SpanID) otlpreceiver.Span {
	t.Helper()
	for _, g := range got {
		if g.SpanID == id.String() {
			return g
		}
	}
	t.Fatalf("span %s not received", id)
	return otlpreceiver.Span{}
}

func TestBadProtocol(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{envProtocol, "http/json"},
		{envTracesProtocol, "thrift"},
		{envProtocol, "GRPC"},
	} {
		setEnv(t, tc.key, tc.value)
		_, err := New(t.Context(), Config{})
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.value) {
			t.Errorf("%s=%s: New error = %v, want one naming the variable and value", tc.key, tc.value, err)
		}
	}
}

func TestEnabled(t *testing.T) {
	setEnv(t)
	if Enabled() {
		t.Error("Enabled() with no endpoint")
	}
	t.Setenv(envTracesEndpoint, "http://collector:4317")
	if !Enabled() {
		t.Error("!Enabled() with a traces endpoint")
	}
	setEnv(t, envEndpoint, "http://collector:4317")
	if !Enabled() {
		t.Error("!Enabled() with an endpoint")
	}
}

func TestBatchTimeout(t *testing.T) {
	r := otlpreceiver.Start(t)
	setEnv(t, envEndpoint, r.Endpoint())
	e, err := New(t.Context(), Config{BatchTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	for _, s := range makeSpans(3, 3) {
		e.Export(s)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := r.WaitForSpans(ctx, 3, nil); err != nil {
		t.Fatalf("a partial batch was not sent after its timeout: %v", err)
	}
}

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestBackendDown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string // returns the endpoint
	}{
		{"closed port", func(t *testing.T) string { return "http://" + closedPort(t) }},
		{"receiver failing", func(t *testing.T) string {
			r := otlpreceiver.Start(t)
			r.Fail(codes.Unavailable)
			return r.Endpoint()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, envEndpoint, tc.setup(t), "OTEL_EXPORTER_OTLP_TIMEOUT", "200")
			reg := prometheus.NewRegistry()
			logs := &logCounter{}
			const queue, total = 1000, 100_000
			e, err := New(t.Context(), Config{
				QueueSize: queue, BatchSize: 100, BatchTimeout: 10 * time.Millisecond,
				Registerer: reg, Logger: slog.New(logs), FailureLogInterval: time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			heapBefore := heapInUse()
			start := time.Now()
			for i := range total {
				e.Export(bigSpan(i))
			}
			d := time.Since(start)
			if d > slowdown*5*time.Second {
				t.Errorf("%d Exports took %v against a dead backend", total, d)
			}
			// Retaining every span would take ~100 MB; the queue holds 1000.
			grown := int64(heapInUse()) - int64(heapBefore)
			if grown > 32<<20 {
				t.Errorf("heap grew by %d MiB: the queue is not bounded", grown>>20)
			}
			t.Logf("%d Exports took %v; heap grew by %d KiB", total, d, grown>>10)
			if q := metric(t, reg, "periscope_exporter_queue_length", nil); q > queue {
				t.Errorf("queue length %v > %d", q, queue)
			}
			// Let a few batches fail.
			deadline := time.Now().Add(10 * time.Second)
			for metric(t, reg, "periscope_export_failures_total", nil) < 2 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			err = e.Shutdown(ctx)
			t.Logf("Shutdown: %v", err)

			exported := metric(t, reg, "periscope_spans_exported_total", nil)
			full := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "queue_full"})
			failed := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "export_failed"})
			failures := metric(t, reg, "periscope_export_failures_total", nil)
			// Most spans find the queue full; the queue's content fails.
			if exported != 0 || full < total/2 || failed < queue/2 || exported+full+failed != total || failures < 2 {
				t.Errorf("exported %v, dropped queue_full %v + export_failed %v (of %d), failures %v",
					exported, full, failed, total, failures)
			}
			if w := logs.warn.Load(); w != 1 {
				t.Errorf("%d warnings logged for %v failures, want 1", w, failures)
			}
		})
	}
}

// bigSpan is a span of about 1 KiB.
func bigSpan(i int) *span.Span {
	return &span.Span{
		TraceID: trace.TraceID{1, byte(i), byte(i >> 8), byte(i >> 16)},
		SpanID:  trace.SpanID{2, byte(i), byte(i >> 8), byte(i >> 16)},
		Kind:    span.Server, Name: "GET /",
		Start: time.Unix(1, 0), End: time.Unix(2, 0),
		Attributes: []attribute.KeyValue{
			attribute.String("url.path", strings.Repeat("x", 900)+fmt.Sprint(i)),
		},
		Process: procA,
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestRecoversAfterOutage(t *testing.T) {
	r := otlpreceiver.Start(t)
	r.Fail(codes.InvalidArgument) // not retryable: fails at once
	setEnv(t, envEndpoint, r.Endpoint())
	reg := prometheus.NewRegistry()
	logs := &logCounter{}
	e, err := New(t.Context(), Config{BatchTimeout: 10 * time.Millisecond, Registerer: reg, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	first := makeSpans(10, 4)
	for _, s := range first {
		e.Export(s)
	}
	waitMetric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "export_failed"}, 10)
	r.Fail(codes.OK)
	second := makeSpans(10, 5)
	for _, s := range second {
		e.Export(s)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := r.WaitForSpans(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range second {
		checkSpan2(t, got, s)
	}
	waitMetric(t, reg, "periscope_spans_exported_total", nil, 10)
	if logs.warn.Load() != 1 || logs.info.Load() != 1 {
		t.Errorf("logged %d warnings and %d infos, want one failure and one recovery", logs.warn.Load(), logs.info.Load())
	}
}

func checkSpan2(t *testing.T, got []otlpreceiver.Span, s *span.Span) {
	t.Helper()
	g := findSpan(t, got, s.SpanID)
	if g.TraceID != s.TraceID.String() || g.Name != s.Name {
		t.Errorf("span %s arrived as %+v", s.SpanID, g)
	}
}

func TestShutdownDeadline(t *testing.T) {
	r := otlpreceiver.Start(t)
	r.Fail(codes.Unavailable) // retried until the export timeout
	setEnv(t, envEndpoint, r.Endpoint(), "OTEL_EXPORTER_OTLP_TIMEOUT", "30000")
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range makeSpans(100, 6) {
		e.Export(s)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = e.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 300ms context", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if n := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "export_failed"}); n != 100 {
		t.Errorf("export_failed = %v, want all 100 spans", n)
	}
	e.Export(makeSpans(1, 7)[0]) // after Shutdown: ignored
	if err := e.Shutdown(t.Context()); err != nil && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("second Shutdown = %v", err)
	}
}

func TestMetricsRegistered(t *testing.T) {
	setEnv(t, envEndpoint, "http://"+closedPort(t))
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, map[string]string{"exporter": "otlp"}) {
				t.Errorf("%s lacks exporter=otlp", mf.GetName())
			}
		}
	}
	want := "periscope_export_failures_total periscope_exporter_queue_bytes periscope_exporter_queue_length periscope_exporter_spans_in_flight periscope_spans_dropped_total periscope_spans_exported_total"
	if strings.Join(names, " ") != want {
		t.Errorf("registered %v, want %s", names, want)
	}
	// A second exporter with the same name cannot register twice.
	if _, err := New(t.Context(), Config{Registerer: reg}); err == nil {
		t.Error("a second otlp exporter registered the same metrics")
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func waitMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metric(t, reg, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			found = found || lp.GetName() == k && lp.GetValue() == v
		}
		if !found {
			return false
		}
	}
	return true
}

// TestReconnectsPromptly: the receiver goes away while spans keep coming,
// then comes back on the same address. The exporter's next export reaches
// it about as soon as it is back (gRPC's reconnect backoff is capped under
// a second and exports wait for the connection), and every span is
// exported or counted as dropped. The delay is logged, not asserted
// exactly: a generous bound catches a return of the minutes-long default
// backoff.
func TestReconnectsPromptly(t *testing.T) {
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Run(proto, func(t *testing.T) { testReconnects(t, proto) })
	}
}

func testReconnects(t *testing.T, proto string) {
	r := otlpreceiver.Start(t)
	endpoint := r.Endpoint()
	if proto != "grpc" {
		endpoint = r.HTTPEndpoint()
	}
	setEnv(t, envEndpoint, endpoint, envProtocol, proto, "OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{BatchSize: 10, BatchTimeout: 10 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	spans := makeSpans(3000, 8)
	next := 0
	send := func(n int) {
		for range n {
			e.Export(spans[next])
			next++
		}
	}
	send(10)
	waitMetric(t, reg, "periscope_spans_exported_total", nil, 10)

	addr, httpAddr := r.Addr(), r.HTTPAddr()
	r.Stop()
	// Down for 10 s with traffic: long enough for gRPC's default
	// backoff to have grown to several seconds. HTTP has no connection
	// backoff: 3 s will do.
	down := 100
	if proto != "grpc" {
		down = 30
	}
	for range down {
		send(10)
		time.Sleep(100 * time.Millisecond)
	}
	back := time.Now()
	r2 := otlpreceiver.StartOn(t, addr, httpAddr)
	send(10)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := r2.WaitForSpans(ctx, 1, nil); err != nil {
		t.Fatalf("no span after the receiver came back: %v", err)
	}
	delay := time.Since(back)
	t.Logf("first spans arrived %v after the receiver came back", delay.Round(time.Millisecond))
	if delay > slowdown*3*time.Second {
		t.Errorf("exports resumed %v after the receiver came back", delay)
	}
	// Everything sent is accounted for once the queue is empty.
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	exported := metric(t, reg, "periscope_spans_exported_total", nil)
	full := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "queue_full"})
	failed := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "export_failed"})
	if exported+full+failed != float64(next) {
		t.Errorf("exported %v + dropped %v (queue full) + %v (failed) != %d spans sent", exported, full, failed, next)
	}
	if got := len(r.Spans()) + len(r2.Spans()); float64(got) != exported {
		t.Errorf("receivers got %d spans, exported counter says %v", got, exported)
	}
	t.Logf("sent %d: exported %v, dropped queue_full %v, export_failed %v", next, exported, full, failed)
}

// TestManyProcesses: batches with spans of many processes, one resource
// each, the encoder's structs reused from batch to batch.
func TestManyProcesses(t *testing.T) {
	r := otlpreceiver.Start(t)
	setEnv(t, envEndpoint, r.Endpoint())
	e, err := New(t.Context(), Config{BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	var procs []*span.Process
	for i := range 37 {
		procs = append(procs, &span.Process{PID: uint32(100 + i), ServiceName: fmt.Sprintf("svc-%d", i)})
	}
	spans := makeSpans(999, 9)
	for i, s := range spans {
		s.Process = procs[(i*i)%len(procs)]
	}
	got := exportAll(t, e, r, spans)
	for _, s := range spans {
		g := findSpan(t, got, s.SpanID)
		if g.ServiceName() != s.Process.ServiceName || g.Resource["process.pid"] != int64(s.Process.PID) || g.Name != s.Name {
			t.Errorf("span %s of %s/%d arrived as %s of %v", s.SpanID, s.Process.ServiceName, s.Process.PID, g.Name, g.Resource)
		}
	}
}

// blockingClient is a transport whose uploads wait until release is
// closed, counting how many are under way at once.
type blockingClient struct {
	release        chan struct{}
	mu             sync.Mutex
	now, most, got int
	spans          int
}

func (c *blockingClient) Start(context.Context) error { return nil }
func (c *blockingClient) Stop(context.Context) error  { return nil }
func (c *blockingClient) UploadTraces(ctx context.Context, rss []*tracepb.ResourceSpans) error {
	n := 0
	for _, rs := range rss {
		b, err := proto.Marshal(rs)
		if err != nil {
			return err
		}
		var back tracepb.ResourceSpans
		if err := proto.Unmarshal(b, &back); err != nil {
			return err
		}
		for _, ss := range back.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	c.mu.Lock()
	c.now++
	c.got++
	c.most = max(c.most, c.now)
	c.spans += n
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.now--; c.mu.Unlock() }()
	select {
	case <-c.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *blockingClient) state() (now, most, got, spans int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now, c.most, c.got, c.spans
}

// TestExportsInFlight: while the backend has not answered, up to
// MaxInFlight requests are under way at once and no more; the batches
// behind them wait queued, and every span is exported once the backend
// answers.
func TestExportsInFlight(t *testing.T) {
	c := &blockingClient{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg, BatchSize: 10, MaxInFlight: 3, Client: c})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range makeSpans(80, 8) {
		e.Export(s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for now, _, _, _ := c.state(); now < 3 && time.Now().Before(deadline); now, _, _, _ = c.state() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a 4th would start now
	if now, most, _, _ := c.state(); now != 3 || most != 3 {
		t.Errorf("%d exports in flight (at most %d), want 3", now, most)
	}
	if q := metric(t, reg, "periscope_exporter_queue_length", map[string]string{"exporter": "otlp"}); q != 50 {
		t.Errorf("queue holds %v spans, want the 50 behind the 3 batches in flight", q)
	}
	if f := metric(t, reg, "periscope_exporter_spans_in_flight", map[string]string{"exporter": "otlp"}); f != 30 {
		t.Errorf("%v spans in flight, want the 30 of the 3 batches sent", f)
	}
	close(c.release)
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, most, got, spans := c.state(); most != 3 || got != 8 || spans != 80 {
		t.Errorf("at most %d in flight, %d exports of %d spans; want 3, 8, 80", most, got, spans)
	}
	if n := metric(t, reg, "periscope_spans_exported_total", map[string]string{"exporter": "otlp"}); n != 80 {
		t.Errorf("exported = %v, want 80", n)
	}
}

// TestQueueBytes: the encoded bytes waiting for export are bounded too, not
// only the spans: large spans behind a backend that does not answer fill
// QueueBytes first, the rest are dropped and counted, and what was queued
// goes out once the backend answers.
func TestQueueBytes(t *testing.T) {
	c := &blockingClient{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	const limit, total = 256 << 10, 2000
	e, err := New(t.Context(), Config{Registerer: reg, QueueSize: 1 << 20, QueueBytes: limit, BatchSize: 10, MaxInFlight: 1, Client: c})
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		e.Export(bigSpan(i))
	}
	if b := metric(t, reg, "periscope_exporter_queue_bytes", nil); b > limit+2<<10 || b < limit/2 {
		t.Errorf("%v bytes queued, want about %d", b, limit)
	}
	close(c.release)
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	exported := metric(t, reg, "periscope_spans_exported_total", nil)
	full := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "queue_full"})
	if full < total/2 || exported+full != total {
		t.Errorf("exported %v, dropped queue_full %v, of %d", exported, full, total)
	}
	if _, _, _, spans := c.state(); float64(spans) != exported {
		t.Errorf("backend got %d spans, exported %v", spans, exported)
	}
}

// TestAccountingWhileFailing: behind a backend that never answers in time,
// every span given to Export is, at every scrape, exported, dropped and
// counted, queued or in flight: exactly, with several exports in flight
// (whose spans the queue length alone leaves out) and failing one after
// another.
func TestAccountingWhileFailing(t *testing.T) {
	c := &blockingClient{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg, QueueSize: 200, BatchSize: 20, MaxInFlight: 4,
		BatchTimeout: 5 * time.Millisecond, Client: &timeoutClient{c, 30 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	spans := makeSpans(5000, 11)
	exact, scrapes := 0, 0
	for i, s := range spans {
		e.Export(s)
		if i%50 != 49 {
			continue
		}
		time.Sleep(time.Millisecond)
		got := accounted(t, reg)
		scrapes++
		// The gauges and counters are read one after another while
		// batches move: a batch may be seen in two states, never in none.
		if got < float64(i+1) {
			t.Fatalf("after %d spans: %v accounted for", i+1, got)
		}
		if got == float64(i+1) {
			exact++
		}
	}
	if f := metric(t, reg, "periscope_export_failures_total", nil); f < 4 {
		t.Errorf("%v failed exports, want several", f)
	}
	if exact < scrapes/2 {
		t.Errorf("only %d of %d scrapes accounted exactly", exact, scrapes)
	}
	if _, most, _, _ := c.state(); most != 4 {
		t.Errorf("at most %d exports in flight, want 4", most)
	}
}

// accounted sums what the otlp exporter's metrics say became of the spans
// given to it. Spans only move downstream (queue, in flight, exported or
// dropped), so reading the stages in that order can see a span twice but
// never miss one.
func accounted(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	queued := metric(t, reg, "periscope_exporter_queue_length", nil)
	inFlight := metric(t, reg, "periscope_exporter_spans_in_flight", nil)
	return queued + inFlight + metric(t, reg, "periscope_spans_exported_total", nil) +
		metric(t, reg, "periscope_spans_dropped_total", nil)
}

// timeoutClient gives each upload of its client a deadline, as the SDK's
// transport does with OTEL_EXPORTER_OTLP_TIMEOUT.
type timeoutClient struct {
	*blockingClient
	timeout time.Duration
}

func (c *timeoutClient) UploadTraces(ctx context.Context, rss []*tracepb.ResourceSpans) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.blockingClient.UploadTraces(ctx, rss)
}

// pacedClient is a backend that is down until release is closed: an
// upload made before waits for it, then fails; later ones succeed at once,
// noted when.
type pacedClient struct {
	release chan struct{}
	mu      sync.Mutex
	at      []time.Time
}

func (c *pacedClient) Start(context.Context) error { return nil }
func (c *pacedClient) Stop(context.Context) error  { return nil }
func (c *pacedClient) UploadTraces(ctx context.Context, _ []*tracepb.ResourceSpans) error {
	select {
	case <-c.release:
	default:
		<-c.release
		return errors.New("backend down")
	}
	c.mu.Lock()
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
	return nil
}

// TestBacklogPaced: after an outage the backlog goes out a batch per
// drainPause, not in one burst of the exporter's CPU taken from the
// applications, and all of it goes.
func TestBacklogPaced(t *testing.T) {
	c := &pacedClient{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg, BatchSize: 10, MaxInFlight: 4, Client: c})
	if err != nil {
		t.Fatal(err)
	}
	const batches = 44 // 4 in flight fail, 40 wait in the queue
	for _, s := range makeSpans(10*batches, 13) {
		e.Export(s)
	}
	waitMetric(t, reg, "periscope_exporter_spans_in_flight", nil, 40)
	close(c.release)
	waitMetric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "export_failed"}, 40)
	waitMetric(t, reg, "periscope_spans_exported_total", nil, 400)
	c.mu.Lock()
	at := c.at
	c.mu.Unlock()
	// The first batches may go before the recovery is known; the last
	// goes unpaced (less than a batch left).
	if d, least := at[len(at)-1].Sub(at[0]), time.Duration(len(at)-10)*drainPause; d < least {
		t.Errorf("%d batches of the backlog went out in %v, want at least %v (one per %v)", len(at), d, least, drainPause)
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// sizeClient records the size of each export request.
type sizeClient struct {
	mu    sync.Mutex
	sizes []int
	spans int
}

func (c *sizeClient) Start(context.Context) error { return nil }
func (c *sizeClient) Stop(context.Context) error  { return nil }
func (c *sizeClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes = append(c.sizes, proto.Size(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss}))
	c.spans += countEncoded(rss)
	return nil
}

// countEncoded counts the spans of a request, encoded or not.
func countEncoded(rss []*tracepb.ResourceSpans) int {
	n := 0
	for _, rs := range rss {
		b, _ := proto.Marshal(rs)
		var back tracepb.ResourceSpans
		if proto.Unmarshal(b, &back) == nil {
			for _, ss := range back.ScopeSpans {
				n += len(ss.Spans)
			}
		}
	}
	return n
}

// TestBatchBytes: a batch of large spans is sent when its spans reach
// maxBatchBytes, before BatchSize of them: requests stay under the 4 MiB a
// gRPC server accepts by default, and every span goes.
func TestBatchBytes(t *testing.T) {
	c := &sizeClient{}
	e, err := New(t.Context(), Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	const total = DefaultBatchSize // ~3 KB each: ~6 MiB
	for i := range total {
		s := bigSpan(i)
		s.Attributes = append(s.Attributes, attribute.String("extra", strings.Repeat("y", 2000)))
		e.Export(s)
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spans != total {
		t.Fatalf("%d spans exported, want %d", c.spans, total)
	}
	if len(c.sizes) < 3 {
		t.Errorf("%d requests (sizes %v), want at least 3: batches sealed at %d bytes", len(c.sizes), c.sizes, maxBatchBytes)
	}
	for _, n := range c.sizes {
		if n > maxBatchBytes+4<<10 {
			t.Errorf("a request of %d bytes, want at most %d and a span", n, maxBatchBytes)
		}
	}
}
