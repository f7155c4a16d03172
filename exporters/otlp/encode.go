package otlp

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/periscope-apm/periscope/span"
)

// ScopeName is the instrumentation scope of every exported span.
const ScopeName = "github.com/periscope-apm/periscope"

// maxCachedResources bounds the per-process resource cache; past it the
// cache starts over.
const maxCachedResources = 4096

const (
	keyServiceName = attribute.Key("service.name")
	keyProcessPID  = attribute.Key("process.pid")
)

// Span flags: the low 8 bits are the W3C trace flags (sampled: the sampler
// already decided); the exporter always knows whether the parent is
// remote.
const (
	flagsLocal  = 0x01 | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	flagsRemote = flagsLocal | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
)

// encoder builds OTLP export requests straight from spans, grouped by
// resource (one per process, built once and cached). The protobuf structs
// of a batch are reused by the next one: a request must be sent (the
// transport marshals it synchronously) before the next batch is encoded.
// It is used by the drain goroutine only and needs no locking.
type encoder struct {
	scope     *commonpb.InstrumentationScope
	env       *resource.Resource // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
	resources map[*span.Process]*otlpResource
	distinct  map[attribute.Distinct]*otlpResource

	// The batch being built, and the structs kept for the next ones.
	rss     []*tracepb.ResourceSpans
	inBatch []*otlpResource // the resources with a group in rss
	spans   []*spanSlot
	used    int // spans[:used] belong to the batch
	kvs     kvArena
}

// otlpResource is a process's resource, converted once.
type otlpResource struct {
	pb     *resourcepb.Resource
	schema string
	batch  *tracepb.ResourceSpans // its group in the batch being built, or nil
}

// spanSlot is a span's protobuf structs and the bytes its IDs point to.
type spanSlot struct {
	pb      tracepb.Span
	status  tracepb.Status
	traceID [16]byte
	spanID  [8]byte
	parent  [8]byte
}

// envResource reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME. A
// malformed variable is logged and what could be parsed is kept.
func envResource(ctx context.Context, log *slog.Logger) *resource.Resource {
	res, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		log.Warn("OTLP exporter: reading resource attributes from the environment", "error", err)
	}
	if res == nil {
		res = resource.Empty()
	}
	return res
}

func newEncoder(env *resource.Resource, scopeVersion string) *encoder {
	return &encoder{
		scope:     &commonpb.InstrumentationScope{Name: ScopeName, Version: scopeVersion},
		env:       env,
		resources: make(map[*span.Process]*otlpResource),
		distinct:  make(map[attribute.Distinct]*otlpResource),
	}
}

// resource returns the resource of p: the environment's attributes,
// overridden by the process's own (service.name, then its Attributes), with
// process.pid added when missing. The agent serves many processes, so the
// agent's own OTEL_SERVICE_NAME only names processes that have no name.
// Resources are cached by *Process: the pipeline must treat a Process as
// immutable once spans refer to it.
func (c *encoder) resource(p *span.Process) *otlpResource {
	if r, ok := c.resources[p]; ok {
		return r
	}
	r := mergedResource(c.env, p)
	or, ok := c.distinct[r.Equivalent()]
	if !ok {
		or = &otlpResource{pb: &resourcepb.Resource{Attributes: keyValues(r.Attributes())}, schema: r.SchemaURL()}
	}
	if len(c.resources) >= maxCachedResources {
		clear(c.resources)
		clear(c.distinct)
	}
	c.resources[p] = or
	c.distinct[r.Equivalent()] = or
	return or
}

func mergedResource(env *resource.Resource, p *span.Process) *resource.Resource {
	var attrs []attribute.KeyValue
	if p != nil {
		attrs = make([]attribute.KeyValue, 0, len(p.Attributes)+2)
		hasPID := false
		for _, kv := range p.Attributes {
			hasPID = hasPID || kv.Key == keyProcessPID
		}
		if !hasPID && p.PID != 0 {
			attrs = append(attrs, keyProcessPID.Int64(int64(p.PID)))
		}
		attrs = append(attrs, p.Attributes...)
		if p.ServiceName != "" {
			attrs = append(attrs, keyServiceName.String(p.ServiceName))
		}
	}
	// Both are schemaless or env has a schema: Merge cannot fail here.
	r, _ := resource.Merge(env, resource.NewSchemaless(attrs...))
	if _, ok := r.Set().Value(keyServiceName); !ok {
		r, _ = resource.Merge(r, resource.NewSchemaless(keyServiceName.String("unknown_service")))
	}
	return r
}

// add appends s to the batch being built.
func (c *encoder) add(s *span.Span) {
	r := c.resource(s.Process)
	if r.batch == nil {
		r.batch = c.group(r)
		c.inBatch = append(c.inBatch, r)
	}
	ss := r.batch.ScopeSpans[0]
	ss.Spans = append(ss.Spans, c.span(s))
}

// group returns a reused ResourceSpans for r, added to the batch.
func (c *encoder) group(r *otlpResource) *tracepb.ResourceSpans {
	n := len(c.rss)
	if n < cap(c.rss) && c.rss[:n+1][n] != nil { // kept from an earlier batch
		c.rss = c.rss[:n+1]
	} else {
		c.rss = append(c.rss, &tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{}}})
	}
	rs := c.rss[n]
	rs.Resource, rs.SchemaUrl = r.pb, r.schema
	ss := rs.ScopeSpans[0]
	ss.Scope, ss.Spans = c.scope, ss.Spans[:0]
	return rs
}

