package otlp

import (
	"encoding/binary"
	"math"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// The encoder's requests are marshalled by hand with protowire: the
// generic protobuf marshaller walks every message by reflection twice (size,
// then bytes), and otlptracegrpc sizes each request once more for its size
// limit; that was a third of the pipeline's CPU per span. appendRequest
// writes what the encoder builds (every field it sets, in field-number
// order: the bytes proto.Marshal writes); a request with anything else
// (links, nested attribute lists, entity references, unknown fields) is
// left to the generic marshaller.

// codec is the gRPC codec of the trace client: requests by hand, the rest
// (responses, anything unexpected) by the standard protobuf codec.
type codec struct{ std encoding.CodecV2 }

// NewCodec returns the gRPC codec the exporter's gRPC client marshals with
// (benchmarks use it to marshal as the client does).
func NewCodec() encoding.CodecV2 { return codec{std: encoding.GetCodecV2("proto")} }

func (c codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	req, ok := v.(*coltracepb.ExportTraceServiceRequest)
	if !ok || !plainRequest(req) {
		return c.std.Marshal(v)
	}
	var z sizes
	pool := mem.DefaultBufferPool()
	buf := pool.Get(z.request(req))
	*buf = appendRequest((*buf)[:0], req, &z)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.std.Unmarshal(data, v) }

// Field numbers and wire types.
const (
	tagResourceSpans = 1<<3 | 2

	tagRSResource   = 1<<3 | 2
	tagRSScopeSpans = 2<<3 | 2
	tagRSSchema     = 3<<3 | 2

	tagResAttrs   = 1<<3 | 2
	tagResDropped = 2<<3 | 0

	tagSSScope  = 1<<3 | 2
	tagSSSpans  = 2<<3 | 2
	tagSSSchema = 3<<3 | 2

	tagScopeName    = 1<<3 | 2
	tagScopeVersion = 2<<3 | 2
	tagScopeAttrs   = 3<<3 | 2
	tagScopeDropped = 4<<3 | 0

	tagSpanTraceID    = 1<<3 | 2
	tagSpanSpanID     = 2<<3 | 2
	tagSpanTraceState = 3<<3 | 2
	tagSpanParent     = 4<<3 | 2
	tagSpanName       = 5<<3 | 2
	tagSpanKind       = 6<<3 | 0
	tagSpanStart      = 7<<3 | 1
	tagSpanEnd        = 8<<3 | 1
	tagSpanAttrs      = 9<<3 | 2
	tagSpanDropAttrs  = 10<<3 | 0
	tagSpanEvents     = 11<<3 | 2
	tagSpanDropEvents = 12<<3 | 0
	tagSpanDropLinks  = 14<<3 | 0
	tagSpanStatus     = 15<<3 | 2
	tagSpanFlags      = 16<<3 | 5

	tagEventTime    = 1<<3 | 1
	tagEventName    = 2<<3 | 2
	tagEventAttrs   = 3<<3 | 2
	tagEventDropped = 4<<3 | 0

	tagStatusMessage = 2<<3 | 2
	tagStatusCode    = 3<<3 | 0

	tagKVKey   = 1<<3 | 2
	tagKVValue = 2<<3 | 2

	tagAnyString = 1<<3 | 2
	tagAnyBool   = 2<<3 | 0
	tagAnyInt    = 3<<3 | 0
	tagAnyDouble = 4<<3 | 1
	tagAnyArray  = 5<<3 | 2

	tagArrayValues = 1<<3 | 2
)

// plainRequest reports whether appendRequest can write req: only the
// fields the encoder sets, and no unknown fields.
func plainRequest(req *coltracepb.ExportTraceServiceRequest) bool {
	if len(req.ProtoReflect().GetUnknown()) != 0 {
		return false
	}
	for _, rs := range req.ResourceSpans {
		if rs == nil || rs.Resource != nil && (len(rs.Resource.EntityRefs) != 0 || !plainKVs(rs.Resource.Attributes)) {
			return false
		}
		for _, ss := range rs.ScopeSpans {
			if ss == nil || ss.Scope != nil && !plainKVs(ss.Scope.Attributes) {
				return false
			}
			for _, s := range ss.Spans {
				if !plainSpan(s) {
					return false
				}
			}
		}
	}
	return true
}

func plainSpan(s *tracepb.Span) bool {
	if s == nil || len(s.Links) != 0 || !plainKVs(s.Attributes) {
		return false
	}
	for _, ev := range s.Events {
		if ev == nil || !plainKVs(ev.Attributes) {
			return false
		}
	}
	return true
}

func plainKVs(kvs []*commonpb.KeyValue) bool {
	for _, kv := range kvs {
		if kv == nil || !plainValue(kv.Value) {
			return false
		}
	}
	return true
}

func plainValue(v *commonpb.AnyValue) bool {
	if v == nil {
		return true
	}
	switch x := v.Value.(type) {
	case nil, *commonpb.AnyValue_StringValue, *commonpb.AnyValue_BoolValue,
		*commonpb.AnyValue_IntValue, *commonpb.AnyValue_DoubleValue:
		return true
	case *commonpb.AnyValue_ArrayValue:
		if x.ArrayValue == nil {
			return true
		}
		for _, e := range x.ArrayValue.Values {
			if e == nil || !plainValue(e) {
				return false
			}
		}
		return true
	}
	return false
}

// Sizes. sizeMsg is a nested message's size with its tag and length.
func sizeMsg(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func sizeStr(s string) int {
	if s == "" {
		return 0
	}
	return sizeMsg(len(s))
}

func sizeBytes(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return sizeMsg(len(b))
}

func sizeUint(tagLen int, v uint64) int {
	if v == 0 {
		return 0
	}
	return tagLen + protowire.SizeVarint(v)
}

// sizes are the sizes of a request's ResourceSpans, ScopeSpans and Spans,
// computed once, in the order appendRequest writes them.
type sizes struct {
	n    []int
	next int
}

func sizeRequest(req *coltracepb.ExportTraceServiceRequest) int {
	var z sizes
	return z.request(req)
}

// request sizes req and records the sizes of its parts.
func (z *sizes) request(req *coltracepb.ExportTraceServiceRequest) int {
	z.n, z.next = z.n[:0], 0
	total := 0
	for _, rs := range req.ResourceSpans {
		i := len(z.n)
		z.n = append(z.n, 0)
		n := sizeStr(rs.SchemaUrl)
		if rs.Resource != nil {
			n += sizeMsg(sizeResource(rs.Resource))
		}
		for _, ss := range rs.ScopeSpans {
			n += sizeMsg(z.scopeSpans(ss))
		}
		z.n[i] = n
		total += sizeMsg(n)
	}
	return total
}

func (z *sizes) scopeSpans(ss *tracepb.ScopeSpans) int {
	i := len(z.n)
	z.n = append(z.n, 0)
	n := sizeStr(ss.SchemaUrl)
	if ss.Scope != nil {
		n += sizeMsg(sizeScope(ss.Scope))
	}
	for _, s := range ss.Spans {
		m := sizeSpan(s)
		z.n = append(z.n, m)
		n += sizeMsg(m)
	}
	z.n[i] = n
	return n
}

// pop returns the next recorded size.
func (z *sizes) pop() int {
	n := z.n[z.next]
	z.next++
	return n
}

func sizeResource(r *resourcepb.Resource) int {
	return sizeKVs(r.Attributes) + sizeUint(1, uint64(r.DroppedAttributesCount))
}

func sizeScopeSpans(ss *tracepb.ScopeSpans) int {
	n := sizeStr(ss.SchemaUrl)
	if ss.Scope != nil {
		n += sizeMsg(sizeScope(ss.Scope))
	}
	for _, s := range ss.Spans {
		n += sizeMsg(sizeSpan(s))
	}
	return n
}

func sizeScope(s *commonpb.InstrumentationScope) int {
	return sizeStr(s.Name) + sizeStr(s.Version) + sizeKVs(s.Attributes) + sizeUint(1, uint64(s.DroppedAttributesCount))
}

func sizeSpan(s *tracepb.Span) int {
	n := sizeBytes(s.TraceId) + sizeBytes(s.SpanId) + sizeStr(s.TraceState) + sizeBytes(s.ParentSpanId) +
		sizeStr(s.Name) + sizeUint(1, uint64(s.Kind)) + sizeKVs(s.Attributes) +
		sizeUint(1, uint64(s.DroppedAttributesCount)) + sizeUint(1, uint64(s.DroppedEventsCount)) +
		sizeUint(1, uint64(s.DroppedLinksCount))
	if s.StartTimeUnixNano != 0 {
		n += 9
	}
	if s.EndTimeUnixNano != 0 {
		n += 9
	}
	for _, ev := range s.Events {
		n += sizeMsg(sizeEvent(ev))
	}
	if s.Status != nil {
		n += sizeMsg(sizeStatus(s.Status))
	}
	if s.Flags != 0 {
		n += 2 + 4
	}
	return n
}

func sizeEvent(ev *tracepb.Span_Event) int {
	n := sizeStr(ev.Name) + sizeKVs(ev.Attributes) + sizeUint(1, uint64(ev.DroppedAttributesCount))
	if ev.TimeUnixNano != 0 {
		n += 9
	}
	return n
}

func sizeStatus(st *tracepb.Status) int {
	return sizeStr(st.Message) + sizeUint(1, uint64(st.Code))
}

func sizeKVs(kvs []*commonpb.KeyValue) int {
	n := 0
	for _, kv := range kvs {
		n += sizeMsg(sizeKV(kv))
	}
	return n
}

func sizeKV(kv *commonpb.KeyValue) int {
	n := sizeStr(kv.Key)
	if kv.Value != nil {
		n += sizeMsg(sizeValue(kv.Value))
	}
	return n
}

// sizeValue sizes an AnyValue: a oneof member is written even when zero.
func sizeValue(v *commonpb.AnyValue) int {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return sizeMsg(len(x.StringValue))
	case *commonpb.AnyValue_BoolValue:
		return 2
	case *commonpb.AnyValue_IntValue:
		return 1 + protowire.SizeVarint(uint64(x.IntValue))
	case *commonpb.AnyValue_DoubleValue:
		return 9
	case *commonpb.AnyValue_ArrayValue:
		if x.ArrayValue == nil {
			return 0
		}
		return sizeMsg(sizeArray(x.ArrayValue))
	}
	return 0
}

func sizeArray(a *commonpb.ArrayValue) int {
	n := 0
	for _, e := range a.Values {
		n += sizeMsg(sizeValue(e))
	}
	return n
}

// Appends, in field-number order.
func appendTagLen(b []byte, tag byte, n int) []byte {
	return protowire.AppendVarint(append(b, tag), uint64(n))
}

func appendStr(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	return append(appendTagLen(b, tag, len(s)), s...)
}

func appendBytes(b []byte, tag byte, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return append(appendTagLen(b, tag, len(v)), v...)
}

func appendUint(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(append(b, tag), v)
}

func appendFixed64(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return binary.LittleEndian.AppendUint64(append(b, tag), v)
}

// appendRequest appends req, sized by z.request.
func appendRequest(b []byte, req *coltracepb.ExportTraceServiceRequest, z *sizes) []byte {
	for _, rs := range req.ResourceSpans {
		b = appendTagLen(b, tagResourceSpans, z.pop())
		b = appendResourceSpans(b, rs, z)
	}
	return b
}

func appendResourceSpans(b []byte, rs *tracepb.ResourceSpans, z *sizes) []byte {
	if r := rs.Resource; r != nil {
		b = appendTagLen(b, tagRSResource, sizeResource(r))
		b = appendKVs(b, tagResAttrs, r.Attributes)
		b = appendUint(b, tagResDropped, uint64(r.DroppedAttributesCount))
	}
	for _, ss := range rs.ScopeSpans {
		b = appendTagLen(b, tagRSScopeSpans, z.pop())
		b = appendScopeSpans(b, ss, z)
	}
	return appendStr(b, tagRSSchema, rs.SchemaUrl)
}

func appendScopeSpans(b []byte, ss *tracepb.ScopeSpans, z *sizes) []byte {
	if s := ss.Scope; s != nil {
		b = appendTagLen(b, tagSSScope, sizeScope(s))
		b = appendStr(b, tagScopeName, s.Name)
		b = appendStr(b, tagScopeVersion, s.Version)
		b = appendKVs(b, tagScopeAttrs, s.Attributes)
		b = appendUint(b, tagScopeDropped, uint64(s.DroppedAttributesCount))
	}
	for _, s := range ss.Spans {
		b = appendTagLen(b, tagSSSpans, z.pop())
		b = appendSpan(b, s)
	}
	return appendStr(b, tagSSSchema, ss.SchemaUrl)
}

func appendSpan(b []byte, s *tracepb.Span) []byte {
	b = appendBytes(b, tagSpanTraceID, s.TraceId)
	b = appendBytes(b, tagSpanSpanID, s.SpanId)
	b = appendStr(b, tagSpanTraceState, s.TraceState)
	b = appendBytes(b, tagSpanParent, s.ParentSpanId)
	b = appendStr(b, tagSpanName, s.Name)
	b = appendUint(b, tagSpanKind, uint64(s.Kind))
	b = appendFixed64(b, tagSpanStart, s.StartTimeUnixNano)
	b = appendFixed64(b, tagSpanEnd, s.EndTimeUnixNano)
	b = appendKVs(b, tagSpanAttrs, s.Attributes)
	b = appendUint(b, tagSpanDropAttrs, uint64(s.DroppedAttributesCount))
	for _, ev := range s.Events {
		b = appendTagLen(b, tagSpanEvents, sizeEvent(ev))
		b = appendFixed64(b, tagEventTime, ev.TimeUnixNano)
		b = appendStr(b, tagEventName, ev.Name)
		b = appendKVs(b, tagEventAttrs, ev.Attributes)
		b = appendUint(b, tagEventDropped, uint64(ev.DroppedAttributesCount))
	}
	b = appendUint(b, tagSpanDropEvents, uint64(s.DroppedEventsCount))
	b = appendUint(b, tagSpanDropLinks, uint64(s.DroppedLinksCount))
	if st := s.Status; st != nil {
		b = appendTagLen(b, tagSpanStatus, sizeStatus(st))
		b = appendStr(b, tagStatusMessage, st.Message)
		b = appendUint(b, tagStatusCode, uint64(st.Code))
	}
	if s.Flags != 0 {
		// Field 16: its tag takes two bytes.
		b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
		b = binary.LittleEndian.AppendUint32(b, s.Flags)
	}
	return b
}

func appendKVs(b []byte, tag byte, kvs []*commonpb.KeyValue) []byte {
	for _, kv := range kvs {
		b = appendTagLen(b, tag, sizeKV(kv))
		b = appendStr(b, tagKVKey, kv.Key)
		if kv.Value != nil {
			b = appendTagLen(b, tagKVValue, sizeValue(kv.Value))
			b = appendValue(b, kv.Value)
		}
	}
	return b
}

func appendValue(b []byte, v *commonpb.AnyValue) []byte {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		b = append(appendTagLen(b, tagAnyString, len(x.StringValue)), x.StringValue...)
	case *commonpb.AnyValue_BoolValue:
		var v byte
		if x.BoolValue {
			v = 1
		}
		b = append(b, tagAnyBool, v)
	case *commonpb.AnyValue_IntValue:
		b = protowire.AppendVarint(append(b, tagAnyInt), uint64(x.IntValue))
	case *commonpb.AnyValue_DoubleValue:
		b = binary.LittleEndian.AppendUint64(append(b, tagAnyDouble), math.Float64bits(x.DoubleValue))
	case *commonpb.AnyValue_ArrayValue:
		if x.ArrayValue != nil {
			b = appendTagLen(b, tagAnyArray, sizeArray(x.ArrayValue))
			for _, e := range x.ArrayValue.Values {
				b = appendTagLen(b, tagArrayValues, sizeValue(e))
				b = appendValue(b, e)
			}
		}
	}
	return b
}
