package otlp

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/span"
)

// TestRequestCodec: the codec writes each request as proto.Marshal does,
// byte for byte, into a buffer kept from the request before (a large
// request, then smaller ones over its old bytes, then a larger one), also
// when garbage collections came between them.
func TestRequestCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	env := resource.NewSchemaless(attribute.String("deployment.environment", "test"))
	enc := newEncoder(env, "v1")
	procs := []*span.Process{{PID: 1, ServiceName: "a"}, {PID: 2, ServiceName: "b"}}
	c := newRequestCodec()
	b := &batch{}
	var last *byte
	for i, n := range []int{600, 3, 0, 40, 1200, 1} {
		for range n {
			enc.add(b, randSpan(rng, procs[rng.IntN(len(procs))]))
		}
		b.seal()
		data, want := marshalBoth(t, c, b, i, n)
		if len(data) == 1 && len(want) > 0 {
			first := &data[0].ReadOnlyData()[0]
			if i > 0 && i != 4 && first != last { // request 4 outgrows the kept buffer
				t.Errorf("request %d: a new buffer, not the one kept from request %d", i, i-1)
			}
			last = first
		}
		data.Free()
		b.reset()
		runtime.GC() // twice: a sync.Pool would be empty now
		runtime.GC()
	}
	var resp coltracepb.ExportTraceServiceResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer{}}, &resp); err != nil {
		t.Fatalf("unmarshal an empty response: %v", err)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshalled a string")
	}
}

// marshalBoth marshals request i, batch b of n spans, with the codec and
// with proto.Marshal, and fails unless the bytes are the same.
func marshalBoth(t *testing.T, c *requestCodec, b *batch, i, n int) (mem.BufferSlice, []byte) {
	t.Helper()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: b.rss}
	want, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := data.Materialize(); !bytes.Equal(got, want) {
		t.Fatalf("request %d (%d spans): codec wrote %d bytes unlike proto.Marshal's %d", i, n, len(got), len(want))
	}
	return data, want
}

// TestKeptBuffers: the pool keeps at most maxKeptBuffers buffers of at
// most maxKeptBuffer bytes, and hands out length bytes, cleared unless
// length is 0.
func TestKeptBuffers(t *testing.T) {
	var p keptBuffers
	var bufs []*[]byte
	for range maxKeptBuffers + 2 {
		bufs = append(bufs, p.Get(2000))
	}
	for _, b := range bufs {
		copy(*b, "dirty")
		p.Put(b)
	}
	if len(p.free) != maxKeptBuffers {
		t.Fatalf("%d buffers kept, want %d", len(p.free), maxKeptBuffers)
	}
	big := make([]byte, maxKeptBuffer+1)
	p.Put(&big)
	if len(p.free) != maxKeptBuffers || p.free[len(p.free)-1] == &big {
		t.Fatal("kept a buffer over maxKeptBuffer")
	}
	b := p.Get(10)
	if len(*b) != 10 || !bytes.Equal(*b, make([]byte, 10)) {
		t.Fatalf("Get(10) = %q, want 10 zero bytes", *b)
	}
	if b := p.Get(0); len(*b) != 0 || cap(*b) < 2000 {
		t.Fatalf("Get(0): len %d cap %d, want a kept buffer", len(*b), cap(*b))
	}
	if b := p.Get(1 << 20); len(*b) != 1<<20 {
		t.Fatalf("Get(1 MiB): len %d", len(*b))
	}
}

// FuzzRequestCodec: requests of any shape and size, one after the other
// over the codec's kept buffers, are written as proto.Marshal writes them.
func FuzzRequestCodec(f *testing.F) {
	f.Add(uint64(1), []byte{200, 3, 0, 40}, "k", "v")
	f.Add(uint64(2), []byte{1, 255, 1}, "", "")
	f.Fuzz(func(t *testing.T, seed uint64, sizes []byte, key, value string) {
		rng := rand.New(rand.NewPCG(seed, 9))
		enc := newEncoder(resource.Empty(), "v1")
		p := &span.Process{PID: 1, ServiceName: "a"}
		c := newRequestCodec()
		b := &batch{}
		for i, n := range sizes {
			for range int(n) {
				s := randSpan(rng, p)
				s.Attributes = append(s.Attributes, attribute.String(key, value))
				enc.add(b, s)
			}
			b.seal()
			data, _ := marshalBoth(t, c, b, i, int(n))
			data.Free()
			b.reset()
		}
	})
}
