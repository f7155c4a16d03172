package http2

import (
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
)

type nopHandler struct{ n int }

func (*nopHandler) Begin(protocol.Exchange)                    {}
func (h *nopHandler) End(protocol.Exchange, time.Time, string) { h.n++ }

// BenchmarkUnaryCall decodes one unary gRPC call per iteration (request
// HEADERS and DATA, response HEADERS, DATA and trailers) on a connection
// whose HPACK tables are warm, as on a busy connection.
func BenchmarkUnaryCall(b *testing.B) {
	t := &testing.T{}
	w := newWire(t)
	start(w)
	p := testProtocol(b)
	h := &nopHandler{}
	d := p.NewDecoder(protocol.Server, h)
	feedAll := func() {
		for _, c := range w.chunks {
			if err := d.Feed(c.side, protocol.Chunk{Bytes: c.b, Size: len(c.b), Time: time.Unix(1, 0)}); err != nil {
				b.Fatal(err)
			}
		}
		w.chunks = w.chunks[:0]
	}
	feedAll()
	// The calls are encoded beforehand: only decoding is timed.
	id := uint32(1)
	var calls [][]sideChunk
	for range b.N {
		grpcRequest(w, id, "/pkg.Svc/Get")
		w.data(req, id, true, grpcMsg(20))
		w.flush(req)
		grpcResponse(w, id, "0", 1)
		w.flush(resp)
		calls = append(calls, w.chunks)
		w.chunks = nil
		id += 2
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for _, c := range calls[i] {
			if err := d.Feed(c.side, protocol.Chunk{Bytes: c.b, Size: len(c.b), Time: time.Unix(1, 0)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if h.n != b.N {
		b.Fatalf("%d calls ended, want %d", h.n, b.N)
	}
}
