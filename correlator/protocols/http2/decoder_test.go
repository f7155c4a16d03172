package http2

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// wire builds the two directions of an HTTP/2 connection with a real
// framer and HPACK encoders, as a sequence of chunks.
type wire struct {
	t      *testing.T
	enc    [2]*hpack.Encoder // by side-1
	buf    [2]bytes.Buffer   // encoder output
	fr     [2]*http2.Framer
	out    [2]bytes.Buffer // frames not yet flushed as a chunk
	chunks []sideChunk
}

type sideChunk struct {
	side protocol.Side
	b    []byte
}

func newWire(t *testing.T) *wire {
	w := &wire{t: t}
	for i := range 2 {
		w.enc[i] = hpack.NewEncoder(&w.buf[i])
		w.fr[i] = http2.NewFramer(&w.out[i], nil)
	}
	return w
}

func (w *wire) block(side protocol.Side, fields ...string) []byte {
	i := side - 1
	w.buf[i].Reset()
	for j := 0; j+1 < len(fields); j += 2 {
		if err := w.enc[i].WriteField(hpack.HeaderField{Name: fields[j], Value: fields[j+1]}); err != nil {
			w.t.Fatal(err)
		}
	}
	return bytes.Clone(w.buf[i].Bytes())
}

func (w *wire) headers(side protocol.Side, id uint32, end bool, fields ...string) {
	b := w.block(side, fields...)
	if err := w.fr[side-1].WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: end, EndHeaders: true}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wire) data(side protocol.Side, id uint32, end bool, b []byte) {
	if err := w.fr[side-1].WriteData(id, end, b); err != nil {
		w.t.Fatal(err)
	}
}

// flush makes the frames written so far on side one chunk.
func (w *wire) flush(side protocol.Side) {
	w.chunks = append(w.chunks, sideChunk{side, bytes.Clone(w.out[side-1].Bytes())})
	w.out[side-1].Reset()
}

func (w *wire) raw(side protocol.Side, b []byte) { w.chunks = append(w.chunks, sideChunk{side, b}) }

// grpcMsg is a length-prefixed gRPC message.
func grpcMsg(n int) []byte {
	b := make([]byte, 5+n)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	return b
}

type got struct {
	x      *Exchange
	reason string
	end    time.Time
}

type rec struct {
	begun int
	ended []got
}

func (r *rec) Begin(protocol.Exchange) { r.begun++ }
func (r *rec) End(x protocol.Exchange, t time.Time, reason string) {
	r.ended = append(r.ended, got{x.(*Exchange), reason, t})
}

