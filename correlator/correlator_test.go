package correlator

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// recorder is an Exporter that keeps the spans.
type recorder struct{ spans []*span.Span }

func (r *recorder) Export(s *span.Span)            { s.Hold(); r.spans = append(r.spans, s) }
func (r *recorder) Shutdown(context.Context) error { return nil }

// procs names process N "svc-N".
type procs struct{}

func (procs) Process(pid uint32) *span.Process {
	return &span.Process{PID: pid, ServiceName: fmt.Sprintf("svc-%d", pid)}
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

type harness struct {
	t   *testing.T
	c   *Correlator
	exp *recorder
	reg *prometheus.Registry
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	exp := &recorder{}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, exp, procs{}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, c: c, exp: exp, reg: reg}
}

func cid(pid uint32, key uint64) events.ConnID { return events.ConnID{PID: pid, Key: key} }

func (h *harness) read(id events.ConnID, tid uint32, ms int, s string) {
	h.data(events.Data{Conn: id, TID: tid, Time: at(ms), Dir: events.Read, Size: len(s), Bytes: []byte(s)})
}

func (h *harness) write(id events.ConnID, tid uint32, ms int, s string) {
	h.data(events.Data{Conn: id, TID: tid, Time: at(ms), Dir: events.Write, Size: len(s), Bytes: []byte(s)})
}

// data hands d to the correlator, then overwrites its bytes as the ring
// does when it reuses a record: a decoder that kept them instead of
// copying shows in every test's spans.
func (h *harness) data(d events.Data) {
	h.c.Data(d)
	clobber(d.Bytes)
	clobber(d.Tail)
}

func clobber(b []byte) {
	for i := range b {
		b[i] = 0xa5
	}
}

func (h *harness) bind(id events.ConnID, fd int32, ms int, local, remote string) {
	h.c.Bind(events.Bind{Conn: id, FD: fd, Time: at(ms), Tuple: events.Tuple{
		Local:  netip.MustParseAddrPort(local),
		Remote: netip.MustParseAddrPort(remote),
	}})
}

func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// attrs returns a span's attributes as Go values.
func attrs(s *span.Span) map[string]any {
	m := make(map[string]any, len(s.Attributes))
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func (h *harness) wantSpans(n int) []*span.Span {
	h.t.Helper()
	if len(h.exp.spans) != n {
		var names []string
		for _, s := range h.exp.spans {
			names = append(names, s.Name)
		}
		h.t.Fatalf("got %d spans %q, want %d", len(h.exp.spans), names, n)
	}
	return h.exp.spans
}

func checkAttrs(t *testing.T, s *span.Span, want map[string]any) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		if v == nil {
			if g, ok := got[k]; ok {
				t.Errorf("%s: attribute %s = %v, want absent", s.Name, k, g)
			}
			continue
		}
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s: attribute %s = %#v, want %#v", s.Name, k, got[k], v)
		}
	}
}

const (
	serverAddr = "10.0.0.1:8443"
	clientAddr = "10.0.0.2:51000"
)

