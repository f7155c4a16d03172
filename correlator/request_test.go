package correlator

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

func tuple(local, remote string) events.Tuple {
	return events.Tuple{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
}

func (h *harness) start(pid uint32, id, parent uint64, kind events.RequestKind, ms int, fd int32, t events.Tuple) {
	h.c.RequestStart(events.RequestStart{PID: pid, ID: id, Parent: parent, Kind: kind, Time: at(ms), FD: fd, Tuple: t, TLS: true})
}

func (h *harness) end(pid uint32, id uint64, kind events.RequestKind, ms int, method, path string, status int) {
	h.c.RequestEnd(events.RequestEnd{PID: pid, ID: id, Kind: kind, Time: at(ms), Method: method, Path: path,
		Host: "api.example:8443", Status: status, RequestBodySize: -1, ResponseBodySize: 12})
}

func byName(spans []*span.Span) map[string]*span.Span {
	m := make(map[string]*span.Span)
	for _, s := range spans {
		m[s.Name+" "+s.Kind.String()] = s
	}
	return m
}

func TestWholeServerRequest(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.start(7, 0xabc, 0, events.RequestServer, 1, 5, tuple(serverAddr, clientAddr))
	h.end(7, 0xabc, events.RequestServer, 4, "GET", "/users/42", 404)
	s := h.wantSpans(1)[0]
	if s.Kind != span.Server || s.Name != "GET /users/{id}" || s.SpanID != spanIDOf(0xabc) {
		t.Errorf("span %s %q id %s", s.Kind, s.Name, s.SpanID)
	}
	if s.Start != at(1) || s.End != at(4) || s.Status != span.Unset {
		t.Errorf("span %v-%v status %v", s.Start, s.End, s.Status)
	}
	checkAttrs(t, s, map[string]any{
		"http.response.status_code": int64(404),
		"url.path":                  "/users/42",
		"http.route":                "/users/{id}",
		"url.scheme":                "https",
		"client.address":            "10.0.0.2",
		"server.address":            "api.example",
		"http.response.body.size":   int64(12),
	})
	if h.c.Connections() != 1 {
		t.Errorf("connections %d, want the keep-alive connection", h.c.Connections())
	}
}

func TestWholeClientChildOfServer(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.start(7, 1, 0, events.RequestServer, 1, 5, tuple(serverAddr, clientAddr))
	h.start(7, 2, 1, events.RequestClient, 2, 9, tuple("10.0.0.1:40000", "10.0.0.9:443"))
	h.end(7, 2, events.RequestClient, 3, "POST", "/charge", 201)
	h.start(7, 3, 1, events.RequestClient, 4, -1, events.Tuple{})
	h.c.RequestEnd(events.RequestEnd{PID: 7, ID: 3, Kind: events.RequestClient, Time: at(5), Method: "GET", Path: "/x", Failed: true})
	h.end(7, 1, events.RequestServer, 6, "GET", "/checkout", 200)
	m := byName(h.wantSpans(3))
	srv, ok1 := m["GET /checkout server"]
	cl, ok2 := m["POST /charge client"]
	failed, ok3 := m["GET /x client"]
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("spans %v", m)
	}
	for _, child := range []*span.Span{cl, failed} {
		if child.ParentSpanID != srv.SpanID || child.TraceID != srv.TraceID || child.RemoteParent {
			t.Errorf("%s: parent %s trace %s, want local child of %s in %s", child.Name, child.ParentSpanID, child.TraceID, srv.SpanID, srv.TraceID)
		}
	}
	if failed.Status != span.Error {
		t.Errorf("failed call status %v", failed.Status)
	}
	checkAttrs(t, failed, map[string]any{"error.type": "request_failed", "http.response.status_code": nil})
	if h.c.Connections() != 2 {
		t.Errorf("connections %d: the socketless one must be gone, the two keep-alive ones kept", h.c.Connections())
	}
}