// reset empties the batch, keeping its structs for the next one.
func (c *encoder) reset() {
	for _, r := range c.inBatch {
		r.batch = nil
	}
	clear(c.inBatch)
	c.inBatch = c.inBatch[:0]
	for _, rs := range c.rss {
		rs.Resource = nil
		ss := rs.ScopeSpans[0]
		clear(ss.Spans)
		ss.Spans = ss.Spans[:0]
	}
	c.rss = c.rss[:0]
	for _, sl := range c.spans[:c.used] {
		clear(sl.pb.Attributes)
		sl.pb.Attributes = sl.pb.Attributes[:0]
		sl.pb.Events = nil
		sl.pb.Name, sl.status.Message = "", "" // keep no span's strings alive
	}
	c.used = 0
	c.kvs.reset()
}

// span fills a reused protobuf span with s.
func (c *encoder) span(s *span.Span) *tracepb.Span {
	if c.used == len(c.spans) {
		c.spans = append(c.spans, &spanSlot{})
	}
	sl := c.spans[c.used]
	c.used++
	sl.traceID, sl.spanID = s.TraceID, s.SpanID
	pb := &sl.pb
	pb.TraceId, pb.SpanId = sl.traceID[:], sl.spanID[:]
	pb.ParentSpanId = nil
	pb.Flags = flagsLocal
	if s.ParentSpanID.IsValid() {
		sl.parent = s.ParentSpanID
		pb.ParentSpanId = sl.parent[:]
		if s.RemoteParent {
			pb.Flags = flagsRemote
		}
	}
	pb.Name = s.Name
	pb.Kind = spanKind(s.Kind)
	pb.StartTimeUnixNano, pb.EndTimeUnixNano = unixNano(s.Start), unixNano(s.End)
	for _, kv := range s.Attributes {
		pb.Attributes = append(pb.Attributes, c.kvs.keyValue(kv))
	}
	if len(s.Events) > 0 {
		pb.Events = make([]*tracepb.Span_Event, len(s.Events))
		for i, ev := range s.Events {
			pb.Events[i] = &tracepb.Span_Event{Name: ev.Name, TimeUnixNano: unixNano(ev.Time), Attributes: keyValues(ev.Attributes)}
		}
	}
	sl.status = tracepb.Status{}
	switch s.Status {
	case span.OK:
		sl.status.Code = tracepb.Status_STATUS_CODE_OK
	case span.Error:
		// Only an error status carries a description.
		sl.status.Code, sl.status.Message = tracepb.Status_STATUS_CODE_ERROR, s.StatusMsg
	}
	pb.Status = &sl.status
	return pb
}

func spanKind(k span.Kind) tracepb.Span_SpanKind {
	switch k {
	case span.Server:
		return tracepb.Span_SPAN_KIND_SERVER
	case span.Client:
		return tracepb.Span_SPAN_KIND_CLIENT
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) }

// kvArena hands out reused key-value structs, allocated in chunks.
type kvArena struct {
	chunks [][]kvSlot
	next   int // index of the next free slot over all chunks
}

const kvChunk = 1024

// kvSlot is one attribute's protobuf structs; value points into it.
type kvSlot struct {
	kv  commonpb.KeyValue
	val commonpb.AnyValue
	str commonpb.AnyValue_StringValue
	i64 commonpb.AnyValue_IntValue
	b   commonpb.AnyValue_BoolValue
	f64 commonpb.AnyValue_DoubleValue
}

// reset frees the slots for the next batch, dropping the strings they
// held: a batch of long values would otherwise stay alive.
func (a *kvArena) reset() {
	for i := range a.next {
		s := &a.chunks[i/kvChunk][i%kvChunk]
		s.kv.Key, s.str.StringValue, s.val.Value = "", "", nil
	}
	a.next = 0
}

func (a *kvArena) slot() *kvSlot {
	c, i := a.next/kvChunk, a.next%kvChunk
	if c == len(a.chunks) {
		a.chunks = append(a.chunks, make([]kvSlot, kvChunk))
	}
	a.next++
	return &a.chunks[c][i]
}

// keyValue converts kv into a reused slot.
func (a *kvArena) keyValue(kv attribute.KeyValue) *commonpb.KeyValue {
	s := a.slot()
	s.kv.Key, s.kv.Value = string(kv.Key), &s.val
	switch kv.Value.Type() {
	case attribute.STRING:
		s.str.StringValue = kv.Value.AsString()
		s.val.Value = &s.str
	case attribute.INT64:
		s.i64.IntValue = kv.Value.AsInt64()
		s.val.Value = &s.i64
	case attribute.BOOL:
		s.b.BoolValue = kv.Value.AsBool()
		s.val.Value = &s.b
	case attribute.FLOAT64:
		s.f64.DoubleValue = kv.Value.AsFloat64()
		s.val.Value = &s.f64
	default:
		s.val.Value = anyValue(kv.Value).Value
	}
	return &s.kv
}

// keyValues converts attributes into new structs (resources, events: rare
// or converted once).
func keyValues(kvs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = &commonpb.KeyValue{Key: string(kv.Key), Value: anyValue(kv.Value)}
	}
	return out
}

func anyValue(v attribute.Value) *commonpb.AnyValue {
	av := &commonpb.AnyValue{}
	switch v.Type() {
	case attribute.BOOL:
		av.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.INT64:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
	case attribute.FLOAT64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.STRING:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: v.AsString()}
	case attribute.BOOLSLICE:
		av.Value = arrayOf(v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		av.Value = arrayOf(v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		av.Value = arrayOf(v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		av.Value = arrayOf(v.AsStringSlice(), attribute.StringValue)
	default:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: "INVALID"}
	}
	return av
}

func arrayOf[T any](vs []T, value func(T) attribute.Value) *commonpb.AnyValue_ArrayValue {
	arr := &commonpb.ArrayValue{Values: make([]*commonpb.AnyValue, len(vs))}
	for i, v := range vs {
		arr.Values[i] = anyValue(value(v))
	}
	return &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
}