func TestServerSpan(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(10, 0xa)
	h.bind(id, 5, 0, serverAddr, clientAddr)
	h.read(id, 11, 1, "GET /users/123/orders/9f8e7a6b5c4d3e2f1a0b?page=2 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.0\r\n\r\n")
	h.write(id, 11, 3, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")

	s := h.wantSpans(1)[0]
	if s.Name != "GET /users/{id}/orders/{id}" || s.Kind != span.Server || s.Status != span.Unset {
		t.Errorf("name %q kind %v status %v", s.Name, s.Kind, s.Status)
	}
	if !s.Start.Equal(at(1)) || !s.End.Equal(at(3)) {
		t.Errorf("start %v end %v", s.Start, s.End)
	}
	if !s.TraceID.IsValid() || !s.SpanID.IsValid() || s.ParentSpanID.IsValid() || s.RemoteParent {
		t.Errorf("ids: trace %v span %v parent %v remote %v", s.TraceID, s.SpanID, s.ParentSpanID, s.RemoteParent)
	}
	if s.Process == nil || s.Process.ServiceName != "svc-10" {
		t.Errorf("process %+v", s.Process)
	}
	want := map[string]any{
		"http.request.method":       "GET",
		"url.scheme":                "https",
		"url.path":                  "/users/123/orders/9f8e7a6b5c4d3e2f1a0b",
		"http.route":                "/users/{id}/orders/{id}",
		"network.protocol.version":  "1.1",
		"http.response.status_code": int64(200),
		"server.address":            "api.example.com",
		"server.port":               int64(8443),
		"client.address":            "10.0.0.2",
		"client.port":               int64(51000),
		"network.peer.address":      "10.0.0.2",
		"network.peer.port":         int64(51000),
		"user_agent.original":       "curl/8.0",
		"http.request.body.size":    int64(0),
		"http.response.body.size":   int64(5),
	}
	if got := attrs(s); !reflect.DeepEqual(got, want) {
		t.Errorf("attributes:\n got %v\nwant %v", got, want)
	}
	if h.metric("periscope_spans_total", "kind", "server") != 1 || h.metric("periscope_spans_total", "kind", "client") != 0 {
		t.Errorf("spans_total metric")
	}
}

func TestClientSpan(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(20, 0xb)
	h.write(id, 21, 1, "POST /api/v1/items HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 4\r\n\r\nabcd")
	// The Bind arrives after the first data.
	h.bind(id, 7, 2, "192.168.1.5:40000", "93.184.216.34:443")
	h.read(id, 21, 5, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")

	s := h.wantSpans(1)[0]
	if s.Name != "POST /api/v1/items" || s.Kind != span.Client || s.Status != span.Error {
		t.Errorf("name %q kind %v status %v", s.Name, s.Kind, s.Status)
	}
	want := map[string]any{
		"http.request.method":       "POST",
		"url.scheme":                "https",
		"url.path":                  "/api/v1/items",
		"url.full":                  "https://shop.example.com/api/v1/items",
		"url.template":              "/api/v1/items",
		"network.protocol.version":  "1.1",
		"http.response.status_code": int64(404),
		"server.address":            "shop.example.com",
		"server.port":               int64(443),
		"network.peer.address":      "93.184.216.34",
		"network.peer.port":         int64(443),
		"http.request.body.size":    int64(4),
		"http.response.body.size":   int64(9),
		"error.type":                "404",
	}
	if got := attrs(s); !reflect.DeepEqual(got, want) {
		t.Errorf("attributes:\n got %v\nwant %v", got, want)
	}
}

func TestClientSpanWithoutHost(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(20, 0xb)
	h.bind(id, 7, 0, "[::1]:40000", "[::1]:9443")
	h.write(id, 21, 1, "GET /x HTTP/1.0\r\n\r\n")
	h.read(id, 21, 2, "HTTP/1.0 200 OK\r\n\r\nbody until close")
	h.wantSpans(0)
	h.c.Close(events.Close{Conn: id, Time: at(3)})
	s := h.wantSpans(1)[0]
	if s.Status != span.Unset || !s.End.Equal(at(2)) {
		t.Errorf("status %v end %v", s.Status, s.End)
	}
	checkAttrs(t, s, map[string]any{
		"server.address":           "::1",
		"server.port":              int64(9443),
		"url.full":                 "https://[::1]:9443/x",
		"network.protocol.version": "1.0",
		"http.response.body.size":  int64(16),
		"error.type":               nil,
	})
}

func TestSpanWithoutAddresses(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.write(id, 2, 1, "GET /x HTTP/1.1\r\n\r\n")
	h.read(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	s := h.wantSpans(1)[0]
	checkAttrs(t, s, map[string]any{
		"url.full": nil, "server.address": nil, "server.port": nil,
		"network.peer.address": nil, "url.template": "/x",
	})
}

func TestStatusAndMethods(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dir        events.Direction // of the request
		method     string
		status     int
		wantName   string
		wantStatus span.StatusCode
		wantAttrs  map[string]any
	}{
		{"server 500", events.Read, "GET", 500, "GET /", span.Error, map[string]any{"error.type": "500"}},
		{"server 404", events.Read, "GET", 404, "GET /", span.Unset, map[string]any{"error.type": nil}},
		{"client 404", events.Write, "GET", 404, "GET /", span.Error, map[string]any{"error.type": "404"}},
		{"client 503", events.Write, "DELETE", 503, "DELETE /", span.Error, map[string]any{"error.type": "503"}},
		{"client 302", events.Write, "GET", 302, "GET /", span.Unset, map[string]any{"error.type": nil}},
		{"unknown method", events.Read, "PROPFIND", 207, "HTTP /", span.Unset, map[string]any{
			"http.request.method": "_OTHER", "http.request.method_original": "PROPFIND",
		}},
		{"lower-case method is unknown", events.Read, "get", 200, "HTTP /", span.Unset, map[string]any{
			"http.request.method": "_OTHER", "http.request.method_original": "get",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			id := cid(1, 1)
			respDir := events.Write
			if tc.dir == events.Write {
				respDir = events.Read
			}
			req := tc.method + " / HTTP/1.1\r\n\r\n"
			resp := fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", tc.status)
			h.data(events.Data{Conn: id, Time: at(1), Dir: tc.dir, Size: len(req), Bytes: []byte(req)})
			h.data(events.Data{Conn: id, Time: at(2), Dir: respDir, Size: len(resp), Bytes: []byte(resp)})
			s := h.wantSpans(1)[0]
			if s.Name != tc.wantName || s.Status != tc.wantStatus {
				t.Errorf("name %q status %v, want %q %v", s.Name, s.Status, tc.wantName, tc.wantStatus)
			}
			checkAttrs(t, s, tc.wantAttrs)
		})
	}
}

func TestKeepAliveAndPipelining(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.write(id, 2, 1, "GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	h.read(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n")
	h.read(id, 2, 3, "HTTP/1.1 100 Continue\r\n\r\n")
	h.write(id, 2, 4, "xyz")
	h.read(id, 2, 5, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
	// Keep-alive: the next request on the same connection.
	h.write(id, 2, 10, "GET /d HTTP/1.1\r\n\r\n")
	h.read(id, 2, 11, "HTTP/1.1 204 No Content\r\n\r\n")

	spans := h.wantSpans(4)
	var got []string
	for _, s := range spans {
		a := attrs(s)
		got = append(got, fmt.Sprintf("%s %v %v-%v", s.Name, a["http.response.status_code"], s.Start.Sub(t0).Milliseconds(), s.End.Sub(t0).Milliseconds()))
	}
	want := []string{"GET /a 200 1-2", "HEAD /b 200 1-2", "POST /c 201 1-5", "GET /d 204 10-11"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("spans %q, want %q", got, want)
	}
	checkAttrs(t, spans[2], map[string]any{"http.request.body.size": int64(3)})
	if h.c.Connections() != 1 {
		t.Errorf("connections %d", h.c.Connections())
	}
}

func TestChunkedAndLargeBodies(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.read(id, 2, 1, "PUT /blob HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n")
	// The body arrives in big calls of which only 64 bytes were captured.
	for i := range 16 {
		h.data(events.Data{Conn: id, Time: at(2 + i), Dir: events.Read, Size: 65536, Bytes: make([]byte, 64)})
	}
	resp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	h.write(id, 2, 20, resp+"5\r\nhello\r\n")
	h.write(id, 2, 21, "0\r\n\r\n")
	s := h.wantSpans(1)[0]
	checkAttrs(t, s, map[string]any{"http.request.body.size": int64(1 << 20), "http.response.body.size": int64(5)})
	if !s.End.Equal(at(21)) {
		t.Errorf("end %v", s.End)
	}
}

func TestCloseAndExit(t *testing.T) {
	t.Run("close mid-response", func(t *testing.T) {
		h := newHarness(t, DefaultConfig())
		id := cid(1, 1)
		h.read(id, 2, 1, "GET /slow HTTP/1.1\r\n\r\n")
		h.write(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
		h.c.Close(events.Close{Conn: id, Time: at(5)})
		s := h.wantSpans(1)[0]
		if s.Status != span.Error || !s.End.Equal(at(5)) {
			t.Errorf("status %v end %v", s.Status, s.End)
		}
		checkAttrs(t, s, map[string]any{
			"error.type":                "connection_closed",
			"http.response.status_code": int64(200),
			"http.response.body.size":   int64(7),
		})
		if h.metric("periscope_requests_incomplete_total", "reason", "closed") != 1 {
			t.Errorf("incomplete metric")
		}
		if h.c.Connections() != 0 {
			t.Errorf("connections %d", h.c.Connections())
		}
	})
	t.Run("close before any response", func(t *testing.T) {
		h := newHarness(t, DefaultConfig())
		id := cid(1, 1)
		h.write(id, 2, 1, "GET /x HTTP/1.1\r\n\r\n")
		h.c.Close(events.Close{Conn: id, Time: at(5)})
		s := h.wantSpans(1)[0]
		checkAttrs(t, s, map[string]any{"error.type": "connection_closed", "http.response.status_code": nil, "http.response.body.size": nil})
	})
	t.Run("close after a complete exchange", func(t *testing.T) {
		h := newHarness(t, DefaultConfig())
		id := cid(1, 1)
		h.write(id, 2, 1, "GET /x HTTP/1.1\r\n\r\n")
		h.read(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		h.write(id, 2, 3, "GET /y HT") // head not parsed: cannot be named
		h.c.Close(events.Close{Conn: id, Time: at(5)})
		if s := h.wantSpans(1)[0]; s.Status != span.Unset {
			t.Errorf("status %v", s.Status)
		}
	})
	for _, end := range []struct {
		name string
		do   func(c *Correlator, pid uint32, t time.Time)
	}{
		{"exit", func(c *Correlator, pid uint32, t time.Time) { c.Exit(events.Exit{PID: pid, Time: t}) }},
		{"exec", func(c *Correlator, pid uint32, t time.Time) { c.Exec(events.Exec{PID: pid, Time: t}) }},
	} {
		t.Run(end.name+" ends every connection of the process and frees its state", func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			a, b, other := cid(1, 1), cid(1, 2), cid(2, 1)
			h.bind(a, 3, 0, serverAddr, clientAddr)
			h.read(a, 2, 1, "GET /a HTTP/1.1\r\n\r\n")
			h.write(b, 3, 2, "GET /b HTTP/1.1\r\n\r\n")
			h.write(other, 3, 2, "GET /other HTTP/1.1\r\n\r\n")
			end.do(h.c, 1, at(9))
			spans := h.wantSpans(2)
			for _, s := range spans {
				if s.Status != span.Error || attrs(s)["error.type"] != "process_exited" || !s.End.Equal(at(9)) {
					t.Errorf("%s: status %v attrs %v", s.Name, s.Status, attrs(s))
				}
			}
			if h.c.Connections() != 1 || len(h.c.pids) != 1 || len(h.c.byTuple) != 0 || h.c.lru.Len() != 1 {
				t.Errorf("state left: conns %d pids %d tuples %d lru %d", h.c.Connections(), len(h.c.pids), len(h.c.byTuple), h.c.lru.Len())
			}
			if h.metric("periscope_requests_incomplete_total", "reason", "exit") != 2 || h.metric("periscope_connections_tracked") != 1 {
				t.Errorf("metrics")
			}
			// A late event for the exited process starts fresh state.
			h.c.Close(events.Close{Conn: a, Time: at(10)})
			h.wantSpans(2)
		})
	}
}

// TestExecReadLate: every collector's ring carries every exec, so another
// ring's marker can be read after the new program's first data. The old
// program's connections end; the new program's, active after the exec,
// go on.
func TestExecReadLate(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	old, fresh := cid(1, 1), cid(1, 2)
	h.write(old, 2, 1, "GET /old HTTP/1.1\r\n\r\n")
	h.write(fresh, 2, 10, "GET /new HTTP/1.1\r\n\r\n")
	h.c.Exec(events.Exec{PID: 1, Time: at(5)})
	if s := h.wantSpans(1)[0]; attrs(s)["url.path"] != "/old" || attrs(s)["error.type"] != "process_exited" {
		t.Errorf("span %q: attrs %v, want /old ended by the exec", s.Name, attrs(s))
	}
	h.read(fresh, 2, 11, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	spans := h.wantSpans(2)
	if s := spans[1]; attrs(s)["url.path"] != "/new" || s.Status != span.Unset {
		t.Errorf("span %q: status %v attrs %v, want /new complete", s.Name, s.Status, attrs(s))
	}
}

func TestExpire(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IdleTimeout = time.Minute
	h := newHarness(t, cfg)
	waiting, idle, busy := cid(1, 1), cid(1, 2), cid(1, 3)
	h.write(waiting, 2, 0, "GET /never HTTP/1.1\r\n\r\n")
	h.write(idle, 2, 0, "GET /done HTTP/1.1\r\n\r\n")
	h.read(idle, 2, 1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.write(busy, 2, 0, "GET /long HTTP/1.1\r\n\r\n")
	h.read(busy, 2, 50_000, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")

	h.c.Expire(at(59_000))
	h.wantSpans(1)
	h.c.Expire(at(61_000))
	spans := h.wantSpans(2)
	if s := spans[1]; s.Name != "GET /never" || attrs(s)["error.type"] != "timeout" || s.Status != span.Error {
		t.Errorf("timed out span %q %v %v", s.Name, s.Status, attrs(s))
	}
	if h.c.Connections() != 1 {
		t.Errorf("connections %d, want only the busy one", h.c.Connections())
	}
	h.c.Expire(at(111_000))
	spans = h.wantSpans(3)
	if s := spans[2]; s.Name != "GET /long" || attrs(s)["error.type"] != "timeout" {
		t.Errorf("busy span %q %v", s.Name, attrs(s))
	}
	if h.c.Connections() != 0 || len(h.c.pids) != 0 || h.metric("periscope_requests_incomplete_total", "reason", "timeout") != 2 {
		t.Errorf("state left or metric wrong")
	}
}

func TestRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IdleTimeout = 20 * time.Millisecond
	h := newHarness(t, cfg)
	h.data(events.Data{Conn: cid(1, 1), Time: time.Now(), Dir: events.Write, Size: 19, Bytes: []byte("GET / HTTP/1.1\r\n\r\n")})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	for h.c.Connections() != 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if len(h.exp.spans) != 1 {
		t.Errorf("Run did not expire the request: %d spans", len(h.exp.spans))
	}
}

func TestNotHTTP(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.bind(id, 3, 0, serverAddr, clientAddr)
	h.read(id, 2, 1, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
	h.read(id, 2, 2, "GET / HTTP/1.1\r\n\r\n") // ignored: the connection was given up
	h.write(id, 2, 3, "HTTP/1.1 200 OK\r\n\r\n")
	h.wantSpans(0)
	if h.metric("periscope_connections_not_http_total") != 1 || h.metric("periscope_http_parse_errors_total") != 0 {
		t.Errorf("metrics: not_http %v", h.metric("periscope_connections_not_http_total"))
	}
	// The same Bind changes nothing.
	h.bind(id, 3, 4, serverAddr, clientAddr)
	h.read(id, 2, 5, "GET / HTTP/1.1\r\n\r\n")
	h.wantSpans(0)
	// A Bind to a new socket starts a new connection.
	h.bind(id, 4, 6, serverAddr, "10.0.0.3:1234")
	h.read(id, 2, 7, "GET /new HTTP/1.1\r\n\r\n")
	h.write(id, 2, 8, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	s := h.wantSpans(1)[0]
	checkAttrs(t, s, map[string]any{"client.address": "10.0.0.3", "url.path": "/new"})
}

func TestFirstDataIsAResponse(t *testing.T) {
	// The agent attached while requests were in flight: the first data on
	// each connection is a response. The roles are still right.
	h := newHarness(t, DefaultConfig())
	srv, cli := cid(1, 1), cid(1, 2)
	h.write(srv, 2, 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	h.read(cli, 2, 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	h.read(srv, 2, 2, "GET /s HTTP/1.1\r\n\r\n")
	h.write(srv, 2, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.write(cli, 2, 2, "GET /c HTTP/1.1\r\n\r\n")
	h.read(cli, 2, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	spans := h.wantSpans(2)
	if spans[0].Name != "GET /s" || spans[0].Kind != span.Server || spans[1].Name != "GET /c" || spans[1].Kind != span.Client {
		t.Errorf("spans %q %v, %q %v", spans[0].Name, spans[0].Kind, spans[1].Name, spans[1].Kind)
	}
	if h.metric("periscope_connections_not_http_total") != 0 {
		t.Errorf("counted as not HTTP")
	}
}

func TestParseErrorEndsPending(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.write(id, 2, 1, "GET / HTTP/1.1\r\n\r\n")
	h.read(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
	s := h.wantSpans(1)[0]
	if s.Status != span.Error || attrs(s)["error.type"] != "parse_error" {
		t.Errorf("status %v attrs %v", s.Status, attrs(s))
	}
	if h.metric("periscope_http_parse_errors_total") != 1 {
		t.Errorf("parse error metric")
	}
}

func TestBindChangeResets(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.bind(id, 3, 0, "10.0.0.2:1000", serverAddr)
	h.write(id, 2, 1, "GET /old HTTP/1.1\r\n\r\n")
	h.read(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
	// The SSL* is reused on a new socket: the old request is over, and the
	// first data of the new connection decides its role again.
	h.bind(id, 9, 3, "10.0.0.1:443", "10.0.0.9:2000")
	spans := h.wantSpans(1)
	if s := spans[0]; s.Name != "GET /old" || attrs(s)["error.type"] != "connection_closed" {
		t.Errorf("old span %q %v", s.Name, attrs(s))
	}
	h.read(id, 2, 4, "GET /new HTTP/1.1\r\n\r\n")
	h.write(id, 2, 5, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	s := h.wantSpans(2)[1]
	if s.Kind != span.Server {
		t.Errorf("kind %v", s.Kind)
	}
	checkAttrs(t, s, map[string]any{"client.address": "10.0.0.9", "server.port": int64(443)})
	if len(h.c.byTuple) != 1 {
		t.Errorf("tuple index holds %d entries", len(h.c.byTuple))
	}
}

func TestUpgrade(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.read(id, 2, 1, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	h.write(id, 2, 2, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	h.read(id, 2, 3, "\x81\x85\x00\x00\x00\x00hello")
	h.write(id, 2, 4, "\x81\x05hello")
	s := h.wantSpans(1)[0]
	checkAttrs(t, s, map[string]any{"http.response.status_code": int64(101)})
	if h.metric("periscope_connections_not_http_total") != 0 || h.metric("periscope_http_parse_errors_total") != 0 {
		t.Errorf("websocket frames counted as errors")
	}

	// A declined upgrade goes on as HTTP.
	h = newHarness(t, DefaultConfig())
	h.read(id, 2, 1, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	h.write(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.read(id, 2, 3, "GET /next HTTP/1.1\r\n\r\n")
	h.write(id, 2, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.wantSpans(2)
}

func TestTraceParent(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	h.read(id, 2, 1, "GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
	h.write(id, 2, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	// An invalid traceparent is ignored.
	h.read(id, 2, 3, "GET / HTTP/1.1\r\ntraceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n\r\n")
	h.write(id, 2, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	spans := h.wantSpans(2)
	s := spans[0]
	if s.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID.String() != "00f067aa0ba902b7" || !s.RemoteParent {
		t.Errorf("trace %v parent %v remote %v", s.TraceID, s.ParentSpanID, s.RemoteParent)
	}
	if s := spans[1]; s.ParentSpanID.IsValid() || s.TraceID == spans[0].TraceID {
		t.Errorf("invalid traceparent used: parent %v", s.ParentSpanID)
	}
}

func TestParseTraceParent(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
		{"", false},
	} {
		if _, _, ok := parseTraceParent(tc.in); ok != tc.ok {
			t.Errorf("parseTraceParent(%q) ok = %v", tc.in, ok)
		}
	}
}

func TestThreadParent(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	in, out, other := cid(1, 1), cid(1, 2), cid(1, 3)
	h.read(in, 11, 1, "GET /front HTTP/1.1\r\n\r\n")
	h.write(out, 11, 2, "GET /backend/42 HTTP/1.1\r\nHost: backend\r\n\r\n") // same thread: child
	h.write(other, 12, 2, "GET /unrelated HTTP/1.1\r\n\r\n")                 // another thread: root
	h.read(out, 11, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.read(other, 12, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.write(in, 11, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	// After the server span ended, a call from the thread is a root.
	h.write(out, 11, 5, "GET /after HTTP/1.1\r\n\r\n")
	h.read(out, 11, 6, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

	spans := h.wantSpans(4)
	child, unrelated, server, after := spans[0], spans[1], spans[2], spans[3]
	if server.Name != "GET /front" || child.Name != "GET /backend/{id}" {
		t.Fatalf("order: %q %q", server.Name, child.Name)
	}
	if child.TraceID != server.TraceID || child.ParentSpanID != server.SpanID || child.RemoteParent {
		t.Errorf("child: trace %v parent %v remote %v; server trace %v span %v", child.TraceID, child.ParentSpanID, child.RemoteParent, server.TraceID, server.SpanID)
	}
	if unrelated.TraceID == server.TraceID || unrelated.ParentSpanID.IsValid() {
		t.Errorf("other thread linked")
	}
	if after.TraceID == server.TraceID || after.ParentSpanID.IsValid() {
		t.Errorf("call after the server span linked")
	}
	if server.ParentSpanID.IsValid() {
		t.Errorf("server span has a parent")
	}
}

// TestTupleParent follows one request through three processes on one node:
// process 1 (client) calls process 2 (server), whose serving thread calls
// process 3. The connections are the mirror images of each other.
func TestTupleParent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lateBinds bool // Bind events arrive after the data
	}{
		{"binds first", false},
		{"binds late", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			c1, s2, c2, s3 := cid(1, 1), cid(2, 1), cid(2, 2), cid(3, 1)
			binds := func() {
				h.bind(c1, 3, 0, "127.0.0.1:40000", "127.0.0.1:8443")
				h.bind(s2, 4, 0, "127.0.0.1:8443", "127.0.0.1:40000")
				h.bind(c2, 5, 0, "127.0.0.1:40001", "127.0.0.1:9443")
				h.bind(s3, 6, 0, "127.0.0.1:9443", "127.0.0.1:40001")
			}
			if !tc.lateBinds {
				binds()
			}
			h.write(c1, 100, 1, "GET /front HTTP/1.1\r\nHost: svc2\r\n\r\n")
			h.read(s2, 200, 2, "GET /front HTTP/1.1\r\nHost: svc2\r\n\r\n")
			h.write(c2, 200, 3, "GET /back HTTP/1.1\r\nHost: svc3\r\n\r\n")
			h.read(s3, 300, 4, "GET /back HTTP/1.1\r\nHost: svc3\r\n\r\n")
			if tc.lateBinds {
				binds()
			}
			h.write(s3, 300, 5, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			h.read(c2, 200, 6, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			h.write(s2, 200, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			h.read(c1, 100, 8, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

			spans := h.wantSpans(4)
			srv3, cli2, srv2, cli1 := spans[0], spans[1], spans[2], spans[3]
			if cli1.Kind != span.Client || srv2.Kind != span.Server || cli2.Kind != span.Client || srv3.Kind != span.Server {
				t.Fatalf("kinds")
			}
			for _, s := range spans {
				if s.TraceID != cli1.TraceID {
					t.Errorf("%s (pid %d) in trace %v, want %v", s.Name, s.Process.PID, s.TraceID, cli1.TraceID)
				}
			}
			links := []struct {
				child, parent *span.Span
				remote        bool
			}{{srv2, cli1, true}, {cli2, srv2, false}, {srv3, cli2, true}}
			for _, l := range links {
				if l.child.ParentSpanID != l.parent.SpanID || l.child.RemoteParent != l.remote {
					t.Errorf("%s pid %d: parent %v remote %v, want %v %v", l.child.Name, l.child.Process.PID, l.child.ParentSpanID, l.child.RemoteParent, l.parent.SpanID, l.remote)
				}
			}
			if cli1.ParentSpanID.IsValid() {
				t.Errorf("root has a parent")
			}
		})
	}
}

func TestTupleParentTraceParentWins(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	c1, s2 := cid(1, 1), cid(2, 1)
	h.bind(c1, 3, 0, "127.0.0.1:40000", "127.0.0.1:8443")
	h.bind(s2, 4, 0, "127.0.0.1:8443", "127.0.0.1:40000")
	req := "GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
	h.write(c1, 1, 1, req)
	h.read(s2, 2, 2, req)
	h.write(s2, 2, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.read(c1, 1, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	srv := h.wantSpans(2)[0]
	if srv.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || srv.ParentSpanID.String() != "00f067aa0ba902b7" {
		t.Errorf("server span: trace %v parent %v", srv.TraceID, srv.ParentSpanID)
	}
}

func TestTuplePairingKeepAlive(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	c1, s2 := cid(1, 1), cid(2, 1)
	h.bind(c1, 3, 0, "127.0.0.1:40000", "127.0.0.1:8443")
	h.bind(s2, 4, 0, "127.0.0.1:8443", "127.0.0.1:40000")
	for i := range 3 {
		ms := 10 * i
		h.write(c1, 1, ms+1, "GET / HTTP/1.1\r\n\r\n")
		h.read(s2, 2, ms+2, "GET / HTTP/1.1\r\n\r\n")
		h.write(s2, 2, ms+3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		h.read(c1, 1, ms+4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	}
	spans := h.wantSpans(6)
	for i := 0; i < 6; i += 2 {
		srv, cli := spans[i], spans[i+1]
		if srv.ParentSpanID != cli.SpanID || srv.TraceID != cli.TraceID {
			t.Errorf("exchange %d not linked", i/2)
		}
		if i > 0 && cli.TraceID == spans[i-1].TraceID {
			t.Errorf("exchange %d shares the previous trace", i/2)
		}
	}
}

func TestTuplePairingPipelined(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	c1, s2 := cid(1, 1), cid(2, 1)
	h.bind(c1, 3, 0, "127.0.0.1:40000", "127.0.0.1:8443")
	h.bind(s2, 4, 0, "127.0.0.1:8443", "127.0.0.1:40000")
	h.write(c1, 1, 1, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
	h.read(s2, 2, 2, "GET /a HTTP/1.1\r\n\r\n")
	h.read(s2, 2, 3, "GET /b HTTP/1.1\r\n\r\n")
	h.write(s2, 2, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.read(c1, 1, 5, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	spans := h.wantSpans(4)
	srvA, srvB, cliA, cliB := spans[0], spans[1], spans[2], spans[3]
	if srvA.Name != "GET /a" || srvB.Name != "GET /b" || cliA.Name != "GET /a" || cliB.Name != "GET /b" {
		t.Fatalf("order %q %q %q %q", srvA.Name, srvB.Name, cliA.Name, cliB.Name)
	}
	if srvA.ParentSpanID != cliA.SpanID || srvB.ParentSpanID != cliB.SpanID {
		t.Errorf("pipelined requests paired out of order")
	}
	// A server request read before the client wrote anything is not paired.
	h = newHarness(t, DefaultConfig())
	h.bind(c1, 3, 0, "127.0.0.1:40000", "127.0.0.1:8443")
	h.bind(s2, 4, 0, "127.0.0.1:8443", "127.0.0.1:40000")
	h.read(s2, 2, 1, "GET /x HTTP/1.1\r\n\r\n")
	h.write(c1, 1, 2, "GET /y HTTP/1.1\r\n\r\n")
	h.write(s2, 2, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if s := h.wantSpans(1)[0]; s.ParentSpanID.IsValid() {
		t.Errorf("server request paired with a later client request")
	}
}

func TestRedaction(t *testing.T) {
	const (
		req = "GET /login?user=bob&token=tok-SECRET1&X-Amz-Signature=sig-SECRET2&api%5Fkey=SECRET3&next=%2Fhome HTTP/1.1\r\n" +
			"Host: example.com\r\n" +
			"Authorization: Bearer SECRET4\r\n" +
			"Cookie: session=SECRET5\r\n" +
			"Proxy-Authorization: Basic SECRET6\r\n" +
			"X-Api-Key: SECRET7\r\n" +
			"Accept: text/html\r\n" +
			"Accept: application/json\r\n" +
			"\r\n"
		resp = "HTTP/1.1 200 OK\r\nSet-Cookie: id=SECRET8\r\nContent-Length: 0\r\n\r\n"
	)
	secrets := []string{"SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5", "SECRET6", "SECRET7", "SECRET8"}

	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		want map[string]any
	}{
		{
			name: "defaults: no query, no headers",
			cfg:  func(*Config) {},
			want: map[string]any{
				"url.full":                            "https://example.com/login",
				"url.query":                           nil,
				"http.request.header.authorization":   nil,
				"http.request.header.accept":          nil,
				"http.response.header.set-cookie":     nil,
				"http.request.header.x-api-key":       nil,
				"http.request.header.cookie":          nil,
				"http.request.header.proxy-authoriza": nil,
			},
		},
		{
			name: "query and headers captured, credentials redacted",
			cfg: func(c *Config) {
				c.CaptureQuery = true
				c.CaptureHeaders = true
				c.SensitiveHeaders = []string{"X-Api-Key"}
			},
			want: map[string]any{
				"url.full":                                "https://example.com/login?user=bob&token=REDACTED&X-Amz-Signature=REDACTED&api%5Fkey=REDACTED&next=%2Fhome",
				"http.request.header.host":                []string{"example.com"},
				"http.request.header.authorization":       []string{"REDACTED"},
				"http.request.header.cookie":              []string{"REDACTED"},
				"http.request.header.proxy-authorization": []string{"REDACTED"},
				"http.request.header.x-api-key":           []string{"REDACTED"},
				"http.request.header.accept":              []string{"text/html", "application/json"},
				"http.response.header.set-cookie":         []string{"REDACTED"},
				"http.response.header.content-length":     []string{"0"},
			},
		},
		{
			name: "custom sensitive parameters replace the defaults",
			cfg: func(c *Config) {
				c.CaptureQuery = true
				c.SensitiveQueryParams = []string{"user", "token", "signature", "api_key"}
			},
			want: map[string]any{
				"url.full": "https://example.com/login?user=REDACTED&token=REDACTED&X-Amz-Signature=REDACTED&api%5Fkey=REDACTED&next=%2Fhome",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kind := range []string{"client", "server"} {
				cfg := DefaultConfig()
				tc.cfg(&cfg)
				h := newHarness(t, cfg)
				id := cid(1, 1)
				if kind == "client" {
					h.write(id, 2, 1, req)
					h.read(id, 2, 2, resp)
				} else {
					h.read(id, 2, 1, req)
					h.write(id, 2, 2, resp)
				}
				s := h.wantSpans(1)[0]
				want := tc.want
				if kind == "server" {
					// Server spans carry url.query instead of url.full.
					want = make(map[string]any, len(tc.want))
					for k, v := range tc.want {
						if k == "url.full" {
							_, q, _ := strings.Cut(v.(string), "?")
							if q == "" {
								want["url.query"] = nil
							} else {
								want["url.query"] = q
							}
							continue
						}
						want[k] = v
					}
				}
				checkAttrs(t, s, want)
				dump := fmt.Sprintf("%q %q %+v %v", s.Name, s.StatusMsg, s.Events, attrs(s))
				for _, secret := range secrets {
					if strings.Contains(dump, secret) {
						t.Errorf("%s span leaks %s: %s", kind, secret, dump)
					}
				}
			}
		})
	}
}

func TestMaxConnections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnections = 2
	h := newHarness(t, cfg)
	h.write(cid(1, 1), 2, 1, "GET /one HTTP/1.1\r\n\r\n")
	h.write(cid(1, 2), 2, 2, "GET /two HTTP/1.1\r\n\r\n")
	h.write(cid(1, 1), 2, 3, "") // activity: conn 2 is now the oldest
	h.write(cid(1, 3), 2, 4, "GET /three HTTP/1.1\r\n\r\n")
	s := h.wantSpans(1)[0]
	if s.Name != "GET /two" || attrs(s)["error.type"] != "evicted" {
		t.Errorf("evicted %q %v", s.Name, attrs(s))
	}
	if h.c.Connections() != 2 || h.metric("periscope_connections_tracked") != 2 {
		t.Errorf("connections %d", h.c.Connections())
	}
}

func TestSpanIDsUnique(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	for i := range 200 {
		h.write(id, 2, i, "GET / HTTP/1.1\r\n\r\n")
		h.read(id, 2, i, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	}
	seenSpan := make(map[trace.SpanID]bool)
	seenTrace := make(map[trace.TraceID]bool)
	for _, s := range h.wantSpans(200) {
		if seenSpan[s.SpanID] || seenTrace[s.TraceID] {
			t.Fatalf("duplicate ID")
		}
		seenSpan[s.SpanID], seenTrace[s.TraceID] = true, true
	}
	// Two correlators do not produce the same IDs.
	h2 := newHarness(t, DefaultConfig())
	h2.write(id, 2, 0, "GET / HTTP/1.1\r\n\r\n")
	h2.read(id, 2, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if seenTrace[h2.wantSpans(1)[0].TraceID] {
		t.Errorf("second correlator repeats a trace ID")
	}
}

func TestMetricsRegistered(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	// Every metric is registered, labelled ones with their series.
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"periscope_spans_total", []string{"kind", "server"}},
		{"periscope_spans_total", []string{"kind", "client"}},
		{"periscope_connections_not_http_total", nil},
		{"periscope_http_parse_errors_total", nil},
		{"periscope_requests_incomplete_total", []string{"reason", "closed"}},
		{"periscope_requests_incomplete_total", []string{"reason", "exit"}},
		{"periscope_requests_incomplete_total", []string{"reason", "timeout"}},
		{"periscope_connections_tracked", nil},
	} {
		if !h.hasMetric(m.name, m.labels...) {
			t.Errorf("metric %s%v not registered", m.name, m.labels)
		}
	}
	if _, err := New(DefaultConfig(), &recorder{}, nil, nil, h.reg); err == nil {
		t.Errorf("registering twice succeeded")
	}
	if _, err := New(DefaultConfig(), nil, nil, nil, nil); err == nil {
		t.Errorf("nil exporter accepted")
	}
}

func (h *harness) hasMetric(name string, labels ...string) bool {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			return true
		}
	}
	return false
}

func BenchmarkCorrelatorRequest(b *testing.B) {
	serve := boundServer(b, procs{})
	req := []byte("GET /api/v1/users/42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"id\":42,\"a\"}")
	b.ReportAllocs()
	for b.Loop() {
		serve(req, resp)
	}
}

// boundServer makes a correlator, exporting to nowhere, with one server
// connection bound, and returns a function that has that connection read
// a request and write its response.
func boundServer(tb testing.TB, pr ProcessResolver) func(req, resp []byte) {
	tb.Helper()
	c, err := New(DefaultConfig(), discardExporter{}, pr, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	id := cid(1, 1)
	c.Bind(events.Bind{Conn: id, FD: 3, Time: t0, Tuple: events.Tuple{
		Local: netip.MustParseAddrPort(serverAddr), Remote: netip.MustParseAddrPort(clientAddr),
	}})
	return func(req, resp []byte) {
		c.Data(events.Data{Conn: id, TID: 7, Time: t0, Dir: events.Read, Size: len(req), Bytes: req})
		c.Data(events.Data{Conn: id, TID: 7, Time: t0, Dir: events.Write, Size: len(resp), Bytes: resp})
	}
}

// oneProc resolves every PID to one process.
type oneProc struct{ p *span.Process }

func (o oneProc) Process(uint32) *span.Process { return o.p }

type discardExporter struct{}

func (discardExporter) Export(*span.Span)              {}
func (discardExporter) Shutdown(context.Context) error { return nil }

// TestWriteResult: a write the TLS library took only part of is offered
// again; the repeated bytes must not be parsed twice.
func TestWriteResult(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
	tests := []struct {
		name string
		// write sends the response, with retries as a TLS library does.
		write func(h *harness, id events.ConnID)
	}{
		{"accepted at once", func(h *harness, id events.ConnID) {
			h.write(id, 2, 2, resp)
		}},
		{"WANT_WRITE then the same buffer again", func(h *harness, id events.ConnID) {
			h.write(id, 2, 2, resp)
			h.c.WriteResult(events.WriteResult{Conn: id, Requested: len(resp), Accepted: 0})
			h.write(id, 2, 3, resp)
			h.c.WriteResult(events.WriteResult{Conn: id, Requested: len(resp), Accepted: 0})
			h.write(id, 2, 4, resp)
		}},
		{"partial write then the rest", func(h *harness, id events.ConnID) {
			h.write(id, 2, 2, resp)
			h.c.WriteResult(events.WriteResult{Conn: id, Requested: len(resp), Accepted: 20})
			h.write(id, 2, 3, resp[20:])
		}},
		{"partial write, the rest with the next response", func(h *harness, id events.ConnID) {
			h.write(id, 2, 2, resp)
			h.c.WriteResult(events.WriteResult{Conn: id, Requested: len(resp), Accepted: 20})
			h.write(id, 2, 3, resp[20:]+resp)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			id := cid(1, 1)
			h.read(id, 2, 1, "GET /a HTTP/1.1\r\n\r\n")
			tt.write(h, id)
			h.read(id, 2, 10, "GET /b HTTP/1.1\r\n\r\n")
			h.write(id, 2, 11, resp)
			spans := h.wantSpans(2)
			for _, s := range spans {
				checkAttrs(t, s, map[string]any{"http.response.status_code": int64(200), "http.response.body.size": int64(10)})
			}
			if h.metric("periscope_connections_not_http_total") != 0 || h.metric("periscope_http_parse_errors_total") != 0 {
				t.Error("repeated bytes reached the parser")
			}
		})
	}
}

// BenchmarkCorrelatorRedisPipeline16 is what a traced redis-server costs the
// correlator under redis-benchmark -t get,set -P 16: one read of 16
// commands, one write of their 16 replies, 16 SERVER spans built (the
// decoder, pairing, the span's name and attributes, the metrics).
// Reported per command. The process is resolved once, as the agent's
// resolver caches it (the procs stub allocates a name per call).
func BenchmarkCorrelatorRedisPipeline16(b *testing.B) {
	const depth = 16
	c, err := New(DefaultConfig(), discardExporter{}, oneProc{&span.Process{PID: 1, ServiceName: "redis-server"}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	id := cid(1, 1)
	c.Bind(events.Bind{Conn: id, FD: 3, Time: t0, Plaintext: true, StreamStart: true, Tuple: events.Tuple{
		Local: netip.MustParseAddrPort("127.0.0.1:6379"), Remote: netip.MustParseAddrPort("127.0.0.1:51000"),
	}})
	var reqs, resps strings.Builder
	for range depth / 2 {
		reqs.WriteString("*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n")
		resps.WriteString("+OK\r\n")
		reqs.WriteString("*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n")
		resps.WriteString("$3\r\nxxx\r\n")
	}
	rq, rs := []byte(reqs.String()), []byte(resps.String())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		c.Data(events.Data{Conn: id, TID: 7, Time: t0, Dir: events.Read, Size: len(rq), Bytes: rq})
		c.Data(events.Data{Conn: id, TID: 7, Time: t0, Dir: events.Write, Size: len(rs), Bytes: rs})
	}
}

// TestRecycledExchanges: HTTP/1 exchanges go back to a pool once their span
// is exported. One recycled while a parser still wrote into it (a request
// whose body was still coming when the response ended it, pipelined
// requests) would mix two requests' fields in the spans that follow.
func TestRecycledExchanges(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(1, 1)
	// An early response: the request's body is still coming.
	h.read(id, 2, 1, "POST /early HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
	h.write(id, 2, 2, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
	// Another connection's request begins (with the exchange the early
	// one would have given back too soon), then the rest of both bodies.
	other := cid(1, 2)
	h.read(other, 3, 3, "POST /other HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
	h.read(id, 2, 3, "67890")
	h.read(other, 3, 3, "cd")
	h.write(other, 3, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	// Pipelined requests, answered in one write.
	h.read(id, 2, 4, "GET /p1 HTTP/1.1\r\n\r\nGET /p2 HTTP/1.1\r\n\r\nPUT /p3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
	h.write(id, 2, 5, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nxyHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nxyz")
	for i := range 20 {
		h.read(id, 2, 10+2*i, fmt.Sprintf("DELETE /k%d HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s", i, i, strings.Repeat("b", i)))
		h.write(id, 2, 11+2*i, fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s", 200+i%4, 2*i, strings.Repeat("r", 2*i)))
	}
	var got, want []string
	for _, s := range h.wantSpans(25) {
		a := attrs(s)
		got = append(got, fmt.Sprintf("%s %v %v %v %v %v-%v", s.Name, a["url.path"], a["http.request.body.size"], a["http.response.status_code"], a["http.response.body.size"], s.Start.Sub(t0).Milliseconds(), s.End.Sub(t0).Milliseconds()))
	}
	// The early response's span says what had come of the body by then.
	want = append(want, "POST /early /early 5 413 0 1-2", "POST /other /other 4 200 0 3-4",
		"GET /p1 /p1 0 200 1 4-5", "GET /p2 /p2 0 404 2 4-5", "PUT /p3 /p3 2 201 3 4-5")
	for i := range 20 {
		want = append(want, fmt.Sprintf("DELETE /k%d /k%d %d %d %d %d-%d", i, i, i, 200+i%4, 2*i, 10+2*i, 11+2*i))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("spans\n%q, want\n%q", got, want)
	}
}
