package correlator

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/events"
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

// TestPeerGraceHTTP1: the hold for a late client end (TestGRPCPeerGrace)
// is for HTTP/2 streams only: an HTTP/1 server span with a loopback peer
// and no parent leaves at once, as one with a remote peer does.
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
