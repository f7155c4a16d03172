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
	"google.golang.org/protobuf/reflect/protoreflect"

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
// resource (one per process, built once and cached). Each span is written
// once, as protobuf bytes (spanwire.go), into its group's buffer in a
// batch; the request's ResourceSpans and ScopeSpans are reused structs that
// carry the resource and the scope, and the spans as the ScopeSpans'
// unknown fields: any protobuf marshaller (the gRPC codec,
// otlptracehttp's proto.Marshal) copies them as they are, so the request on
// the wire is the OTLP request with every span in field 2 of its
// ScopeSpans. One batch is filled at a time (the exporter's lock); a
// sealed batch is read by the drain goroutine only.
type encoder struct {
	scope     *commonpb.InstrumentationScope
	env       *resource.Resource // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
	resources map[*span.Process]*otlpResource
	distinct  map[attribute.Distinct]*otlpResource
}

// batch is the spans of one export request, encoded, and the structs that
// carry them; reset, it is reused for a later request.
type batch struct {
	rss     []*tracepb.ResourceSpans
	bufs    [][]byte        // bufs[i]: the spans of rss[i], encoded
	inBatch []*otlpResource // the resources with a group in rss, until sealed
	n       int             // spans
	bytes   int             // the spans' encoded bytes
}

// otlpResource is a process's resource, converted once.
type otlpResource struct {
	pb     *resourcepb.Resource
	schema string
	group  int // 1 + the index of its group in the batch being filled, or 0
}

// maxKeptBytes bounds the span buffers kept from one batch for the next:
// a batch of many processes or large spans gives the rest back.
const maxKeptBytes = 2 * maxBatchBytes

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

// add appends s to b, the batch being filled.
func (c *encoder) add(b *batch, s *span.Span) {
	r := c.resource(s.Process)
	if r.group == 0 {
		b.group(r, c.scope)
	}
	before := len(b.bufs[r.group-1])
	b.bufs[r.group-1] = appendSpan(b.bufs[r.group-1], s)
	b.bytes += len(b.bufs[r.group-1]) - before
	b.n++
}

// group adds a reused ResourceSpans for r to the batch.
func (b *batch) group(r *otlpResource, scope *commonpb.InstrumentationScope) {
	n := len(b.rss)
	if n < cap(b.rss) && b.rss[:n+1][n] != nil { // kept from an earlier batch
		b.rss = b.rss[:n+1]
	} else {
		b.rss = append(b.rss, &tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{}}})
	}
	if n == len(b.bufs) {
		b.bufs = append(b.bufs, nil)
	}
	rs := b.rss[n]
	rs.Resource, rs.SchemaUrl = r.pb, r.schema
	rs.ScopeSpans[0].Scope = scope
	r.group = n + 1
	b.inBatch = append(b.inBatch, r)
}

// seal ends the filling of b: the next spans go to another batch. It
// attaches the spans to their ScopeSpans.
func (b *batch) seal() {
	for _, r := range b.inBatch {
		r.group = 0
	}
	clear(b.inBatch)
	b.inBatch = b.inBatch[:0]
	for i, rs := range b.rss {
		rs.ScopeSpans[0].ProtoReflect().SetUnknown(protoreflect.RawFields(b.bufs[i]))
	}
}

// reset empties a sealed batch, keeping its structs and, within
// maxKeptBytes, its buffers for a later one.
func (b *batch) reset() {
	for _, rs := range b.rss {
		rs.Resource = nil
		rs.ScopeSpans[0].ProtoReflect().SetUnknown(nil)
	}
	b.rss = b.rss[:0]
	kept := 0
	for i, buf := range b.bufs {
		kept += cap(buf)
		if kept > maxKeptBytes {
			buf = nil
		}
		b.bufs[i] = buf[:0]
	}
	b.n, b.bytes = 0, 0
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