func testProtocol(t testing.TB) *Protocol {
	sem, err := httpspan.New(httpspan.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(sem, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// feed feeds the chunks, each split in pieces of at most split bytes (0:
// whole), at times 1s, 2s, ...
func feed(t *testing.T, d protocol.Decoder, chunks []sideChunk, split int) {
	for i, c := range chunks {
		b := c.b
		for len(b) > 0 || len(c.b) == 0 {
			n := len(b)
			if split > 0 {
				n = min(n, split)
			}
			if err := d.Feed(c.side, protocol.Chunk{Bytes: b[:n], Size: n, Time: time.Unix(int64(i+1), 0)}); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
			if len(c.b) == 0 {
				break
			}
		}
	}
}

const req, resp = protocol.Requests, protocol.Responses

func start(w *wire) {
	w.raw(req, []byte(Preface))
	if err := w.fr[0].WriteSettings(); err != nil {
		w.t.Fatal(err)
	}
	w.flush(req)
	if err := w.fr[1].WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192}); err != nil {
		w.t.Fatal(err)
	}
	w.flush(resp)
}

func grpcRequest(w *wire, id uint32, method string) {
	w.headers(req, id, false, ":method", "POST", ":scheme", "https", ":path", method, ":authority", "api.example:8443",
		"content-type", "application/grpc", "te", "trailers", "grpc-timeout", "1S",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
}

func grpcResponse(w *wire, id uint32, status string, msgs int) {
	w.headers(resp, id, false, ":status", "200", "content-type", "application/grpc")
	for range msgs {
		w.data(resp, id, false, grpcMsg(10))
	}
	w.headers(resp, id, true, "grpc-status", status, "grpc-message", "secret detail")
}

func TestStreams(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(w *wire)
		check func(t *testing.T, r *rec)
	}{
		{"plain HTTP/2 GET", func(w *wire) {
			start(w)
			w.headers(req, 1, true, ":method", "GET", ":scheme", "https", ":path", "/a?x=1", ":authority", "h.example", "user-agent", "curl/8")
			w.flush(req)
			w.headers(resp, 1, false, ":status", "404", "content-type", "text/html")
			w.data(resp, 1, true, []byte("not found"))
			w.flush(resp)
		}, func(t *testing.T, r *rec) {
			x := one(t, r)
			if x.GRPC || x.Req.Method != "GET" || x.Req.Path != "/a" || x.Req.RawQuery != "x=1" || x.Req.Host != "h.example" ||
				x.Req.UserAgent != "curl/8" || x.Resp.StatusCode != 404 || x.Resp.BodySize != 9 || x.StreamID != 1 || x.HeadersIncomplete {
				t.Errorf("exchange %+v req %+v resp %+v", x, x.Req, x.Resp)
			}
		}},
		{"gRPC unary with trailers", func(w *wire) {
			start(w)
			grpcRequest(w, 1, "/pkg.Svc/Get")
			w.data(req, 1, true, grpcMsg(3))
			w.flush(req)
			grpcResponse(w, 1, "5", 1)
			w.flush(resp)
		}, func(t *testing.T, r *rec) {
			x := one(t, r)
			checkCall(t, x, "/pkg.Svc/Get", "5", 1, 1)
			if x.Req.TraceParent == "" {
				t.Error("traceparent not read")
			}
		}},
		{"trailers-only response", func(w *wire) {
			start(w)
			grpcRequest(w, 1, "/pkg.Svc/Missing")
			w.data(req, 1, true, grpcMsg(0))
			w.flush(req)
			w.headers(resp, 1, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "12")
			w.flush(resp)
		}, func(t *testing.T, r *rec) { checkCall(t, one(t, r), "/pkg.Svc/Missing", "12", 1, 0) }},
		{"streaming both ways, interleaved streams", func(w *wire) {
			start(w)
			grpcRequest(w, 1, "/pkg.Svc/Chat")
			grpcRequest(w, 3, "/pkg.Svc/Get")
			w.data(req, 1, false, grpcMsg(4))
			w.data(req, 3, true, grpcMsg(4))
			// Two messages in one frame, one message across two.
			w.data(req, 1, false, append(grpcMsg(1), grpcMsg(2)...))
			m := grpcMsg(100)
			w.data(req, 1, false, m[:50])
			w.data(req, 1, true, m[50:])
			w.flush(req)
			grpcResponse(w, 3, "0", 1)
			grpcResponse(w, 1, "0", 3)
			w.flush(resp)
		}, func(t *testing.T, r *rec) {
			if len(r.ended) != 2 {
				t.Fatalf("%d exchanges ended, want 2", len(r.ended))
			}
			checkCall(t, r.ended[0].x, "/pkg.Svc/Get", "0", 1, 1)
			checkCall(t, r.ended[1].x, "/pkg.Svc/Chat", "0", 4, 3)
		}},
		{"RST_STREAM and GOAWAY end streams: a gRPC call with its reset code's status", func(w *wire) {
			start(w)
			grpcRequest(w, 1, "/pkg.Svc/A")
			grpcRequest(w, 3, "/pkg.Svc/B")
			grpcRequest(w, 5, "/pkg.Svc/C")
			grpcRequest(w, 7, "/pkg.Svc/D")
			grpcRequest(w, 9, "/pkg.Svc/E")
			if err := w.fr[0].WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
			w.flush(req)
			// STREAM_CLOSED has no gRPC status; REFUSED_STREAM is
			// UNAVAILABLE.
			if err := w.fr[1].WriteRSTStream(7, http2.ErrCodeStreamClosed); err != nil {
				t.Fatal(err)
			}
			if err := w.fr[1].WriteRSTStream(9, http2.ErrCodeRefusedStream); err != nil {
				t.Fatal(err)
			}
			if err := w.fr[1].WriteGoAway(3, http2.ErrCodeNo, nil); err != nil {
				t.Fatal(err)
			}
			grpcResponse(w, 3, "0", 1)
			w.flush(resp)
		}, func(t *testing.T, r *rec) {
			want := []struct{ path, status, reason string }{
				{"/pkg.Svc/A", "1", ""}, {"/pkg.Svc/D", "", protocol.ReasonReset}, {"/pkg.Svc/E", "14", ""},
				{"/pkg.Svc/C", "", protocol.ReasonReset}, {"/pkg.Svc/B", "0", ""},
			}
			if len(r.ended) != len(want) {
				t.Fatalf("%d ended, want %d", len(r.ended), len(want))
			}
			for i, w := range want {
				x := r.ended[i].x
				if x.Call.Path != w.path || x.Call.Status != w.status || r.ended[i].reason != w.reason {
					t.Errorf("end %d: %s status %q reason %q, want %s %q %q", i, x.Call.Path, x.Call.Status, r.ended[i].reason, w.path, w.status, w.reason)
				}
			}
		}},
		{"a CANCEL once grpc-timeout ran out is DEADLINE_EXCEEDED", func(w *wire) {
			start(w)
			grpcRequest(w, 1, "/pkg.Svc/Slow") // grpc-timeout 1S
			w.flush(req)
			if err := w.fr[0].WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
			w.flush(req) // a chunk, a second later
		}, func(t *testing.T, r *rec) {
			if x := one(t, r); x.Call.Status != "4" || r.ended[0].reason != "" {
				t.Errorf("status %q reason %q, want DEADLINE_EXCEEDED (4)", x.Call.Status, r.ended[0].reason)
			}
		}},
		{"CONTINUATION and padding", func(w *wire) {
			start(w)
			b := w.block(req, ":method", "POST", ":scheme", "https", ":path", "/pkg.Svc/Long", ":authority", "a",
				"content-type", "application/grpc", "x-big", strings.Repeat("v", 300))
			if err := w.fr[0].WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10], PadLength: 7, Priority: http2.PriorityParam{Weight: 3}}); err != nil {
				t.Fatal(err)
			}
			if err := w.fr[0].WriteContinuation(1, false, b[10:100]); err != nil {
				t.Fatal(err)
			}
			if err := w.fr[0].WriteContinuation(1, true, b[100:]); err != nil {
				t.Fatal(err)
			}
			if err := w.fr[0].WriteDataPadded(1, true, grpcMsg(2), make([]byte, 20)); err != nil {
				t.Fatal(err)
			}
			w.flush(req)
			grpcResponse(w, 1, "0", 2)
			w.flush(resp)
		}, func(t *testing.T, r *rec) { checkCall(t, one(t, r), "/pkg.Svc/Long", "0", 1, 2) }},
	} {
		for _, split := range []int{0, 1, 7} {
			t.Run(tc.name, func(t *testing.T) {
				w := newWire(t)
				tc.build(w)
				r := &rec{}
				d := testProtocol(t).NewDecoder(protocol.Server, r)
				feed(t, d, w.chunks, split)
				tc.check(t, r)
			})
		}
	}
}