// An OpenSSL client (curl) calling a Go server on the same node, and a Go
// client calling an OpenSSL server (nginx): each server span is the child
// of the client span at the other end of its connection.
func TestWholeLinksWithByteStreams(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	// curl (pid 1) -> Go server (pid 2)
	curl := cid(1, 0x1000)
	h.write(curl, 1, 1, "GET /a HTTP/1.1\r\nHost: go\r\n\r\n")
	h.bind(curl, 3, 1, "127.0.0.1:50000", "127.0.0.1:8443")
	h.start(2, 10, 0, events.RequestServer, 2, 4, tuple("127.0.0.1:8443", "127.0.0.1:50000"))
	h.end(2, 10, events.RequestServer, 3, "GET", "/a", 200)
	h.read(curl, 1, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	// Go client (pid 2) -> nginx (pid 3)
	h.start(2, 20, 0, events.RequestClient, 10, 6, tuple("127.0.0.1:50001", "127.0.0.1:443"))
	ngx := cid(3, 0x2000)
	h.bind(ngx, 7, 11, "127.0.0.1:443", "127.0.0.1:50001")
	h.read(ngx, 3, 11, "GET /b HTTP/1.1\r\nHost: n\r\n\r\n")
	h.write(ngx, 3, 12, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.end(2, 20, events.RequestClient, 13, "GET", "/b", 200)

	m := byName(h.wantSpans(4))
	for _, p := range []struct{ server, client string }{{"GET /a server", "GET /a client"}, {"GET /b server", "GET /b client"}} {
		sv, cl := m[p.server], m[p.client]
		if sv == nil || cl == nil {
			t.Fatalf("missing %q or %q in %v", p.server, p.client, m)
		}
		if sv.ParentSpanID != cl.SpanID || sv.TraceID != cl.TraceID || !sv.RemoteParent {
			t.Errorf("%s: parent %s trace %s, want remote child of %s in %s", p.server, sv.ParentSpanID, sv.TraceID, cl.SpanID, cl.TraceID)
		}
	}
}

func TestWholeExitAndUnmatched(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.end(7, 99, events.RequestServer, 1, "GET", "/", 200) // start not seen
	if got := h.metric("periscope_request_ends_unmatched_total"); got != 1 {
		t.Errorf("unmatched ends %v, want 1", got)
	}
	h.start(7, 1, 0, events.RequestServer, 2, 5, tuple(serverAddr, clientAddr))
	h.c.Exit(events.Exit{PID: 7, Time: at(3)})
	// The end of a request seen whole may never come for reasons that are
	// not errors (HTTP/2 streams, hijacked connections): no span, a count.
	h.wantSpans(0)
	if got := h.metric("periscope_requests_without_end_total"); got != 1 {
		t.Errorf("requests without end %v, want 1", got)
	}
	if h.c.Connections() != 0 || len(h.c.whole) != 0 {
		t.Errorf("state left after exit: %d connections, %d requests", h.c.Connections(), len(h.c.whole))
	}
}

// TestWholeServerTraceParent: a Go server request whose probe found a
// traceparent header continues that trace; anything else starts a new one.
func TestWholeServerTraceParent(t *testing.T) {
	const (
		tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		sid = "00f067aa0ba902b7"
	)
	tests := []struct {
		name   string
		header string
		remote bool
	}{
		{"version 00", "00-" + tid + "-" + sid + "-01", true},
		{"not sampled", "00-" + tid + "-" + sid + "-00", true},
		{"later version with more fields", "cc-" + tid + "-" + sid + "-01-what-the-future-holds", true},
		{"later version cut at 64 bytes", ("cc-" + tid + "-" + sid + "-01-" + "0123456789abcdef")[:64], true},
		{"absent", "", false},
		{"version ff", "ff-" + tid + "-" + sid + "-01", false},
		{"version 00 with extra fields", "00-" + tid + "-" + sid + "-01-x", false},
		{"upper-case hex", "00-" + strings.ToUpper(tid) + "-" + sid + "-01", false},
		{"zero trace ID", "00-00000000000000000000000000000000-" + sid + "-01", false},
		{"zero span ID", "00-" + tid + "-0000000000000000-01", false},
		{"short", "00-" + tid + "-" + sid, false},
		{"bad separator", "00_" + tid + "-" + sid + "-01", false},
		{"not hex flags", "00-" + tid + "-" + sid + "-zz", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			h.c.RequestStart(events.RequestStart{PID: 7, ID: 1, Kind: events.RequestServer, Time: at(1), FD: 5,
				Tuple: tuple(serverAddr, clientAddr), TraceParent: tc.header})
			h.end(7, 1, events.RequestServer, 2, "GET", "/", 200)
			s := h.wantSpans(1)[0]
			got := s.TraceID.String() == tid && s.ParentSpanID.String() == sid && s.RemoteParent
			if got != tc.remote {
				t.Errorf("trace %s parent %s remote %v; want the header's: %v", s.TraceID, s.ParentSpanID, s.RemoteParent, tc.remote)
			}
			if !tc.remote && (s.ParentSpanID.IsValid() || !s.TraceID.IsValid() || s.TraceID.String() == tid) {
				t.Errorf("trace %s parent %s, want a new trace without parent", s.TraceID, s.ParentSpanID)
			}
		})
	}
}

// TestWholeTraceParentWinsOverTuple: a Go client and a Go server on this
// node, on the two ends of one connection, and the client's request
// carries a traceparent naming another span (its own instrumentation's):
// the server span continues the declared trace; without the header, it is
// the child of the client span.
func TestWholeTraceParentWinsOverTuple(t *testing.T) {
	const header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, withHeader := range []bool{true, false} {
		h := newHarness(t, DefaultConfig())
		h.start(1, 10, 0, events.RequestClient, 1, 6, tuple("127.0.0.1:50001", "127.0.0.1:8080"))
		tp := ""
		if withHeader {
			tp = header
		}
		h.c.RequestStart(events.RequestStart{PID: 2, ID: 20, Kind: events.RequestServer, Time: at(2), FD: 4,
			Tuple: tuple("127.0.0.1:8080", "127.0.0.1:50001"), TraceParent: tp})
		h.end(2, 20, events.RequestServer, 3, "GET", "/b", 200)
		h.end(1, 10, events.RequestClient, 4, "GET", "/b", 200)
		m := byName(h.wantSpans(2))
		sv, cl := m["GET /b server"], m["GET /b client"]
		if sv == nil || cl == nil {
			t.Fatalf("spans %v", m)
		}
		switch {
		case withHeader && (sv.TraceID.String() != header[3:35] || sv.ParentSpanID.String() != header[36:52] || !sv.RemoteParent):
			t.Errorf("with traceparent: server trace %s parent %s, want the header's", sv.TraceID, sv.ParentSpanID)
		case !withHeader && (sv.ParentSpanID != cl.SpanID || sv.TraceID != cl.TraceID || !sv.RemoteParent):
			t.Errorf("without traceparent: server trace %s parent %s, want the remote child of %s", sv.TraceID, sv.ParentSpanID, cl.SpanID)
		}
	}
}

// HTTP/2 connections carry concurrent streams: a server request is linked
// to a client request at the other end only when they are the only
// unmatched ones on their ends, and never to a client request that started
// after it. The protocol version comes from the start.
func TestWholeHTTP2Pairing(t *testing.T) {
	cli, srv := tuple("127.0.0.1:50000", "127.0.0.1:8443"), tuple("127.0.0.1:8443", "127.0.0.1:50000")
	type ev struct {
		kind events.RequestKind
		id   uint64
		ms   int
		end  bool
	}
	c, s := events.RequestClient, events.RequestServer
	for _, tc := range []struct {
		name   string
		events []ev
		links  map[uint64]uint64 // server ID -> client ID it is the child of; absent: no parent
	}{
		{"one at a time", []ev{
			{c, 1, 1, false}, {s, 11, 2, false}, {s, 11, 3, true}, {c, 1, 4, true},
			{c, 2, 5, false}, {s, 12, 6, false}, {s, 12, 7, true}, {c, 2, 8, true},
		}, map[uint64]uint64{11: 1, 12: 2}},
		{"two in flight: no guess", []ev{
			{c, 1, 1, false}, {c, 2, 2, false}, {s, 12, 3, false}, {s, 11, 4, false},
			{s, 12, 5, true}, {s, 11, 6, true}, {c, 2, 7, true}, {c, 1, 8, true},
		}, map[uint64]uint64{}},
		{"the later request alone again", []ev{
			{c, 1, 1, false}, {c, 2, 2, false}, {s, 11, 3, false}, {s, 11, 4, true}, {c, 1, 5, true},
			{s, 12, 6, false}, {c, 3, 7, false}, {s, 13, 8, false},
			{s, 12, 9, true}, {c, 2, 10, true}, {s, 13, 11, true}, {c, 3, 12, true},
		}, map[uint64]uint64{12: 2, 13: 3}},
		{"client started after the server request", []ev{
			{s, 11, 1, false}, {c, 1, 2, false}, {s, 11, 3, true}, {c, 1, 4, true},
		}, map[uint64]uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			n := 0
			for _, e := range tc.events {
				pid, fd, tu := uint32(1), int32(3), cli
				if e.kind == s {
					pid, fd, tu = 2, 4, srv
				}
				if !e.end {
					h.c.RequestStart(events.RequestStart{PID: pid, ID: e.id, Kind: e.kind, Time: at(e.ms), FD: fd, Tuple: tu, TLS: true, Version: "2"})
					continue
				}
				h.end(pid, e.id, e.kind, e.ms, "GET", fmt.Sprintf("/item/%d", e.id%10), 200)
				n++
			}
			spans := h.wantSpans(n)
			byID := make(map[trace.SpanID]*span.Span)
			for _, sp := range spans {
				byID[sp.SpanID] = sp
				checkAttrs(t, sp, map[string]any{"network.protocol.version": "2"})
			}
			for _, sp := range spans {
				if sp.Kind != span.Server {
					continue
				}
				var got uint64
				if p := byID[sp.ParentSpanID]; p != nil {
					got = binary.LittleEndian.Uint64(p.SpanID[:])
				}
				id := binary.LittleEndian.Uint64(sp.SpanID[:])
				if want := tc.links[id]; got != want {
					t.Errorf("server request %d: child of client request %d, want %d", id, got, want)
				}
			}
		})
	}
}

