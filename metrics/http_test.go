package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/span"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestHTTP(t *testing.T, maxSeries int) (*HTTP, *clock, *prometheus.Registry) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	reg := prometheus.NewPedanticRegistry()
	h, err := NewHTTP(HTTPConfig{MaxSeriesPerService: maxSeries, Now: c.now}, reg)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(h)
	return h, c, reg
}

var (
	nginx = &span.Process{PID: 10, ServiceName: "nginx", Attributes: []attribute.KeyValue{
		attribute.Int("process.pid", 10),
		attribute.String("process.executable.name", "nginx"),
		attribute.String("host.name", "node-1"),
		attribute.String("container.id", "abc"),
		attribute.String("k8s.pod.name", "web-1"),
		attribute.String("k8s.namespace.name", "shop"),
	}}
	// nginx2 is another worker of the same workload: same series.
	nginx2 = &span.Process{PID: 11, ServiceName: "nginx", Attributes: []attribute.KeyValue{
		attribute.Int("process.pid", 11),
		attribute.String("process.executable.name", "nginx"),
		attribute.String("host.name", "node-1"),
		attribute.String("container.id", "abc"),
		attribute.String("k8s.pod.name", "web-1"),
		attribute.String("k8s.namespace.name", "shop"),
	}}
	curl = &span.Process{PID: 20, ServiceName: "curl", Attributes: []attribute.KeyValue{
		attribute.String("process.executable.name", "curl"),
	}}
)

func serverSpan(p *span.Process, method, route string, status int, d time.Duration) *span.Span {
	start := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("url.path", route),
		attribute.String("http.route", route),
		attribute.Int("http.response.status_code", status),
	}
	if status >= 500 {
		attrs = append(attrs, attribute.String("error.type", fmt.Sprint(status)))
	}
	return &span.Span{Kind: span.Server, Name: method + " " + route, Start: start, End: start.Add(d), Attributes: attrs, Process: p}
}

func clientSpan(p *span.Process, host string, port int, route string, status int, d time.Duration) *span.Span {
	s := serverSpan(p, "GET", "", status, d)
	s.Kind = span.Client
	s.Attributes = []attribute.KeyValue{
		attribute.String("http.request.method", "GET"),
		attribute.String("url.template", route),
		attribute.Int("http.response.status_code", status),
		attribute.String("server.address", host),
		attribute.Int("server.port", port),
	}
	return s
}

