package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/span"
)

var (
	t0      = time.Date(2026, 11, 3, 12, 1, 2, 345_000_000, time.UTC)
	traceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	nginx   = &span.Process{PID: 4242, ServiceName: "nginx", Attributes: []attribute.KeyValue{
		attribute.Int("process.pid", 4242),
		attribute.String("host.name", "node-1"),
	}}
)

func serverSpan() *span.Span {
	return &span.Span{
		TraceID:      traceID,
		SpanID:       trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		ParentSpanID: trace.SpanID{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8},
		RemoteParent: true,
		Kind:         span.Server,
		Name:         "GET /users/{id}",
		Start:        t0,
		End:          t0.Add(1234 * time.Microsecond),
		Attributes: []attribute.KeyValue{
			attribute.String("http.request.method", "GET"),
			attribute.String("url.path", "/users/42"),
			attribute.String("http.route", "/users/{id}"),
			attribute.Int("http.response.status_code", 200),
			attribute.String("network.peer.address", "127.0.0.1"),
			attribute.Int("network.peer.port", 51234),
			attribute.String("network.protocol.version", "1.1"),
		},
		Status:  span.Unset,
		Process: nginx,
	}
}

func clientSpan() *span.Span {
	return &span.Span{
		TraceID:      traceID,
		SpanID:       trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		ParentSpanID: trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		Kind:         span.Client,
		Name:         "POST",
		Start:        t0.Add(100 * time.Microsecond),
		End:          t0.Add(1100*time.Millisecond + 500*time.Microsecond),
		Attributes: []attribute.KeyValue{
			attribute.String("http.request.method", "POST"),
			attribute.String("url.path", "/api/v1/orders"),
			attribute.Int("http.response.status_code", 503),
			attribute.String("server.address", "::1"),
			attribute.Int("server.port", 8443),
			attribute.Int("tcp.retransmits", 2),
		},
		Events: []span.Event{
			{Name: "tcp.retransmit", Time: t0.Add(200 * time.Millisecond), Attributes: []attribute.KeyValue{attribute.String("tcp.state", "ESTABLISHED")}},
			{Name: "tcp.retransmit", Time: t0.Add(600 * time.Millisecond)},
		},
		Status:    span.Error,
		StatusMsg: "HTTP 503",
		Process:   &span.Process{PID: 7, ServiceName: "checkout-service-long-name"},
	}
}

func rootSpanNoProcess() *span.Span {
	return &span.Span{
		TraceID: trace.TraceID{0xff, 1},
		SpanID:  trace.SpanID{0xee, 2},
		Kind:    span.Server,
		Name:    "GET",
		Start:   t0,
		End:     t0.Add(42 * time.Microsecond),
		Status:  span.Unset,
	}
}

