package correlator

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/span"
)

// h2wire writes one direction of an HTTP/2 connection.
type h2wire struct {
	t   *testing.T
	hb  bytes.Buffer
	enc *hpack.Encoder
	out bytes.Buffer
	fr  *http2.Framer
}

func newH2Wire(t *testing.T) *h2wire {
	w := &h2wire{t: t}
	w.enc = hpack.NewEncoder(&w.hb)
	w.fr = http2.NewFramer(&w.out, nil)
	return w
}

func (w *h2wire) headers(id uint32, end bool, kv ...string) *h2wire {
	w.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		if err := w.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: w.hb.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		w.t.Fatal(err)
	}
	return w
}

func (w *h2wire) message(id uint32, end bool, n int) *h2wire {
	b := make([]byte, 5+n)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	if err := w.fr.WriteData(id, end, b); err != nil {
		w.t.Fatal(err)
	}
	return w
}

// take returns what was written since the last take.
func (w *h2wire) take() string {
	s := w.out.String()
	w.out.Reset()
	return s
}

// TestGRPCAcrossProcesses: a gRPC client (PID 1) and server (PID 2) on one
// node, two concurrent calls on one connection answered out of order: each
// call is one CLIENT and one SERVER span, named per the RPC conventions,
// the server span the child of the client span of the same stream.
func TestGRPCAcrossProcesses(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	cl, sv := cid(1, 0x10), cid(2, 0x20)
	h.bind(cl, 5, 0, "127.0.0.1:40000", "127.0.0.1:50051")
	h.bind(sv, 6, 0, "127.0.0.1:50051", "127.0.0.1:40000")

	c := newH2Wire(t)
	c.out.WriteString(http2.ClientPreface)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	call := func(id uint32, method string) {
		c.headers(id, false, ":method", "POST", ":scheme", "https", ":path", method, ":authority", "127.0.0.1:50051",
			"content-type", "application/grpc", "te", "trailers").message(id, true, 4)
	}
	call(1, "/pkg.Svc/Get")
	call(3, "/pkg.Svc/Find")
	reqs := c.take()
	h.write(cl, 11, 1, reqs)
	h.read(sv, 21, 2, reqs)

	s := newH2Wire(t)
	if err := s.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	s.headers(3, false, ":status", "200", "content-type", "application/grpc").headers(3, true, "grpc-status", "5", "grpc-message", "no such thing")
	s.headers(1, false, ":status", "200", "content-type", "application/grpc").message(1, false, 8).message(1, false, 8).headers(1, true, "grpc-status", "0")
	resps := s.take()
	h.write(sv, 21, 3, resps)
	h.read(cl, 11, 4, resps)

	spans := h.wantSpans(4)
	byKey := map[string]*span.Span{}
	for _, sp := range spans {
		byKey[sp.Kind.String()+" "+sp.Name] = sp
	}
	for _, tc := range []struct {
		key    string
		status string
		err    bool
		resps  int64
	}{
		{"server pkg.Svc/Get", "OK", false, 2},
		{"client pkg.Svc/Get", "OK", false, 2},
		{"server pkg.Svc/Find", "NOT_FOUND", false, 0},
		{"client pkg.Svc/Find", "NOT_FOUND", true, 0},
	} {
		sp := byKey[tc.key]
		if sp == nil {
			t.Fatalf("no span %q in %v", tc.key, byKey)
		}
		checkAttrs(t, sp, map[string]any{
			"rpc.system.name":                      "grpc",
			"rpc.method":                           sp.Name,
			"rpc.response.status_code":             tc.status,
			"server.address":                       "127.0.0.1",
			"server.port":                          int64(50051),
			"network.protocol.version":             "2",
			"periscope.rpc.request.message_count":  int64(1),
			"periscope.rpc.response.message_count": tc.resps,
			"grpc.message":                         nil,
			"http.request.method":                  nil,
			"periscope.http2.headers_incomplete":   nil,
		})
		if (sp.Status == span.Error) != tc.err {
			t.Errorf("%s: status %v, want error %v", tc.key, sp.Status, tc.err)
		}
	}
	for _, m := range []string{"pkg.Svc/Get", "pkg.Svc/Find"} {
		cs, ss := byKey["client "+m], byKey["server "+m]
		if ss.ParentSpanID != cs.SpanID || ss.TraceID != cs.TraceID || !ss.RemoteParent {
			t.Errorf("%s: server span parent %s trace %s, want client span %s trace %s", m, ss.ParentSpanID, ss.TraceID, cs.SpanID, cs.TraceID)
		}
	}
}