// TestExitReadBeforeLastEnd: a Go client's last call ends in gohttp's
// ring just before the process exits, and another collector's ring (gotls)
// brings the exit first. The exit waits until every ring has been read
// past it: the call ends with its response (one span, nothing unmatched),
// then the process's state goes. A call whose end never comes ends with
// the exit once the rings are read past it.
func TestExitReadBeforeLastEnd(t *testing.T) {
	h := newHarness(t, graceConfig())
	gohttp, gotls := h.c.Ring(), h.c.Ring()
	h.start(2, 10, 0, events.RequestClient, 1, 6, tuple("127.0.0.1:50001", "127.0.0.1:8443"))
	h.readTo(gohttp, 1)
	h.c.Exit(events.Exit{PID: 2, Time: at(5)}) // gotls's marker
	h.readTo(gotls, 5)
	h.c.ReleaseHeld(at(6))
	h.end(2, 10, events.RequestClient, 4, "GET", "/last", 200)
	h.readTo(gohttp, 6)
	h.c.ReleaseHeld(at(7))
	s := h.wantSpans(1)[0]
	if st := attrs(s)["http.response.status_code"]; st != int64(200) {
		t.Errorf("span status code %v, want 200 (%v)", st, attrs(s))
	}
	for _, m := range []string{"periscope_request_ends_unmatched_total", "periscope_requests_without_end_total"} {
		if got := h.metric(m); got != 0 {
			t.Errorf("%s %v, want 0", m, got)
		}
	}
	if h.c.Connections() != 0 || len(h.c.whole) != 0 || len(h.c.ended) != 0 {
		t.Errorf("state left after exit: %d connections, %d requests, %d exits", h.c.Connections(), len(h.c.whole), len(h.c.ended))
	}

	// The end never comes.
	h.start(3, 20, 0, events.RequestClient, 10, 6, tuple("127.0.0.1:50002", "127.0.0.1:8443"))
	h.c.Exit(events.Exit{PID: 3, Time: at(15)})
	h.readTo(gotls, 20)
	h.c.ReleaseHeld(at(20))
	if h.c.Connections() != 1 {
		t.Fatalf("%d connections while gohttp's ring is behind the exit, want 1", h.c.Connections())
	}
	h.readTo(gohttp, 20)
	h.c.ReleaseHeld(at(21))
	h.wantSpans(1)
	if got := h.metric("periscope_requests_without_end_total"); got != 1 || h.c.Connections() != 0 {
		t.Errorf("requests without end %v, connections %d; want 1, 0", got, h.c.Connections())
	}

	// A ring that stays behind holds an exit maxHold at most.
	h.start(4, 30, 0, events.RequestClient, 30, 6, tuple("127.0.0.1:50003", "127.0.0.1:8443"))
	h.c.Exit(events.Exit{PID: 4, Time: at(35)})
	h.c.ReleaseHeld(at(35).Add(maxHold))
	if h.c.Connections() != 0 {
		t.Errorf("%d connections %v after the exit, want 0", h.c.Connections(), maxHold)
	}
}