func one(t *testing.T, r *rec) *Exchange {
	t.Helper()
	if r.begun != 1 || len(r.ended) != 1 || r.ended[0].reason != "" {
		t.Fatalf("begun %d, ended %+v; want one complete exchange", r.begun, r.ended)
	}
	return r.ended[0].x
}

func checkCall(t *testing.T, x *Exchange, path, status string, reqs, resps int) {
	t.Helper()
	nq, okq := x.Call.Requests.Count()
	ns, oks := x.Call.Responses.Count()
	if !x.GRPC || x.Call.Path != path || x.Call.Status != status || nq != reqs || ns != resps || !okq || !oks || x.HeadersIncomplete {
		t.Errorf("call %+v (grpc %v, incomplete %v): want %s status %s messages %d/%d", x.Call, x.GRPC, x.HeadersIncomplete, path, status, reqs, resps)
	}
}

// TestAttachMidConnection: the agent sees a connection only after calls
// filled both HPACK tables. Fields that reference entries it never saw
// are missing, never wrong, and the exchange says so; after the encoder
// empties its table, headers decode in full again.
func TestAttachMidConnection(t *testing.T) {
	w := newWire(t)
	start(w)
	for id := uint32(1); id <= 5; id += 2 {
		grpcRequest(w, id, "/pkg.Svc/Get")
		w.data(req, id, true, grpcMsg(1))
		grpcResponse(w, id, "0", 1)
	}
	w.flush(req)
	w.flush(resp)
	w.chunks = nil // the agent starts here

	grpcRequest(w, 7, "/pkg.Svc/Get")
	w.data(req, 7, true, grpcMsg(1))
	w.flush(req)
	grpcResponse(w, 7, "5", 1)
	w.flush(resp)
	// The encoders empty their tables (a size update to 0), then go on.
	for i := range 2 {
		w.enc[i].SetMaxDynamicTableSizeLimit(0)
		w.enc[i].SetMaxDynamicTableSize(0)
		w.enc[i].SetMaxDynamicTableSizeLimit(4096)
		w.enc[i].SetMaxDynamicTableSize(4096)
	}
	grpcRequest(w, 9, "/pkg.Svc/Get")
	w.data(req, 9, true, grpcMsg(1))
	w.flush(req)
	grpcResponse(w, 9, "5", 1)
	w.flush(resp)

	p := testProtocol(t)
	first := w.chunks[0].b
	if d := p.Detect(first, events.Read); d.Verdict != protocol.Yes || d.Role != protocol.Server {
		t.Fatalf("Detect mid-connection = %+v, want a server", d)
	}
	r := &rec{}
	d := p.NewDecoder(protocol.Server, r)
	feed(t, d, w.chunks, 0)
	if len(r.ended) != 2 {
		t.Fatalf("%d exchanges, want 2", len(r.ended))
	}
	x := r.ended[0].x
	if !x.HeadersIncomplete {
		t.Errorf("first exchange after attach not marked incomplete: %+v", x)
	}
	// What was decoded is right: static-table fields come through.
	if x.Req.Method != "POST" || x.Call.Path != "" && x.Call.Path != "/pkg.Svc/Get" || x.Call.Status != "" && x.Call.Status != "5" {
		t.Errorf("wrong fields decoded: method %q path %q status %q", x.Req.Method, x.Call.Path, x.Call.Status)
	}
	checkCall(t, r.ended[1].x, "/pkg.Svc/Get", "5", 1, 1)
}