// TestHTTP2TraceParent: a traceparent header in an HTTP/2 request makes
// the caller's span the server span's parent.
func TestHTTP2TraceParent(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	sv := cid(2, 0x20)
	c := newH2Wire(t)
	c.out.WriteString(http2.ClientPreface)
	c.headers(1, true, ":method", "GET", ":scheme", "https", ":path", "/items/42", ":authority", "shop.example",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	h.read(sv, 21, 1, c.take())
	s := newH2Wire(t)
	s.headers(1, true, ":status", "200")
	h.write(sv, 21, 2, s.take())

	sp := h.wantSpans(1)[0]
	if sp.Name != "GET /items/{id}" || sp.Kind != span.Server || sp.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" ||
		sp.ParentSpanID.String() != "b7ad6b7169203331" || !sp.RemoteParent {
		t.Errorf("span %q kind %v trace %s parent %s", sp.Name, sp.Kind, sp.TraceID, sp.ParentSpanID)
	}
	checkAttrs(t, sp, map[string]any{"http.response.status_code": int64(200), "network.protocol.version": "2", "server.address": "shop.example"})
}

// TestManyConcurrentStreams: a multiplexed connection may carry far more
// calls in flight than an HTTP/1 connection pipelines: 200 open streams
// all end as calls, none evicted.
func TestManyConcurrentStreams(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	sv := cid(2, 0x20)
	c := newH2Wire(t)
	c.out.WriteString(http2.ClientPreface)
	const n = 200
	for i := range n {
		c.headers(uint32(2*i+1), false, ":method", "POST", ":scheme", "https", ":path", "/pkg.Svc/Watch", ":authority", "a",
			"content-type", "application/grpc")
	}
	h.read(sv, 21, 1, c.take())
	s := newH2Wire(t)
	for i := range n {
		s.headers(uint32(2*i+1), true, ":status", "200", "content-type", "application/grpc", "grpc-status", "0")
	}
	h.write(sv, 21, 2, s.take())
	for _, sp := range h.wantSpans(n) {
		if sp.Status == span.Error || sp.Name != "pkg.Svc/Watch" {
			t.Fatalf("span %q status %v: %v", sp.Name, sp.Status, sp.Attributes)
		}
	}
}

// grpcCalls returns the client's and the server's bytes of n unary gRPC
// calls on one connection (streams 1, 3, 5...); the first request carries
// the preface and both first chunks the SETTINGS.
func grpcCalls(t *testing.T, n int) (reqs, resps []string) {
	c, s := newH2Wire(t), newH2Wire(t)
	c.out.WriteString(http2.ClientPreface)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := s.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := uint32(2*i + 1)
		c.headers(id, false, ":method", "POST", ":scheme", "https", ":path", "/pkg.Svc/Get", ":authority", "127.0.0.1:50051",
			"content-type", "application/grpc", "te", "trailers").message(id, true, 4)
		s.headers(id, false, ":status", "200", "content-type", "application/grpc").message(id, false, 8).headers(id, true, "grpc-status", "0")
		reqs, resps = append(reqs, c.take()), append(resps, s.take())
	}
	return reqs, resps
}

// readTo records that ring p has been read up to ms.
func (h *harness) readTo(p *ktime.Progress, ms int) { p.Advance(h.c.clock.Mono(at(ms))) }

// wantChildren checks that every server span is the child of a client span.
func wantChildren(t *testing.T, spans []*span.Span) {
	t.Helper()
	clients := map[trace.SpanID]bool{}
	for _, sp := range spans {
		if sp.Kind == span.Client {
			clients[sp.SpanID] = true
		}
	}
	for _, sp := range spans {
		if sp.Kind == span.Server && !clients[sp.ParentSpanID] {
			t.Errorf("server span %s parent %s: not a client span", sp.Name, sp.ParentSpanID)
		}
	}
}

// TestGRPCPeerWatermark: the server's ring is read before the client's
// (node's OpenSSL calling grpc-go's crypto/tls: two collectors). Each
// server span waits for its client's bytes, however late the client's ring
// is read (here 1 s of wall clock after the server's), as long as that
// ring has not been read past the span's end, and becomes the child of the
// client span of its stream.
func TestGRPCPeerWatermark(t *testing.T) {
	h := newHarness(t, graceConfig())
	srvRing, cliRing := h.c.Ring(), h.c.Ring()
	cl, sv := cid(1, 0x10), cid(2, 0x20)
	h.bind(sv, 6, 0, "127.0.0.1:50051", "127.0.0.1:40000")
	reqs, resps := grpcCalls(t, 3)
	for i := range reqs {
		ms := 10 * i
		h.read(sv, 21, ms+2, reqs[i])
		h.write(sv, 21, ms+3, resps[i])
		h.readTo(srvRing, ms+3)
	}
	h.readTo(srvRing, 1000) // the server's ring is idle
	h.c.ReleaseHeld(at(1000))
	h.wantSpans(0)
	for i := range reqs {
		ms := 10 * i
		h.write(cl, 11, ms+1, reqs[i])
		if i == 0 {
			h.bind(cl, 5, ms+1, "127.0.0.1:40000", "127.0.0.1:50051")
		}
		h.read(cl, 11, ms+4, resps[i])
	}
	wantChildren(t, h.wantSpans(6))
	h.readTo(cliRing, 24)
	h.c.ReleaseHeld(at(1001))
	if n := len(h.c.holding); n != 0 {
		t.Errorf("%d connections still hold spans", n)
	}
}