// TestExecReadBeforeOldProgramsEnd: an exec marker read from one ring
// before another ring's last response of the old program: the old
// program's request still ends with its response; the new program's
// connection, active after the exec, stays.
func TestExecReadBeforeOldProgramsEnd(t *testing.T) {
	h := newHarness(t, graceConfig())
	gohttp, sockets := h.c.Ring(), h.c.Ring()
	h.start(2, 10, 0, events.RequestClient, 1, 6, tuple("127.0.0.1:50001", "127.0.0.1:8443"))
	h.c.Exec(events.Exec{PID: 2, Time: at(5)}) // the sockets ring's marker
	h.readTo(sockets, 5)
	h.c.ReleaseHeld(at(6))
	h.end(2, 10, events.RequestClient, 4, "GET", "/old", 200)
	h.start(2, 11, 0, events.RequestClient, 7, 7, tuple("127.0.0.1:50002", "127.0.0.1:8443"))
	h.readTo(gohttp, 8)
	h.c.ReleaseHeld(at(9))
	if s := h.wantSpans(1)[0]; attrs(s)["url.path"] != "/old" || attrs(s)["error.type"] != nil {
		t.Errorf("span %v, want /old complete", attrs(s))
	}
	if h.c.Connections() != 1 {
		t.Errorf("%d connections after the exec, want the new program's 1", h.c.Connections())
	}
}

