package correlator

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/span"
)

func graceConfig() Config {
	cfg := DefaultConfig()
	cfg.BindGrace = 250 * time.Millisecond
	return cfg
}

// TestBindGraceMemoryBIO replays what node does: no socket syscall inside
// SSL_read/SSL_write, so each end's socket is named only after its first
// SSL_write. The server's first exchange ends before its Bind; held for
// the Bind, its span gets the addresses and the client span as parent.
func TestBindGraceMemoryBIO(t *testing.T) {
	h := newHarness(t, graceConfig())
	cl, sv := cid(1, 1), cid(2, 1)
	h.write(cl, 1, 1, "GET /first HTTP/1.1\r\nHost: svc\r\n\r\n")
	h.bind(cl, 3, 2, "127.0.0.1:40000", "127.0.0.1:8443")
	h.read(sv, 2, 3, "GET /first HTTP/1.1\r\nHost: svc\r\n\r\n")
	h.write(sv, 2, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.wantSpans(0) // held: the server's socket is not known yet
	h.bind(sv, 4, 5, "127.0.0.1:8443", "127.0.0.1:40000")
	srv := h.wantSpans(1)[0]
	h.read(cl, 1, 6, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	cli := h.wantSpans(2)[1]
	checkAttrs(t, srv, map[string]any{"client.address": "127.0.0.1", "client.port": int64(40000), "network.peer.port": int64(40000)})
	if srv.ParentSpanID != cli.SpanID || srv.TraceID != cli.TraceID || !srv.RemoteParent {
		t.Errorf("server span parent %v trace %v, want the client span %v trace %v", srv.ParentSpanID, srv.TraceID, cli.SpanID, cli.TraceID)
	}
	if !srv.End.Equal(at(4)) {
		t.Errorf("server span ends %v, want the time of its response %v", srv.End, at(4))
	}
	// Bound now: later exchanges are exported at once.
	h.write(cl, 1, 10, "GET /second HTTP/1.1\r\nHost: svc\r\n\r\n")
	h.read(sv, 2, 11, "GET /second HTTP/1.1\r\nHost: svc\r\n\r\n")
	h.write(sv, 2, 12, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if s := h.wantSpans(3)[2]; s.Name != "GET /second" || s.Kind.String() != "server" {
		t.Errorf("span %q kind %v, want the second server span", s.Name, s.Kind)
	}
}

// TestBindGraceRelease: held spans leave without a Bind when the grace
// has passed, when the connection closes, when the process exits, and on
// Flush.
func TestBindGraceRelease(t *testing.T) {
	serve := func(h *harness, id events.ConnID, ms int) {
		h.read(id, 2, ms, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		h.write(id, 2, ms+1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	}
	h := newHarness(t, graceConfig())
	serve(h, cid(2, 1), 0)
	h.c.ReleaseHeld(at(100))
	h.wantSpans(0)
	h.c.ReleaseHeld(at(1 + 250))
	if s := h.wantSpans(1)[0]; attrs(s)["network.peer.address"] != nil {
		t.Errorf("span has a peer address without a Bind")
	}

	h = newHarness(t, graceConfig())
	serve(h, cid(2, 1), 0)
	h.c.Close(events.Close{Conn: cid(2, 1), Time: at(2)})
	h.wantSpans(1)

	h = newHarness(t, graceConfig())
	serve(h, cid(2, 1), 0)
	h.c.Exit(events.Exit{PID: 2, Time: at(2)})
	h.wantSpans(1)

	h = newHarness(t, graceConfig())
	serve(h, cid(2, 1), 0)
	serve(h, cid(2, 1), 10)
	h.c.Flush()
	h.wantSpans(2)
	if n := h.c.Connections(); n != 1 || len(h.c.holding) != 0 {
		t.Errorf("after Flush: %d connections, %d holding; want 1 and 0", n, len(h.c.holding))
	}
	if got := h.metric("periscope_spans_total", "kind", "server"); got != 2 {
		t.Errorf("periscope_spans_total{kind=server} = %v, want 2", got)
	}
}

// awaitingProcs names process 1 only once named is set; until then its
// name is on its way while awaiting is set (metadata.Processes.Awaiting).
type awaitingProcs struct {
	named, awaiting bool
}

func (a *awaitingProcs) Process(pid uint32) *span.Process {
	if a.named {
		return &span.Process{PID: pid, ServiceName: "curl"}
	}
	return &span.Process{PID: pid, ServiceName: unknownService}
}

func (a *awaitingProcs) Awaiting(uint32) bool { return a.awaiting && !a.named }

// TestNameAwaitsDiscovery: the span of a process without a name waits past
// the bind grace while its name is on its way (a curl that exited before
// discovery read its exec), and takes it when it comes; it leaves unnamed
// after maxHold, or at the grace when no name is coming.
func TestNameAwaitsDiscovery(t *testing.T) {
	run := func(p *awaitingProcs) *harness {
		exp := &recorder{}
		reg := prometheus.NewRegistry()
		c, err := New(graceConfig(), exp, p, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, c: c, exp: exp, reg: reg}
		id := cid(1, 1)
		h.bind(id, 3, 0, "127.0.0.1:40000", "127.0.0.1:8080")
		h.write(id, 1, 1, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		h.read(id, 1, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		h.c.ReleaseHeld(at(2 + 300))
		return h
	}
	p := &awaitingProcs{awaiting: true}
	h := run(p)
	h.wantSpans(0)
	p.named = true
	h.c.ReleaseHeld(at(2 + 400))
	if s := h.wantSpans(1)[0]; s.Process.ServiceName != "curl" {
		t.Errorf("service %q, want curl", s.Process.ServiceName)
	}

	h = run(&awaitingProcs{awaiting: true})
	h.c.ReleaseHeld(at(2).Add(maxHold - time.Millisecond))
	h.wantSpans(0)
	h.c.ReleaseHeld(at(2).Add(maxHold))
	if s := h.wantSpans(1)[0]; s.Process.ServiceName != unknownService {
		t.Errorf("service %q, want %s", s.Process.ServiceName, unknownService)
	}

	h = run(&awaitingProcs{})
	h.wantSpans(1) // nothing on its way: released at the grace
}

// TestPeerGraceHTTP1: without rings to wait for (Ring), an HTTP/1 server
// span with a loopback peer and no parent leaves at once, as one with a
// remote peer does.
func TestPeerGraceHTTP1(t *testing.T) {
	for _, peer := range []string{"127.0.0.1:40001", "10.0.0.2:40001"} {
		h := newHarness(t, graceConfig())
		sv := cid(2, 1)
		h.bind(sv, 4, 0, "127.0.0.1:8443", peer)
		h.read(sv, 2, 3, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		h.write(sv, 2, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		h.wantSpans(1)
	}
}

// http1Calls replays n keep-alive HTTP/1 requests, 10 ms apart: the
// client's write at 10i+1, the server's read and write at 10i+2 and
// 10i+3, the client's read at 10i+4, offset by base ms.
type http1Calls struct {
	h      *harness
	cl, sv events.ConnID
	base   int
}

func (c http1Calls) server(i int) {
	ms := c.base + 10*i
	c.h.read(c.sv, 2, ms+2, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: svc\r\n\r\n", i))
	c.h.write(c.sv, 2, ms+3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
}

func (c http1Calls) client(i int) {
	ms := c.base + 10*i
	c.h.write(c.cl, 1, ms+1, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: svc\r\n\r\n", i))
	c.h.read(c.cl, 1, ms+4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
}

// newHTTP1Rings returns the calls between a client and a server on
// loopback, the server's connection bound, whose events come from two
// rings: the server's and the client's.
func newHTTP1Rings(t *testing.T) (c http1Calls, srvRing, cliRing *ktime.Progress) {
	h := newHarness(t, graceConfig())
	srvRing, cliRing = h.c.Ring(), h.c.Ring()
	c = http1Calls{h: h, cl: cid(1, 1), sv: cid(2, 1)}
	h.bind(c.sv, 4, 0, "127.0.0.1:8443", "127.0.0.1:40001")
	return c, srvRing, cliRing
}

// wantPairs checks that each server span is the child of the client span
// of the same request (by name).
func wantPairs(t *testing.T, spans []*span.Span, want int) {
	t.Helper()
	clients := map[string]*span.Span{}
	for _, s := range spans {
		if s.Kind == span.Client {
			clients[attrs(s)["url.path"].(string)] = s
		}
	}
	n := 0
	for _, s := range spans {
		if s.Kind != span.Server {
			continue
		}
		if c := clients[attrs(s)["url.path"].(string)]; c != nil && s.ParentSpanID == c.SpanID && s.TraceID == c.TraceID {
			n++
		}
	}
	if n != want {
		t.Errorf("%d server spans are children of their client span, want %d", n, want)
	}
}

// TestRingsHTTP1: HTTP/1 on loopback across two collectors' rings (curl's
// OpenSSL calling a Go crypto/tls server). The server's ring read first:
// its spans wait for the client's ring, even 1 s of wall clock, and become
// children of their client spans; the client's ring read first: the
// client spans leave and stay pairable. A server span exported unpaired at
// the end of its wait does not shift the pairs of the later requests; a
// remote peer is not waited for.
func TestRingsHTTP1(t *testing.T) {
	c, srvRing, cliRing := newHTTP1Rings(t)
	h := c.h
	for i := range 3 {
		c.server(i)
	}
	h.readTo(srvRing, 1000)
	h.c.ReleaseHeld(at(1000))
	h.wantSpans(0)
	h.bind(c.cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8443")
	for i := range 3 {
		c.client(i)
	}
	wantPairs(t, h.wantSpans(6), 3)

	// The client's ring first.
	c, srvRing, cliRing = newHTTP1Rings(t)
	h = c.h
	h.bind(c.cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8443")
	for i := range 3 {
		c.client(i)
	}
	h.readTo(cliRing, 1000)
	h.c.ReleaseHeld(at(1000))
	h.wantSpans(3)
	for i := range 3 {
		c.server(i)
	}
	wantPairs(t, h.wantSpans(6), 3)

	// The first server span leaves unpaired at maxHold; the client's
	// first request must not become the second's parent.
	c, srvRing, _ = newHTTP1Rings(t)
	h = c.h
	c.server(0)
	h.readTo(srvRing, 3)
	h.c.ReleaseHeld(at(3).Add(maxHold))
	h.wantSpans(1)
	late := c
	late.base = int(maxHold/time.Millisecond) + 10
	late.server(1)
	h.bind(c.cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8443")
	c.client(0)
	late.client(1)
	spans := h.wantSpans(4)
	wantPairs(t, spans, 1)
	if s := spans[0]; s.ParentSpanID.IsValid() {
		t.Errorf("the span exported unpaired has parent %v", s.ParentSpanID)
	}

	// A remote peer: nothing to wait for on this node.
	h = newHarness(t, graceConfig())
	h.c.Ring()
	sv := cid(2, 1)
	h.bind(sv, 4, 0, "127.0.0.1:8443", "10.0.0.2:40001")
	h.read(sv, 2, 3, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
	h.write(sv, 2, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.wantSpans(1)
}

// TestRingsReleaseOldestFirst: of the spans a connection holds, those the
// rings have been read past leave, the younger ones still wait.
func TestRingsReleaseOldestFirst(t *testing.T) {
	c, srvRing, cliRing := newHTTP1Rings(t)
	h := c.h
	c.server(0) // ends at 3
	c.server(1) // ends at 13
	h.readTo(srvRing, 13)
	h.readTo(cliRing, 5)
	h.c.ReleaseHeld(at(500))
	if s := h.wantSpans(1)[0]; attrs(s)["url.path"] != "/0" {
		t.Errorf("released %v first, want /0", attrs(s)["url.path"])
	}
	h.bind(c.cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8443")
	c.client(0)
	c.client(1)
	wantPairs(t, h.wantSpans(4), 1)
}

// TestRingsManyWaiting: a connection finishes far more requests than
// maxPendingPerConn within one lag of the other ring (a pgx batch, a
// pipelining client): every server span still becomes the child of its
// client span, whichever ring is read first, and nothing is counted cut.
func TestRingsManyWaiting(t *testing.T) {
	const n = 300
	c, srvRing, _ := newHTTP1Rings(t)
	h := c.h
	for i := range n {
		c.server(i)
	}
	h.readTo(srvRing, 10*n)
	h.c.ReleaseHeld(at(10 * n))
	h.wantSpans(0)
	h.bind(c.cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8443")
	for i := range n {
		c.client(i)
	}
	wantPairs(t, h.wantSpans(2*n), n)

	c, _, cliRing := newHTTP1Rings(t)
	h = c.h
	h.bind(c.cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8443")
	for i := range n {
		c.client(i)
	}
	h.readTo(cliRing, 10*n)
	h.c.ReleaseHeld(at(10 * n))
	h.wantSpans(n)
	for i := range n {
		c.server(i)
	}
	wantPairs(t, h.wantSpans(2*n), n)
	if got := testutil.ToFloat64(h.c.m.waitsCut); got != 0 {
		t.Errorf("periscope_span_waits_cut_total = %v, want 0", got)
	}
}

// TestRingsProxy: a proxy's server request, its upstream call and the
// upstream's server request, read from one ring before the proxy's client
// from another, all wait for the client (exporting the call first would
// fix the proxy's trace); then the client parents the proxy's request, in
// one trace down to the upstream.
func TestRingsProxy(t *testing.T) {
	h := newHarness(t, graceConfig())
	srvRing, cliRing := h.c.Ring(), h.c.Ring()
	cl, px, up, us := cid(1, 1), cid(2, 1), cid(2, 2), cid(3, 1)
	h.bind(px, 4, 0, "127.0.0.1:8080", "127.0.0.1:40001")
	h.bind(up, 5, 0, "127.0.0.1:40002", "127.0.0.1:9000")
	h.bind(us, 6, 0, "127.0.0.1:9000", "127.0.0.1:40002")
	h.read(px, 2, 2, "GET /proxy HTTP/1.1\r\nHost: px\r\n\r\n")
	h.write(up, 2, 3, "GET /up HTTP/1.1\r\nHost: up\r\n\r\n")
	h.read(us, 3, 4, "GET /up HTTP/1.1\r\nHost: up\r\n\r\n")
	h.write(us, 3, 5, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.read(up, 2, 6, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.write(px, 2, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.readTo(srvRing, 1000)
	h.c.ReleaseHeld(at(1000))
	h.wantSpans(0)
	h.bind(cl, 3, 0, "127.0.0.1:40001", "127.0.0.1:8080")
	h.write(cl, 1, 1, "GET /proxy HTTP/1.1\r\nHost: px\r\n\r\n")
	h.read(cl, 1, 8, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.readTo(cliRing, 1000)
	h.c.ReleaseHeld(at(1000))
	spans := h.wantSpans(4)
	byKey := map[string]*span.Span{}
	for _, s := range spans {
		byKey[fmt.Sprintf("%v %v", s.Kind, attrs(s)["url.path"])] = s
	}
	for _, e := range []struct{ child, parent string }{
		{"server /proxy", "client /proxy"},
		{"client /up", "server /proxy"},
		{"server /up", "client /up"},
	} {
		c, p := byKey[e.child], byKey[e.parent]
		if c == nil || p == nil {
			t.Fatalf("spans %v: no %q or %q", byKey, e.child, e.parent)
		}
		if c.ParentSpanID != p.SpanID || c.TraceID != p.TraceID {
			t.Errorf("%s: parent %v trace %v, want %s's %v %v", e.child, c.ParentSpanID, c.TraceID, e.parent, p.SpanID, p.TraceID)
		}
	}
}

// TestHeldLeaveWhenRingsCaught: a loopback server's span held for its
// client (awaitsPeer) leaves as soon as the last ring to hold it back
// reports a batch read past its end (ktime.Progress.Caught), before any
// tick of Run; one that ended after what the rings have read stays held.
func TestHeldLeaveWhenRingsCaught(t *testing.T) {
	h := newHarness(t, graceConfig())
	a, b := h.c.Ring(), h.c.Ring()
	now := time.Now() // the wait is counted against the clock (maxHold)
	ms := func(d int) time.Time { return now.Add(time.Duration(d) * time.Millisecond) }
	tu := tuple("127.0.0.1:8443", "127.0.0.1:50000")
	for i, end := range []int{-10, 0} {
		id := uint64(1 + i)
		h.c.RequestStart(events.RequestStart{PID: 1, ID: id, Kind: events.RequestServer, Time: ms(end - 1), FD: 3, Tuple: tu, Goroutine: 0xc0001000})
		h.c.RequestEnd(events.RequestEnd{PID: 1, ID: id, Kind: events.RequestServer, Time: ms(end), Method: "GET", Path: []string{"/first", "/second"}[i],
			Host: "127.0.0.1:8443", Status: 200, RequestBodySize: -1})
	}
	h.wantSpans(0)
	a.Advance(h.c.clock.Mono(ms(-5)))
	a.Caught()
	h.wantSpans(0) // b has read nothing yet
	b.Advance(h.c.clock.Mono(ms(-5)))
	b.Caught()
	if s := h.wantSpans(1)[0]; s.Name != "GET /first" {
		t.Errorf("span %q left, want GET /first", s.Name)
	}
	b.Caught() // nothing read since: the second stays
	h.wantSpans(1)
}
