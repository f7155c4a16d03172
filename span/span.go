// Package span defines the finished spans that the correlator hands to the
// exporters. It knows nothing about eBPF or HTTP parsing.
package span

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Kind is the OpenTelemetry span kind; only the two the agent produces.
type Kind = trace.SpanKind

const (
	Server = trace.SpanKindServer
	Client = trace.SpanKindClient
)

// StatusCode mirrors OpenTelemetry's span status.
type StatusCode uint8

const (
	Unset StatusCode = iota
	OK
	Error
)

func (s StatusCode) String() string {
	switch s {
	case OK:
		return "OK"
	case Error:
		return "ERROR"
	}
	return "UNSET"
}

// Event is a timed annotation on a span.
type Event struct {
	Name       string
	Time       time.Time
	Attributes []attribute.KeyValue
}

// Process identifies the process a span came from. Exporters turn it into
// an OpenTelemetry resource.
type Process struct {
	PID         uint32
	ServiceName string
	// ContainerID is the container runtime's ID of the container the
	// process runs in (usually 64 hex digits), read from its cgroups when
	// the process was discovered; empty for host processes.
	ContainerID string
	// PodUID is the Kubernetes pod UID from the process's cgroup path
	// (dash-separated), empty when the path carries none.
	PodUID string
	// Attributes are resource attributes beyond service.name
	// (process.pid, process.executable.name, host.name, ...).
	Attributes []attribute.KeyValue
	// Tentative says the identity was read before the process's last
	// exec (a fork read while the child was still its parent's program,
	// a shell that then ran exec curl): it names the old program. A
	// resolver replaces it as soon as it can read the process again or
	// learns of the exec from discovery.
	Tentative bool
}

// Span is one finished request span.
type Span struct {
	TraceID      trace.TraceID
	SpanID       trace.SpanID
	ParentSpanID trace.SpanID // zero when the span is a root
	RemoteParent bool         // the parent came from an incoming traceparent
	Kind         Kind
	Name         string
	Start, End   time.Time
	Attributes   []attribute.KeyValue
	Events       []Event
	Status       StatusCode
	StatusMsg    string
	Process      *Process

	// A span from a Pool is shared by its producer and every exporter
	// that keeps it past Export: each holds a reference (Hold) and
	// releases it when done (Release); the last release returns it to the
	// pool. Spans not from a pool ignore both.
	pool *Pool
	refs atomic.Int32
}

// Hold adds a reference to a pooled span: an exporter that keeps s past
// Export (a queue) holds it there, and releases it once it has read it.
func (s *Span) Hold() {
	if s.pool != nil {
		s.refs.Add(1)
	}
}

// Release drops a reference. After its last reference is released a pooled
// span is reused: whoever released it must not read it any more.
func (s *Span) Release() {
	if s.pool == nil {
		return
	}
	switch n := s.refs.Add(-1); {
	case n == 0:
		s.pool.put(s)
	case n < 0:
		panic("span: Release without a reference")
	}
}

// maxPooledAttrs bounds the attribute array a pooled span keeps for its
// next use (a span with many captured headers gives its array back to the
// garbage collector instead).
const maxPooledAttrs = 64

// Pool recycles span records and their attribute arrays, so that a span
// costs no allocation in steady state. It is safe for concurrent use.
type Pool struct{ p sync.Pool }

// Get returns a zeroed span with one reference, the caller's; its
// Attributes is empty, with room to append.
func (p *Pool) Get() *Span {
	s, _ := p.p.Get().(*Span)
	if s == nil {
		s = &Span{pool: p, Attributes: make([]attribute.KeyValue, 0, 24)}
	}
	s.refs.Store(1)
	return s
}

func (p *Pool) put(s *Span) {
	// No strings kept alive by the pool. Appends never write past the
	// length, and the part past it was cleared when the span was last
	// put back: clearing the length is enough.
	clear(s.Attributes)
	attrs := s.Attributes[:0]
	if cap(attrs) > maxPooledAttrs {
		attrs = nil
	}
	s.TraceID, s.SpanID, s.ParentSpanID = trace.TraceID{}, trace.SpanID{}, trace.SpanID{}
	s.RemoteParent, s.Kind, s.Name = false, 0, ""
	s.Start, s.End = time.Time{}, time.Time{}
	s.Attributes, s.Events = attrs, nil
	s.Status, s.StatusMsg, s.Process = Unset, "", nil
	p.p.Put(s)
}

// Exporter receives finished spans. Export must not block the caller: an
// exporter that cannot keep up drops spans and counts them. Spans are
// shared and read-only; one that Export keeps past its return (queued) is
// held with Span.Hold there and released with Span.Release when done.
type Exporter interface {
	Export(*Span)
	// Shutdown flushes what is queued and releases resources.
	Shutdown(ctx context.Context) error
}