// TestWholeWinsOverGoTLS: over Transport.DialTLSContext, gotls copies
// HTTP/2's preface before gohttp's first request on the connection, and
// the two rings are read in any order. Whichever is read first, gohttp's
// whole requests speak for the connection: the server requests are the
// children of the client's, and the preface makes no span.
func TestWholeWinsOverGoTLS(t *testing.T) {
	cli, srv := tuple("127.0.0.1:50000", "127.0.0.1:8443"), tuple("127.0.0.1:8443", "127.0.0.1:50000")
	for _, gotlsFirst := range []bool{true, false} {
		h := newHarness(t, DefaultConfig())
		gotls := cid(1, 0xc000100000)
		preface := func() {
			h.bind(gotls, 3, 1, "127.0.0.1:50000", "127.0.0.1:8443")
			h.write(gotls, 1, 1, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		}
		if gotlsFirst {
			preface()
		}
		for i := range uint64(3) {
			ms := 10 * int(i+1)
			h.start(1, 100+i, 0, events.RequestClient, ms, 3, cli)
			if i == 0 && !gotlsFirst {
				preface()
			}
			h.start(2, 200+i, 0, events.RequestServer, ms+1, 4, srv)
			h.end(2, 200+i, events.RequestServer, ms+2, "GET", "/", 200)
			h.end(1, 100+i, events.RequestClient, ms+3, "GET", "/", 200)
		}
		wantChildren(t, h.wantSpans(6))
		if got := h.metric("periscope_connections_superseded_total"); got != 1 {
			t.Errorf("gotls first %v: superseded %v, want 1", gotlsFirst, got)
		}
	}
}