// TestGRPCPeerWatermarkRelease: a server span whose client never shows up
// leaves once every ring has been read past its end (an idle ring too: its
// reader advances to the time it found the ring empty), and after maxHold
// when a ring is read no further.
func TestGRPCPeerWatermarkRelease(t *testing.T) {
	serve := func() (*harness, *ktime.Progress) {
		h := newHarness(t, graceConfig())
		srvRing, cliRing := h.c.Ring(), h.c.Ring()
		sv := cid(2, 0x20)
		h.bind(sv, 6, 0, "127.0.0.1:50051", "127.0.0.1:40001")
		reqs, resps := grpcCalls(t, 1)
		h.read(sv, 21, 2, reqs[0])
		h.write(sv, 21, 3, resps[0])
		h.readTo(srvRing, 3)
		return h, cliRing
	}
	h, cliRing := serve()
	h.readTo(cliRing, 2)
	h.c.ReleaseHeld(at(400))
	h.wantSpans(0)
	h.readTo(cliRing, 3) // drained at 3: nothing earlier will come
	h.c.ReleaseHeld(at(400))
	if sp := h.wantSpans(1)[0]; sp.ParentSpanID.IsValid() {
		t.Errorf("span without a traced client has parent %v", sp.ParentSpanID)
	}

	h, _ = serve()
	h.c.ReleaseHeld(at(3).Add(maxHold - time.Millisecond))
	h.wantSpans(0)
	h.c.ReleaseHeld(at(3).Add(maxHold))
	h.wantSpans(1)

	// A ring whose reader stopped holds nobody.
	h, cliRing = serve()
	cliRing.Done()
	h.c.ReleaseHeld(at(4))
	h.wantSpans(1)

	// The server's connection closes before the client's ring is read:
	// it lingers, and its span still finds its parent.
	h, cliRing = serve()
	h.c.Close(events.Close{Conn: cid(2, 0x20), Time: at(5)})
	h.c.ReleaseHeld(at(600))
	h.wantSpans(0)
	reqs, resps := grpcCalls(t, 1)
	cl := cid(1, 0x10)
	h.write(cl, 11, 1, reqs[0])
	h.bind(cl, 5, 1, "127.0.0.1:40001", "127.0.0.1:50051")
	h.read(cl, 11, 4, resps[0])
	wantChildren(t, h.wantSpans(2))
	h.readTo(cliRing, 5)
	h.c.ReleaseHeld(at(601))
	if n, m := len(h.c.lingering), len(h.c.holding); n != 0 || m != 0 {
		t.Errorf("%d connections linger and %d hold after every ring passed", n, m)
	}
}

// TestGRPCLateServer: the client's ring is read first, whole calls before
// the server's bytes of them (two collectors): the client spans leave at
// once, and each server span still becomes the child of the client span
// of its stream, however late (1 s of wall clock) the server's ring is
// read.
func TestGRPCLateServer(t *testing.T) {
	h := newHarness(t, graceConfig())
	srvRing, cliRing := h.c.Ring(), h.c.Ring()
	cl, sv := cid(1, 0x10), cid(2, 0x20)
	h.bind(cl, 5, 0, "127.0.0.1:40000", "127.0.0.1:50051")
	h.bind(sv, 6, 0, "127.0.0.1:50051", "127.0.0.1:40000")
	reqs, resps := grpcCalls(t, 3)
	for i := range reqs {
		h.write(cl, 11, 10*i+1, reqs[i])
		h.read(cl, 11, 10*i+4, resps[i])
	}
	h.readTo(cliRing, 1000)
	client := h.wantSpans(3)
	// The client has even closed the connection (its exit is read before
	// the server's last bytes).
	h.c.Close(events.Close{Conn: cl, Time: at(30)})
	h.c.ReleaseHeld(at(1000))
	for i := range reqs {
		h.read(sv, 21, 10*i+2, reqs[i])
		h.write(sv, 21, 10*i+3, resps[i])
	}
	spans := h.wantSpans(6)
	for i, sp := range spans[3:] {
		if sp.Kind != span.Server || sp.ParentSpanID != client[i].SpanID || sp.TraceID != client[i].TraceID {
			t.Errorf("server span %d: kind %v parent %s, want the client span %s", i, sp.Kind, sp.ParentSpanID, client[i].SpanID)
		}
	}
	h.readTo(srvRing, 1000)
	h.c.ReleaseHeld(at(1001))
	if n := len(h.c.lingering); n != 0 {
		t.Errorf("%d closed connections still linger after every ring passed", n)
	}
}

// TestGRPCOneRing: with the events of both ends from one ring (or without
// rings), nothing waits for a peer: a server span without a traced client
// leaves at once.
func TestGRPCOneRing(t *testing.T) {
	for _, rings := range []int{0, 1} {
		h := newHarness(t, graceConfig())
		for range rings {
			h.readTo(h.c.Ring(), 3)
		}
		sv := cid(2, 0x20)
		h.bind(sv, 6, 0, "127.0.0.1:50051", "127.0.0.1:40001")
		reqs, resps := grpcCalls(t, 1)
		h.read(sv, 21, 2, reqs[0])
		h.write(sv, 21, 3, resps[0])
		h.wantSpans(1)
	}
}
