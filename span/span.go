// Package span defines the finished spans that the correlator hands to the
// exporters. It knows nothing about eBPF or HTTP parsing.
package span

import (
	"context"
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
}

// Exporter receives finished spans. Export must not block the caller: an
// exporter that cannot keep up drops spans and counts them.
type Exporter interface {
	Export(*Span)
	// Shutdown flushes what is queued and releases resources.
	Shutdown(ctx context.Context) error
}
