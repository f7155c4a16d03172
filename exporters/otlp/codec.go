package otlp

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// requestCodec is the gRPC client's codec: protobuf, as gRPC's own, but it
// marshals each export request into a buffer kept from an earlier request.
// gRPC's codec takes a buffer from its shared pool, which clears the whole
// buffer before each use and loses it at every garbage collection: at a
// few exports per second a request of ~240 KB got a freshly allocated,
// page-faulted and cleared buffer each time (the agent's profile under
// make bench MODE=go: ~6% of its CPU). Responses (empty) are unmarshalled
// by gRPC's codec.
type requestCodec struct {
	proto encoding.CodecV2
	pool  keptBuffers
}

func newRequestCodec() *requestCodec {
	return &requestCodec{proto: encoding.GetCodecV2("proto")}
}

// Name is the codec's content subtype: the same as gRPC's codec, so the
// request on the wire is the same.
func (c *requestCodec) Name() string { return "proto" }

func (c *requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("otlp codec: marshal %T: not a protobuf message", v)
	}
	buf := c.pool.Get(0)
	b, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		return nil, fmt.Errorf("otlp codec: marshal %T: %w", v, err)
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, &c.pool)}, nil
}

func (c *requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// Bounds of keptBuffers: one buffer per export in flight; a buffer grown
// past maxKeptBuffer (a batch of unusually large spans) is given back to
// the garbage collector.
const (
	maxKeptBuffers = DefaultMaxInFlight
	maxKeptBuffer  = 4 << 20
)

// keptBuffers is a mem.BufferPool that keeps a few buffers for good and
// does not clear them: the codec overwrites what it uses.
type keptBuffers struct {
	mu   sync.Mutex
	free []*[]byte
}

// Get returns a buffer of length bytes; bytes past what the caller writes
// are left as they were only when length is 0 (the codec's own use).
func (p *keptBuffers) Get(length int) *[]byte {
	p.mu.Lock()
	var buf *[]byte
	if n := len(p.free); n > 0 {
		buf = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if buf == nil || cap(*buf) < length {
		b := make([]byte, length)
		return &b
	}
	*buf = (*buf)[:length]
	clear(*buf)
	return buf
}

// Put keeps buf for a later Get, within the bounds.
func (p *keptBuffers) Put(buf *[]byte) {
	if buf == nil || cap(*buf) > maxKeptBuffer {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < maxKeptBuffers {
		p.free = append(p.free, buf)
	}
}
