package otlp

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

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

// converter turns spans into SDK read-only spans. It is used by the drain
// goroutine only and needs no locking.
type converter struct {
	scope     instrumentation.Scope
	env       *resource.Resource // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
	resources map[*span.Process]*resource.Resource
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

func newConverter(env *resource.Resource, scopeVersion string) *converter {
	return &converter{
		scope:     instrumentation.Scope{Name: ScopeName, Version: scopeVersion},
		env:       env,
		resources: make(map[*span.Process]*resource.Resource),
	}
}

// resource returns the resource of p: the environment's attributes,
// overridden by the process's own (service.name, then its Attributes), with
// process.pid added when missing. The agent serves many processes, so the
// agent's own OTEL_SERVICE_NAME only names processes that have no name.
// Resources are cached by *Process: the pipeline must treat a Process as
// immutable once spans refer to it.
func (c *converter) resource(p *span.Process) *resource.Resource {
	if r, ok := c.resources[p]; ok {
		return r
	}
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
	r, _ := resource.Merge(c.env, resource.NewSchemaless(attrs...))
	if _, ok := r.Set().Value(keyServiceName); !ok {
		r, _ = resource.Merge(r, resource.NewSchemaless(keyServiceName.String("unknown_service")))
	}
	if len(c.resources) >= maxCachedResources {
		clear(c.resources)
	}
	c.resources[p] = r
	return r
}

// convert returns s as an SDK span. The span context is marked sampled: the
// sampler already decided.
func (c *converter) convert(s *span.Span) sdktrace.ReadOnlySpan {
	stub := tracetest.SpanStub{
		Name: s.Name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    s.TraceID,
			SpanID:     s.SpanID,
			TraceFlags: trace.FlagsSampled,
		}),
		SpanKind:             s.Kind,
		StartTime:            s.Start,
		EndTime:              s.End,
		Attributes:           s.Attributes,
		Resource:             c.resource(s.Process),
		InstrumentationScope: c.scope,
	}
	if s.ParentSpanID.IsValid() {
		stub.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    s.TraceID,
			SpanID:     s.ParentSpanID,
			TraceFlags: trace.FlagsSampled,
			Remote:     s.RemoteParent,
		})
	}
	switch s.Status {
	case span.OK:
		stub.Status = sdktrace.Status{Code: codes.Ok}
	case span.Error:
		// Only an error status carries a description.
		stub.Status = sdktrace.Status{Code: codes.Error, Description: s.StatusMsg}
	}
	if len(s.Events) > 0 {
		stub.Events = make([]sdktrace.Event, len(s.Events))
		for i, ev := range s.Events {
			stub.Events[i] = sdktrace.Event{Name: ev.Name, Time: ev.Time, Attributes: ev.Attributes}
		}
	}
	return stub.Snapshot()
}
