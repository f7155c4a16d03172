package otlp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func randValue(rng *rand.Rand, depth int) *commonpb.AnyValue {
	switch rng.IntN(6) {
	case 0:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: randString(rng)}}
	case 1:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: rng.IntN(2) == 1}}
	case 2:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: rng.Int64() - rng.Int64()}}
	case 3:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: rng.NormFloat64()}}
	case 4:
		if depth == 0 {
			arr := &commonpb.ArrayValue{}
			for range rng.IntN(3) {
				arr.Values = append(arr.Values, randValue(rng, 1))
			}
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}
		}
	}
	return &commonpb.AnyValue{}
}

func randString(rng *rand.Rand) string {
	b := make([]byte, []int{0, 1, 5, 130, 300}[rng.IntN(5)])
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return string(b)
}

func randKVs(rng *rand.Rand) []*commonpb.KeyValue {
	var kvs []*commonpb.KeyValue
	for range rng.IntN(6) {
		kv := &commonpb.KeyValue{Key: randString(rng)}
		if rng.IntN(8) > 0 {
			kv.Value = randValue(rng, 0)
		}
		kvs = append(kvs, kv)
	}
	return kvs
}

func randBytes(rng *rand.Rand, n int) []byte {
	if rng.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func randSpan(rng *rand.Rand) *tracepb.Span {
	s := &tracepb.Span{
		TraceId: randBytes(rng, 16), SpanId: randBytes(rng, 8), ParentSpanId: randBytes(rng, 8),
		TraceState: randString(rng), Name: randString(rng),
		Kind:              tracepb.Span_SpanKind(rng.IntN(6)),
		StartTimeUnixNano: rng.Uint64() >> rng.IntN(64), EndTimeUnixNano: rng.Uint64() >> rng.IntN(64),
		Attributes:             randKVs(rng),
		DroppedAttributesCount: uint32(rng.IntN(3)), DroppedEventsCount: uint32(rng.IntN(3)),
		DroppedLinksCount: uint32(rng.IntN(3)), Flags: uint32(rng.IntN(4)) << 8,
	}
	for range rng.IntN(3) {
		s.Events = append(s.Events, &tracepb.Span_Event{
			TimeUnixNano: rng.Uint64(), Name: randString(rng), Attributes: randKVs(rng), DroppedAttributesCount: uint32(rng.IntN(2)),
		})
	}
	if rng.IntN(4) > 0 {
		s.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(rng.IntN(3)), Message: randString(rng)}
	}
	return s
}

func randRequest(rng *rand.Rand) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	for range rng.IntN(4) {
		rs := &tracepb.ResourceSpans{SchemaUrl: randString(rng)}
		if rng.IntN(4) > 0 {
			rs.Resource = &resourcepb.Resource{Attributes: randKVs(rng), DroppedAttributesCount: uint32(rng.IntN(2))}
		}
		for range rng.IntN(3) {
			ss := &tracepb.ScopeSpans{SchemaUrl: randString(rng)}
			if rng.IntN(4) > 0 {
				ss.Scope = &commonpb.InstrumentationScope{Name: randString(rng), Version: randString(rng), Attributes: randKVs(rng)}
			}
			for range rng.IntN(5) {
				ss.Spans = append(ss.Spans, randSpan(rng))
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	return req
}

// The hand-written marshalling writes the bytes proto.Marshal writes.
func TestAppendRequestMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := NewCodec()
	for i := range 2000 {
		req := randRequest(rng)
		if !plainRequest(req) {
			t.Fatalf("request %d: not plain", i)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var z sizes
		size := z.request(req)
		got := appendRequest(nil, req, &z)
		if !bytes.Equal(got, want) || size != len(want) {
			t.Fatalf("request %d: %d bytes (size %d), want %d: %x\nwant %x", i, len(got), size, len(want), got, want)
		}
		bs, err := c.Marshal(req)
		if err != nil || !bytes.Equal(bs.Materialize(), want) {
			t.Fatalf("request %d: codec wrote %x (%v)", i, bs.Materialize(), err)
		}
		bs.Free()
	}
}

// What the hand-written marshalling does not know goes through proto.
func TestCodecFallback(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	req := randRequest(rng)
	for len(req.ResourceSpans) == 0 || len(req.ResourceSpans[0].ScopeSpans) == 0 || len(req.ResourceSpans[0].ScopeSpans[0].Spans) == 0 {
		req = randRequest(rng)
	}
	s := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
	s.Links = []*tracepb.Span_Link{{TraceId: make([]byte, 16), SpanId: make([]byte, 8)}}
	s.Attributes = append(s.Attributes, &commonpb.KeyValue{Key: "kv", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{}}})
	if plainRequest(req) {
		t.Fatal("a request with links is plain")
	}
	bs, err := NewCodec().Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(bs.Materialize(), &back); err != nil || !proto.Equal(&back, req) {
		t.Fatalf("fallback round trip: %v", err)
	}
}