// export runs spans through a new exporter in mode and returns what it wrote.
func export(t *testing.T, mode string, spans ...*span.Span) (string, *prometheus.Registry) {
	t.Helper()
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	e, err := New(mode, &buf, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		e.Export(s)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return buf.String(), reg
}

func TestText(t *testing.T) {
	got, reg := export(t, ModeText, serverSpan(), clientSpan(), rootSpanNoProcess())
	want := "" +
		"12:01:02.345 SERVER nginx[4242]              GET /users/{id}                  200     1.234ms trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 parent=53995c3f42cd8ad8(remote) peer=127.0.0.1:51234 path=/users/42 network.protocol.version=1.1\n" +
		"12:01:02.345 CLIENT checkout-service-long-name[7] POST                             503  1100.400ms trace=4bf92f3577b34da6a3ce929d0e0e4736 span=0102030405060708 parent=00f067aa0ba902b7 server=[::1]:8443 path=/api/v1/orders status=ERROR msg=\"HTTP 503\" events=2 tcp.retransmits=2\n" +
		"12:01:02.345 SERVER -                        GET                              -       0.042ms trace=ff010000000000000000000000000000 span=ee02000000000000 parent=-\n"
	if got != want {
		t.Errorf("text output:\n got:\n%s\nwant:\n%s", got, want)
	}
	if n := counter(t, reg, "periscope_spans_exported_total", nil); n != 3 {
		t.Errorf("exported = %v, want 3", n)
	}
}

func TestJSON(t *testing.T) {
	got, _ := export(t, ModeJSON, serverSpan(), clientSpan(), rootSpanNoProcess())
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), got)
	}
	want := []string{
		`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":"53995c3f42cd8ad8","remote_parent":true,"kind":"SERVER","name":"GET /users/{id}","start":"2026-11-03T12:01:02.345Z","end":"2026-11-03T12:01:02.346234Z","duration_ms":1.234,"status":"UNSET","attributes":{"http.request.method":"GET","http.response.status_code":200,"http.route":"/users/{id}","network.peer.address":"127.0.0.1","network.peer.port":51234,"network.protocol.version":"1.1","url.path":"/users/42"},"resource":{"host.name":"node-1","process.pid":4242,"service.name":"nginx"}}`,
		`{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"0102030405060708","parent_span_id":"00f067aa0ba902b7","kind":"CLIENT","name":"POST","start":"2026-11-03T12:01:02.3451Z","end":"2026-11-03T12:01:03.4455Z","duration_ms":1100.4,"status":"ERROR","status_message":"HTTP 503","attributes":{"http.request.method":"POST","http.response.status_code":503,"server.address":"::1","server.port":8443,"tcp.retransmits":2,"url.path":"/api/v1/orders"},"resource":{"service.name":"checkout-service-long-name"},"events":[{"name":"tcp.retransmit","time":"2026-11-03T12:01:02.545Z","attributes":{"tcp.state":"ESTABLISHED"}},{"name":"tcp.retransmit","time":"2026-11-03T12:01:02.945Z"}]}`,
		`{"trace_id":"ff010000000000000000000000000000","span_id":"ee02000000000000","kind":"SERVER","name":"GET","start":"2026-11-03T12:01:02.345Z","end":"2026-11-03T12:01:02.345042Z","duration_ms":0.042,"status":"UNSET","attributes":{},"resource":{}}`,
	}
	for i, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Errorf("line %d is not JSON: %s", i, line)
		}
		if line != want[i] {
			t.Errorf("line %d:\n got: %s\nwant: %s", i, line, want[i])
		}
	}
}

func TestBadMode(t *testing.T) {
	if _, err := New("yaml", &bytes.Buffer{}, nil); err == nil || !strings.Contains(err.Error(), `"yaml"`) {
		t.Errorf("New(yaml) error = %v, want one naming the mode", err)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	e, err := New(ModeText, w, reg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * QueueSize
	s := serverSpan()
	start := time.Now()
	for range n {
		e.Export(s)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d Exports took %v with a stuck writer", n, d)
	}
	if q := gauge(t, reg, "periscope_exporter_queue_length"); q > QueueSize {
		t.Errorf("queue length %v > %d", q, QueueSize)
	}
	close(w.release)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	exported := counter(t, reg, "periscope_spans_exported_total", nil)
	dropped := counter(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "queue_full"})
	// A stuck writer holds at most the queue and the one write buffer it
	// was filling (maxWrite bytes of lines) when its write blocked.
	line, err := appendText(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	held := QueueSize + maxWrite/len(line) + 1
	if dropped < float64(n-held) || exported+dropped != n || int(exported) != w.n {
		t.Errorf("exported %v + dropped %v, wrote %d; want %d in all, at least %d dropped", exported, dropped, w.n, n, n-held)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteErrorsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := New(ModeJSON, failingWriter{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		e.Export(serverSpan())
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "export_failed"}); n != 10 {
		t.Errorf("export_failed drops = %v, want 10", n)
	}
	if n := counter(t, reg, "periscope_export_failures_total", nil); n < 1 {
		t.Errorf("failures = %v, want > 0", n)
	}
	e.Export(serverSpan()) // after Shutdown: ignored, no panic
}

func TestShutdownHonoursContext(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	defer close(w.release)
	e, err := New(ModeText, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Export(serverSpan())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck writer = %v, want deadline exceeded", err)
	}
}

// counter sums the samples of the counter name whose labels include want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range find(t, reg, name) {
		if hasLabels(m, want) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	var sum float64
	for _, m := range find(t, reg, name) {
		sum += m.GetGauge().GetValue()
	}
	return sum
}

func find(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				if !hasLabels(m, map[string]string{"exporter": "console"}) {
					t.Errorf("%s without exporter=console: %v", name, m)
				}
			}
			return mf.GetMetric()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