func TestHTTPPrometheus(t *testing.T) {
	h, _, reg := newTestHTTP(t, 100)
	h.Export(serverSpan(nginx, "GET", "/users/{id}", 200, 3*time.Millisecond))
	h.Export(serverSpan(nginx2, "GET", "/users/{id}", 200, 30*time.Millisecond))
	h.Export(serverSpan(nginx, "GET", "/users/{id}", 200, 20*time.Second)) // beyond the last bucket
	h.Export(serverSpan(nginx, "POST", "/orders", 503, 100*time.Millisecond))
	h.Export(clientSpan(curl, "shop.example", 443, "", 200, 50*time.Millisecond))

	const want = `
# HELP http_client_request_duration_seconds Duration of HTTP client requests seen by the agent, in seconds.
# TYPE http_client_request_duration_seconds histogram
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.005"} 0
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.01"} 0
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.025"} 0
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.05"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.075"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.1"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.25"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.5"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="0.75"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="1"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="2.5"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="5"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="7.5"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="10"} 1
http_client_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl",le="+Inf"} 1
http_client_request_duration_seconds_sum{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl"} 0.05
http_client_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",process_executable_name="curl",server_address="shop.example",server_port="443",service_name="curl"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), ClientDurationPromName); err != nil {
		t.Error(err)
	}

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	server := promFamily(t, fams, ServerDurationPromName)
	if len(server.Metric) != 2 {
		t.Fatalf("%d server series, want 2 (GET /users/{id} of both workers, POST /orders)", len(server.Metric))
	}
	for _, m := range server.Metric {
		l := labelMap(m)
		for k, v := range map[string]string{"service_name": "nginx", "container_id": "abc", "k8s_pod_name": "web-1", "k8s_namespace_name": "shop", "host_name": "node-1", "process_executable_name": "nginx"} {
			if l[k] != v {
				t.Errorf("label %s = %q, want %q", k, l[k], v)
			}
		}
		if _, ok := l["process_pid"]; ok {
			t.Error("process_pid is a label")
		}
		hist := m.GetHistogram()
		switch l["http_route"] {
		case "/users/{id}":
			if hist.GetSampleCount() != 3 || l["http_response_status_code"] != "200" || l["error_type"] != "" {
				t.Errorf("GET series: count %d labels %v", hist.GetSampleCount(), l)
			}
			// 3 ms in the first bucket, 30 ms in 0.05, 20 s only in +Inf.
			if b := hist.Bucket; b[0].GetCumulativeCount() != 1 || b[3].GetCumulativeCount() != 2 || b[len(b)-1].GetCumulativeCount() != 2 {
				t.Errorf("GET buckets %v", b)
			}
		case "/orders":
			if hist.GetSampleCount() != 1 || l["error_type"] != "503" || l["http_request_method"] != "POST" {
				t.Errorf("POST series: count %d labels %v", hist.GetSampleCount(), l)
			}
		default:
			t.Errorf("unexpected route %q", l["http_route"])
		}
	}
}

func TestHTTPOverflow(t *testing.T) {
	h, _, reg := newTestHTTP(t, 3)
	for i := range 10 {
		h.Export(serverSpan(nginx, "GET", fmt.Sprintf("/page%d", i), 200, time.Millisecond))
		h.Export(serverSpan(nginx, "GET", fmt.Sprintf("/page%d", i), 200, time.Millisecond)) // the same series again
	}
	h.Export(serverSpan(curl, "GET", "/other-service", 200, time.Millisecond))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]uint64{}
	for _, m := range promFamily(t, fams, ServerDurationPromName).Metric {
		l := labelMap(m)
		routes[l["service_name"]+" "+l["http_route"]] += m.GetHistogram().GetSampleCount()
	}
	want := map[string]uint64{"nginx /page0": 2, "nginx /page1": 2, "nginx /page2": 2, "nginx _overflow": 14, "curl /other-service": 1}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("series %v, want %v", routes, want)
	}
	if got := testutil.ToFloat64(h.overflowed.WithLabelValues(ServerDurationName, "nginx")); got != 7 {
		t.Errorf("overflowed series = %v, want 7 (/page3../page9, each once)", got)
	}
}

// endAt moves s to end at t, as a span reaches Export when it has just
// ended.
func endAt(s *span.Span, t time.Time) *span.Span {
	d := s.End.Sub(s.Start)
	s.Start, s.End = t.Add(-d), t
	return s
}

// Export reads the clock only for a span that ended after the time it read
// last: spans come within seconds of their end, and reading the clock for
// each cost as much as recording it.
func TestHTTPClockRead(t *testing.T) {
	h, c, _ := newTestHTTP(t, 100)
	reads := 0
	h.cfg.Now = func() time.Time { reads++; return c.now() }
	c.t = c.t.Add(time.Second)
	for range 10 {
		h.Export(serverSpan(nginx, "GET", "/a", 200, time.Millisecond)) // ended before the clock's time
	}
	if reads != 1 {
		t.Errorf("clock read %d times for 10 spans, want 1", reads)
	}
	c.t = c.t.Add(time.Minute)
	h.Export(endAt(serverSpan(nginx, "GET", "/a", 200, time.Millisecond), c.t)) // ended after the last read
	if reads != 2 {
		t.Errorf("clock read %d times, want 2", reads)
	}
	if x := h.byProc[nginx].series[httpKey{kind: span.Server, method: "GET", route: "/a", status: 200}]; x == nil || !x.last.Equal(c.t) {
		t.Errorf("series last recorded at %v, want %v", x, c.t)
	}
}

func TestHTTPTTL(t *testing.T) {
	h, c, reg := newTestHTTP(t, 100)
	h.Export(endAt(serverSpan(nginx, "GET", "/a", 200, time.Millisecond), c.t))
	c.t = c.t.Add(4 * time.Minute)
	h.Export(endAt(serverSpan(nginx, "GET", "/b", 200, time.Millisecond), c.t))
	c.t = c.t.Add(2 * time.Minute) // /a idle 6 min, /b 2 min
	if n := testutil.CollectAndCount(h, ServerDurationPromName); n != 1 {
		t.Errorf("%d series after the TTL, want 1", n)
	}
	c.t = c.t.Add(10 * time.Minute)
	if n := testutil.CollectAndCount(h, ServerDurationPromName); n != 0 {
		t.Errorf("%d series, want 0", n)
	}
	// The cap counts live series only: a new one is not folded.
	h.Export(endAt(serverSpan(nginx, "GET", "/c", 200, time.Millisecond), c.t))
	if got := h.perService["nginx"]; got != 1 {
		t.Errorf("perService = %d, want 1", got)
	}
	_ = reg
}

// A series dropped by the TTL while its workload lives on (another series
// records) is not found again by the lookup's recent series: recorded again,
// it is a new series, counted against the cap.
func TestHTTPTTLRecent(t *testing.T) {
	h, c, _ := newTestHTTP(t, 100)
	for _, route := range []string{"/a", "/b", "/a", "/b"} {
		h.Export(endAt(serverSpan(nginx, "GET", route, 200, time.Millisecond), c.t))
	}
	c.t = c.t.Add(4 * time.Minute)
	h.Export(endAt(serverSpan(nginx, "GET", "/b", 200, time.Millisecond), c.t))
	c.t = c.t.Add(2 * time.Minute) // /a idle 6 min: dropped
	h.Export(endAt(serverSpan(nginx, "GET", "/a", 200, time.Millisecond), c.t))
	if got := h.perService["nginx"]; got != 2 {
		t.Errorf("perService = %d, want 2", got)
	}
	for k, x := range h.byProc[nginx].series {
		if want := map[string]uint64{"/a": 1, "/b": 3}[k.route]; x.count != want {
			t.Errorf("series %s: count %d, want %d", k.route, x.count, want)
		}
	}
}

func TestHTTPResourceMetrics(t *testing.T) {
	h, c, _ := newTestHTTP(t, 100)
	scope := instrumentation.Scope{Name: "test"}
	h.Export(serverSpan(nginx, "GET", "/a", 200, 10*time.Millisecond))
	h.Export(serverSpan(nginx2, "GET", "/a", 200, 20*time.Millisecond))
	h.Export(clientSpan(curl, "example.com", 443, "/x", 404, 10*time.Millisecond))

	for _, delta := range []bool{false, true} {
		rms := h.ResourceMetrics(scope, delta)
		if len(rms) != 2 {
			t.Fatalf("delta=%v: %d resources, want 2 (nginx, curl)", delta, len(rms))
		}
		for _, rm := range rms {
			svc, _ := rm.Resource.Set().Value("service.name")
			if _, ok := rm.Resource.Set().Value("process.pid"); ok {
				t.Error("process.pid on the resource")
			}
			m := rm.ScopeMetrics[0].Metrics[0]
			hist := m.Data.(metricdata.Histogram[float64])
			p := hist.DataPoints[0]
			switch svc.AsString() {
			case "nginx":
				if m.Name != ServerDurationName || p.Count != 2 || p.Sum < 0.0299 || p.Sum > 0.0301 {
					t.Errorf("nginx: %s count %d sum %v", m.Name, p.Count, p.Sum)
				}
				if cid, _ := rm.Resource.Set().Value("container.id"); cid.AsString() != "abc" {
					t.Errorf("container.id %q", cid.AsString())
				}
			case "curl":
				port, _ := p.Attributes.Value("server.port")
				status, _ := p.Attributes.Value("http.response.status_code")
				if m.Name != ClientDurationName || p.Count != 1 || port.AsInt64() != 443 || status.AsInt64() != 404 {
					t.Errorf("curl: %s count %d attrs %v", m.Name, p.Count, p.Attributes.ToSlice())
				}
			}
			wantTemp := metricdata.CumulativeTemporality
			if delta {
				wantTemp = metricdata.DeltaTemporality
			}
			if hist.Temporality != wantTemp {
				t.Errorf("temporality %v", hist.Temporality)
			}
		}
	}
	// Deltas: nothing new means nothing exported; then only the change.
	if rms := h.ResourceMetrics(scope, true); len(rms) != 0 {
		t.Errorf("%d resources with no new data", len(rms))
	}
	c.t = c.t.Add(time.Minute)
	h.Export(serverSpan(nginx, "GET", "/a", 200, 10*time.Millisecond))
	rms := h.ResourceMetrics(scope, true)
	if len(rms) != 1 {
		t.Fatalf("%d resources, want 1", len(rms))
	}
	p := rms[0].ScopeMetrics[0].Metrics[0].Data.(metricdata.Histogram[float64]).DataPoints[0]
	if p.Count != 1 || p.BucketCounts[1] != 1 {
		t.Errorf("delta point count %d buckets %v", p.Count, p.BucketCounts)
	}
	// Cumulative is unaffected by deltas.
	for _, rm := range h.ResourceMetrics(scope, false) {
		if svc, _ := rm.Resource.Set().Value("service.name"); svc.AsString() == "nginx" {
			if p := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Histogram[float64]).DataPoints[0]; p.Count != 3 {
				t.Errorf("cumulative count %d, want 3", p.Count)
			}
		}
	}
}

func BenchmarkHTTPExport(b *testing.B) {
	h, err := NewHTTP(HTTPConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	spans := make([]*span.Span, 64)
	for i := range spans {
		spans[i] = serverSpan(nginx, "GET", fmt.Sprintf("/r%d", i), 200, time.Millisecond)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Export(spans[i%len(spans)])
	}
}

func promFamily(t *testing.T, fams []*dto.MetricFamily, name string) *dto.MetricFamily {
	t.Helper()
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("no metric family %s", name)
	return nil
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.Label {
		l[p.GetName()] = p.GetValue()
	}
	return l
}