// TestTruncatedCapture: calls larger than the capture bring their first
// bytes and their tail. DATA in between is skipped by its length, and the
// frames in the tail are read; when a frame header was not captured, the
// frames that end the call are found in the tail, and what went by
// unseen (body size, message count) is unknown, never wrong.
func TestTruncatedCapture(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames [][]byte // response DATA frames' payloads
		exact  bool
	}{
		{"one big DATA frame", [][]byte{grpcMsg(14000)}, true},
		{"a frame header in the gap", [][]byte{grpcMsg(14000)[:10000], grpcMsg(14000)[10000:]}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWire(t)
			start(w)
			grpcRequest(w, 1, "/pkg.Svc/Big")
			w.data(req, 1, true, grpcMsg(1))
			w.flush(req)
			w.headers(resp, 1, false, ":status", "200", "content-type", "application/grpc")
			for _, f := range tc.frames {
				w.data(resp, 1, false, f)
			}
			w.headers(resp, 1, true, "grpc-status", "0")
			w.flush(resp)

			r := &rec{}
			d := testProtocol(t).NewDecoder(protocol.Server, r)
			for i, c := range w.chunks {
				b := c.b
				ch := protocol.Chunk{Bytes: b, Size: len(b), Time: time.Unix(int64(i), 0)}
				if len(b) > 4096 {
					ch.Bytes, ch.Tail = b[:4096], b[len(b)-128:]
				}
				if err := d.Feed(c.side, ch); err != nil {
					t.Fatal(err)
				}
			}
			x := one(t, r)
			if x.Call.Status != "0" || x.Call.Path != "/pkg.Svc/Big" {
				t.Errorf("call %+v", x.Call)
			}
			n, ok := x.Call.Responses.Count()
			if tc.exact && (!ok || n != 1 || x.Resp.BodySize != 14005) {
				t.Errorf("responses %d (exact %v), body %d; want 1 message of 14005 bytes", n, ok, x.Resp.BodySize)
			}
			if !tc.exact && (ok || x.Resp.BodySize != -1) {
				t.Errorf("responses %d (exact %v), body %d; want both unknown", n, ok, x.Resp.BodySize)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	p := testProtocol(t)
	w := newWire(t)
	w.headers(req, 1, true, ":method", "GET", ":path", "/", ":scheme", "https", ":authority", "a")
	w.flush(req)
	w.headers(resp, 1, true, ":status", "200")
	w.flush(resp)
	if err := w.fr[0].WriteSettings(); err != nil {
		t.Fatal(err)
	}
	w.flush(req)
	reqHeaders, respHeaders, settings := w.chunks[0].b, w.chunks[1].b, w.chunks[2].b
	for _, tc := range []struct {
		name  string
		first []byte
		dir   events.Direction
		want  protocol.Detection
	}{
		{"preface read", []byte(Preface), events.Read, protocol.Detection{Verdict: protocol.Yes, Role: protocol.Server}},
		{"preface written", []byte(Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"), events.Write, protocol.Detection{Verdict: protocol.Yes, Role: protocol.Client}},
		{"request headers read", reqHeaders, events.Read, protocol.Detection{Verdict: protocol.Yes, Role: protocol.Server}},
		{"request headers written", reqHeaders, events.Write, protocol.Detection{Verdict: protocol.Yes, Role: protocol.Client}},
		{"response headers read", respHeaders, events.Read, protocol.Detection{Verdict: protocol.Yes, Role: protocol.Client}},
		{"settings alone", settings, events.Read, protocol.Detection{Verdict: protocol.Undecided}},
		{"HTTP/1", []byte("GET / HTTP/1.1\r\n\r\n"), events.Read, protocol.Detection{}},
		{"TLS record", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), events.Read, protocol.Detection{}},
		{"short", []byte("\x00\x00"), events.Read, protocol.Detection{}},
	} {
		if got := p.Detect(tc.first, tc.dir); got != tc.want {
			t.Errorf("%s: Detect = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestDescribeIncomplete: a stream whose headers were not all decoded is
// named from what is known and marked; nothing is guessed.
func TestDescribeIncomplete(t *testing.T) {
	p := testProtocol(t)
	c := protocol.Conn{Role: protocol.Server, Scheme: "https"}
	for _, tc := range []struct {
		name string
		x    *Exchange
		want string
		path bool
	}{
		{"method known, path not", &Exchange{Exchange: httpspan.Exchange{Req: &httpparse.Message{Method: "POST"}, PathUnknown: true}, HeadersIncomplete: true}, "POST", false},
		{"nothing known", &Exchange{Exchange: httpspan.Exchange{Req: &httpparse.Message{}, PathUnknown: true}, HeadersIncomplete: true}, "HTTP", false},
		{"gRPC, path unknown", &Exchange{Exchange: httpspan.Exchange{Req: &httpparse.Message{Method: "POST"}, PathUnknown: true}, GRPC: true, HeadersIncomplete: true}, "grpc", false},
		{"complete", &Exchange{Exchange: httpspan.Exchange{Req: &httpparse.Message{Method: "GET", Path: "/a", Target: "/a"}}}, "GET /a", true},
	} {
		var s span.Span
		p.Describe(tc.x, c, "", &s)
		attrs := map[string]attribute.Value{}
		for _, a := range s.Attributes {
			attrs[string(a.Key)] = a.Value
		}
		_, hasPath := attrs["url.path"]
		_, hasRoute := attrs["http.route"]
		if s.Name != tc.want || hasPath != tc.path || hasRoute != tc.path || attrs[AttrHeadersIncomplete].AsBool() != tc.x.HeadersIncomplete {
			t.Errorf("%s: name %q attrs %v", tc.name, s.Name, s.Attributes)
		}
		if _, ok := attrs["http.request.method_original"]; ok {
			t.Errorf("%s: method_original exported: %v", tc.name, s.Attributes)
		}
	}
}

// TestLargeBodyAcrossRecords: a 1 MiB response in 16 KiB DATA frames, read
// in 16 KiB calls that do not line up with the frames, each captured as a
// prefix and a tail: frame headers fall in the unknown middle again and
// again, the decoder finds the frames again in the bytes it has, and the
// stream ends with its END_STREAM (its body size unknown, not wrong).
func TestLargeBodyAcrossRecords(t *testing.T) {
	w := newWire(t)
	start(w)
	w.headers(req, 1, true, ":method", "GET", ":scheme", "https", ":path", "/1m.bin", ":authority", "a")
	w.flush(req)
	w.headers(resp, 1, false, ":status", "200")
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	for off := 0; off < len(body); off += 16384 {
		w.data(resp, 1, off+16384 >= len(body), body[off:min(off+16384, len(body))])
	}
	w.flush(resp)
	w.headers(req, 3, true, ":method", "GET", ":scheme", "https", ":path", "/next", ":authority", "a")
	w.flush(req)
	w.headers(resp, 3, true, ":status", "204")
	w.flush(resp)

	r := &rec{}
	p := testProtocol(t)
	d := p.NewDecoder(protocol.Client, r)
	for i, c := range w.chunks {
		for b := c.b; len(b) > 0; {
			n := min(len(b), 10007)
			ch := protocol.Chunk{Bytes: b[:n], Size: n, Time: time.Unix(int64(i), 0)}
			if n > 4096 {
				ch.Bytes, ch.Tail = b[:4096], b[n-128:n]
			}
			if err := d.Feed(c.side, ch); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
	}
	if len(r.ended) != 2 || r.ended[0].reason != "" || r.ended[1].reason != "" {
		t.Fatalf("ended %+v, want two complete exchanges", r.ended)
	}
	if lost := testutil.ToFloat64(p.stats.framesLost); lost < 10 {
		t.Errorf("frame boundaries lost %v times: the test does not exercise the loss", lost)
	}
	if x := r.ended[0].x; x.Req.Path != "/1m.bin" || x.Resp.StatusCode != 200 || !x.FramesLost || x.Resp.BodySize != -1 {
		t.Errorf("large exchange: %+v, body %d", x.Req, x.Resp.BodySize)
	}
	if x := r.ended[1].x; x.Req.Path != "/next" || x.Resp.StatusCode != 204 {
		t.Errorf("next exchange: %+v", x.Req)
	}
}
